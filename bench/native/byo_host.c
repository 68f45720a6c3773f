/*
 * Native twin of the WebAssembly rows of bench/pmm.bench.ts: an example allocator itself
 * (examples/c/stack_pages.c by default, or the file named by -DBYO_SOURCE='"../../examples/c/bitmap.c"'),
 * compiled for the host with PMM_HAVE_ACCESSORS, its accessors bound to the same simulated RAM model as
 * pmm_ref.c (2 MiB chunks, every 32-bit access bounds-checked and counted; memsets and compares as bulk
 * bytes). The metadata is placed at the top of the one region, as src/kernel/pmm/setup.ts does, so the
 * checksum must equal the wasm row's. The rows are named after the design: "<name> (wasm)".
 *
 * Usage: byo_host TRACE.bin TRACE_NAME START_PFN END_PFN   (prints one JSON line per measure)
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PMM_HAVE_ACCESSORS
#include <pagelab/pmm.h>

#define LIMIT (1ull << 52)
#define MAXCHUNKS (1u << 16)
static uint32_t *chunks[MAXCHUNKS];
static uint64_t mem_reads, mem_writes, mem_bulk_bytes;

static void bad(uint64_t pa) {
  fprintf(stderr, "bad access at 0x%llx\n", (unsigned long long)pa);
  exit(2);
}
static inline uint32_t pmm_read32(pmm_paddr_t pa) {
  if ((pa & 3) || pa >= LIMIT || (pa >> 21) >= MAXCHUNKS) bad(pa);
  mem_reads++;
  uint32_t *c = chunks[pa >> 21];
  return c ? c[(pa & 0x1fffff) >> 2] : 0;
}
static inline void pmm_write32(pmm_paddr_t pa, uint32_t v) {
  if ((pa & 3) || pa >= LIMIT || (pa >> 21) >= MAXCHUNKS) bad(pa);
  mem_writes++;
  uint32_t *c = chunks[pa >> 21];
  if (!c) {
    if (v == 0) return;
    c = chunks[pa >> 21] = calloc(1u << 19, 4);
  }
  c[(pa & 0x1fffff) >> 2] = v;
}
static inline uint64_t pmm_read64(pmm_paddr_t pa) { return pmm_read32(pa) | (uint64_t)pmm_read32(pa + 4) << 32; }
static inline void pmm_write64(pmm_paddr_t pa, uint64_t v) {
  pmm_write32(pa, (uint32_t)v);
  pmm_write32(pa + 4, (uint32_t)(v >> 32));
}
static inline void pmm_zero_frame(pmm_pfn_t pfn) {
  uint32_t *c = chunks[(pfn * 4096) >> 21];
  mem_bulk_bytes += 4096;
  if (c) memset(c + (((pfn * 4096) & 0x1fffff) >> 2), 0, 4096);
}
/* memset and !memchr_inv, 4-byte aligned, chunk by chunk (an untouched chunk reads as zeros). */
static inline void pmm_fill(pmm_paddr_t pa, uint64_t bytes, uint8_t byte) {
  uint32_t w = byte * 0x01010101u;
  if ((pa & 3) || (bytes & 3) || pa + bytes > LIMIT || ((pa + bytes - 1) >> 21) >= MAXCHUNKS) bad(pa);
  mem_bulk_bytes += bytes;
  for (uint64_t p = pa; p < pa + bytes;) {
    uint64_t n = ((p >> 21) + 1) << 21;
    if (n > pa + bytes) n = pa + bytes;
    uint32_t *c = chunks[p >> 21];
    if (!c && w != 0) c = chunks[p >> 21] = calloc(1u << 19, 4);
    if (c)
      for (uint64_t i = (p & 0x1fffff) >> 2; i < ((p & 0x1fffff) >> 2) + (n - p) / 4; i++) c[i] = w;
    p = n;
  }
}
static inline int pmm_is_filled(pmm_paddr_t pa, uint64_t bytes, uint8_t byte) {
  uint32_t w = byte * 0x01010101u;
  if ((pa & 3) || (bytes & 3) || pa + bytes > LIMIT || ((pa + bytes - 1) >> 21) >= MAXCHUNKS) bad(pa);
  mem_bulk_bytes += bytes;
  for (uint64_t p = pa; p < pa + bytes;) {
    uint64_t n = ((p >> 21) + 1) << 21;
    if (n > pa + bytes) n = pa + bytes;
    uint32_t *c = chunks[p >> 21];
    if (!c) {
      if (w != 0) return 0;
    } else {
      for (uint64_t i = (p & 0x1fffff) >> 2; i < ((p & 0x1fffff) >> 2) + (n - p) / 4; i++)
        if (c[i] != w) return 0;
    }
    p = n;
  }
  return 1;
}

#ifndef BYO_SOURCE
#define BYO_SOURCE "../../examples/c/stack_pages.c"
#endif
#include BYO_SOURCE

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void up(uint64_t s, uint64_t e) {
  for (unsigned i = 0; i < MAXCHUNKS; i++) free(chunks[i]), chunks[i] = NULL;
  static struct pmm_layout l;
  l.nranges = 1;
  l.cpus = 1;
  l.colours = 16;
  l.range[0].start = s;
  l.range[0].end = e;
  uint64_t frames = (pmm_metadata_bytes(&l) + 4095) / 4096;
  pmm_create(&l, (e - frames) * 4096);
  pmm_add_free(s, e - frames - s);
}

int main(int argc, char **argv) {
  if (argc < 5) return 2;
  FILE *f = fopen(argv[1], "rb");
  int32_t head[3];
  if (!f || fread(head, 4, 3, f) != 3) return 2;
  int32_t *body = malloc((size_t)head[0] * 8);
  if (fread(body, 8, (size_t)head[0], f) != (size_t)head[0]) return 2;
  uint64_t s = strtoull(argv[3], 0, 10), e = strtoull(argv[4], 0, 10);
  uint64_t *pfn = calloc((size_t)head[1], 8);
  unsigned *ord = calloc((size_t)head[1], sizeof *ord);
  double best = 1e300;
  uint64_t sum = 0, failed = 0;
  for (int rep = 0; rep < 3; rep++) {
    up(s, e);
    sum = 0;
    failed = 0;
    double t0 = now();
    for (int32_t i = 0; i < head[0]; i++) {
      int32_t op = body[2 * i], sl = body[2 * i + 1];
      if (op >= 0) {
        uint64_t p = pmm_alloc((unsigned)op, 0);
        pfn[sl] = p;
        ord[sl] = (unsigned)op;
        if (p == PMM_NO_PFN) failed++;
        else sum = (sum + p) % 4294967296ull;
      } else if (pfn[sl] != PMM_NO_PFN) {
        pmm_free(pfn[sl], ord[sl]);
      }
    }
    double ns = now() - t0;
    if (ns < best) best = ns;
  }
  printf("{\"design\":\"%s (wasm)\",\"trace\":\"%s\",\"nsPerPair\":%.3f,\"pairsPerSec\":%.0f,\"checksum\":%llu,\"failed\":%llu}\n",
         pmm_design_name, argv[2], best / head[2], head[2] * 1e9 / best, (unsigned long long)sum, (unsigned long long)failed);
  if (strcmp(argv[2], "order0") == 0) {
    up(s, e);
    int n = 2000000;
    double t0 = now();
    for (int i = 0; i < n; i++) pmm_free(pmm_alloc(0, 0), 0);
    printf("{\"design\":\"%s (wasm)\",\"trace\":\"tight\",\"nsPerPair\":%.3f,\"pairsPerSec\":0,\"checksum\":0,\"failed\":0}\n",
           pmm_design_name, (now() - t0) / n);
  }
  return 0;
}
