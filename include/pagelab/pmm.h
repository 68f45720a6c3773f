/*
 * pagelab/pmm.h - the contract between a physical memory manager (PMM) written in C and the kernel
 * that hosts it: your kernel, or pagelab's simulated x86-64 machine.
 *
 * The same source file serves both:
 *
 *   pagelab:      clang --target=wasm32 -DPAGELAB_WASM ... (pagelab does this: `pagelab boot --pmm my_pmm.c`)
 *                 The metadata accessors below are imports bound to the simulated kernel's mappings: every
 *                 access is translated by the simulated MMU (direct map, recursive window, quickmap window,
 *                 as the kernel-mapping strategy gives it) and counted.
 *   your kernel:  clang --target=x86_64-unknown-none -ffreestanding -mno-red-zone -c my_pmm.c
 *                 The accessors are plain volatile loads and stores at PMM_PHYS_TO_VIRT(pa), a macro your
 *                 kernel defines (default: Linux's direct map at 0xffff888000000000). A kernel without a
 *                 direct map (quickmap, recursive windows) defines PMM_HAVE_ACCESSORS and its own
 *                 pmm_read32/pmm_write32/pmm_read64/pmm_write64/pmm_zero_frame (kmap_atomic and friends),
 *                 and pmm_fill/pmm_is_filled if the allocator uses them (examples/c/bitmap.c does).
 *
 * Why physical addresses: the allocator's metadata lives in RAM it manages (a frame table, bitmaps,
 * free frames holding stack pages). It names that RAM by physical address, and the kernel decides how
 * a physical address is reached (the accessors translate). In pagelab the accessors go through the
 * booted kernel's page tables, so a design that touches a free frame pays for reaching it.
 *
 * The rule pagelab enforces: ALL allocator state lives in RAM reached through the accessors, except a
 * few scalar globals (registers: a stack top, a list head, a hint, region bases). In a wasm build the
 * module's linear memory (globals + stack) is capped at 64 KiB; a frame table in a C array is refused.
 *
 * Life cycle (as PmmDesign in src/kernel/pmm/interface.ts):
 *   1. pmm_metadata_bytes(layout)    standing metadata bytes for this layout (0 if none);
 *   2. pmm_create(layout, meta_pa)   the kernel placed (and mapped) that many bytes at meta_pa;
 *   3. pmm_add_free(start, count)    every usable range minus reservations, once, in ascending order;
 *   4. pmm_alloc / pmm_free / pmm_check / pmm_stats / pmm_for_each_free / pmm_for_each_meta_frame.
 *
 * Errors: pmm_free and pmm_add_free return 0 or a negative PMM_E* code, after pmm_error() named the
 * reason. A refused free must leave every byte of state unchanged. pmm_check returns 0 or -PMM_EINVARIANT.
 */
#ifndef PAGELAB_PMM_H
#define PAGELAB_PMM_H

#include <stddef.h>
#include <stdint.h>

#define PAGELAB_PMM_ABI 1

typedef uint64_t pmm_pfn_t;   /* a frame number: physical address / 4096 */
typedef uint64_t pmm_paddr_t; /* a physical address */

#define PMM_PAGE_SIZE 4096u
#define PMM_NO_PFN ((pmm_pfn_t)-1) /* pmm_alloc: no block satisfies the request (a normal answer) */
#ifndef PMM_MAX_RANGES
#define PMM_MAX_RANGES 64 /* usable ranges a layout may have */
#endif

/* Usable RAM [start, end) in frames, with its NUMA node. */
struct pmm_range {
  pmm_pfn_t start;
  pmm_pfn_t end;
  uint32_t node;
};

/* What the allocator is told about the machine: sorted, disjoint usable ranges. */
struct pmm_layout {
  uint32_t nranges;
  uint32_t cpus;    /* for per-CPU caches (>= 1) */
  uint32_t colours; /* cache colours (>= 1) */
  struct pmm_range range[PMM_MAX_RANGES];
};

/* Constraints on an allocation (pmm_alloc gets NULL when there are none). */
struct pmm_constraints {
  uint64_t max_addr; /* exclusive upper physical address limit (16 MiB: ZONE_DMA), 0 = none */
  int32_t colour;    /* wanted cache colour (pfn % colours), -1 = any */
  int32_t node;      /* preferred NUMA node, -1 = any */
  int32_t cpu;       /* requesting CPU, -1 = unknown */
  uint32_t mobility; /* 0 unmovable, 1 movable, 2 reclaimable */
};

/* Registers the allocator reports (the free blocks themselves come from pmm_for_each_free). */
struct pmm_stats {
  uint64_t managed_frames;  /* frames ever given by pmm_add_free */
  uint64_t metadata_bytes;  /* standing metadata (placed at creation) */
  uint64_t transient_bytes; /* frames currently holding the allocator's own structures */
};

enum pmm_error_code {
  PMM_OK = 0,
  PMM_EDOUBLE = 1,     /* free of a block that is already free           -> DOUBLE_FREE */
  PMM_EBADFREE = 2,    /* never allocated, reserved, metadata, outside   -> BAD_FREE */
  PMM_EMISALIGNED = 3, /* pfn not a multiple of 2^order                  -> MISALIGNED_FREE */
  PMM_EWRONGORDER = 4, /* the block at pfn has another order             -> WRONG_ORDER */
  PMM_EINVARIANT = 5,  /* pmm_check found a broken invariant             -> PMM_INVARIANT */
  PMM_ELAYOUT = 6      /* the layout is malformed or too large           -> BAD_LAYOUT */
};

typedef void pmm_block_fn(pmm_pfn_t pfn, uint64_t count, void *ctx);

/* ---- What the allocator implements (one definition each, in your design file). ---- */
uint64_t pmm_metadata_bytes(const struct pmm_layout *layout);
int pmm_create(const struct pmm_layout *layout, pmm_paddr_t metadata);
int pmm_add_free(pmm_pfn_t start, uint64_t count);
pmm_pfn_t pmm_alloc(unsigned order, const struct pmm_constraints *c);
int pmm_free(pmm_pfn_t pfn, unsigned order);
int pmm_check(void);
void pmm_stats(struct pmm_stats *out);
unsigned pmm_max_order(void);
/* Calls fn for every free block (disjoint, not necessarily maximal) / every transient metadata frame. */
void pmm_for_each_free(pmm_block_fn *fn, void *ctx);
void pmm_for_each_meta_frame(pmm_block_fn *fn, void *ctx);

/* Name and one-line summary, shown by pagelab: PMM_DESIGN("my-pmm", "what it guarantees and costs"); */
#define PMM_DESIGN(name, summary)                                                                        \
  const char pmm_design_name[] = name;                                                                   \
  const char pmm_design_summary[] = summary

/* ---- Metadata accessors ---- */
#ifdef PAGELAB_WASM

#define PAGELAB_IMPORT(n) __attribute__((import_module("pagelab"), import_name(n)))
#define PAGELAB_EXPORT(n) __attribute__((export_name(n)))

PAGELAB_IMPORT("read32") uint32_t pagelab_read32(double pa);
PAGELAB_IMPORT("write32") void pagelab_write32(double pa, uint32_t value);
PAGELAB_IMPORT("read64") void pagelab_read64(double pa, uint64_t *out);
PAGELAB_IMPORT("write64") void pagelab_write64(double pa, uint32_t lo, uint32_t hi);
PAGELAB_IMPORT("zero_frame") void pagelab_zero_frame(double pfn);
PAGELAB_IMPORT("fill") void pagelab_fill(double pa, double bytes, uint32_t byte);
PAGELAB_IMPORT("is_filled") int pagelab_is_filled(double pa, double bytes, uint32_t byte);
PAGELAB_IMPORT("report") void pagelab_report(const char *message, double value);
PAGELAB_IMPORT("block") void pagelab_block(double pfn, double count);

static inline uint32_t pmm_read32(pmm_paddr_t pa) { return pagelab_read32((double)pa); }
static inline void pmm_write32(pmm_paddr_t pa, uint32_t v) { pagelab_write32((double)pa, v); }
/* A u64 is two 32-bit references (low word first), as in every pagelab design. */
static inline uint64_t pmm_read64(pmm_paddr_t pa) {
  uint64_t v;
  pagelab_read64((double)pa, &v);
  return v;
}
static inline void pmm_write64(pmm_paddr_t pa, uint64_t v) {
  pagelab_write64((double)pa, (uint32_t)v, (uint32_t)(v >> 32));
}
static inline void pmm_zero_frame(pmm_pfn_t pfn) { pagelab_zero_frame((double)pfn); }
/* memset(pa, byte, bytes) and !memchr_inv(pa, byte, bytes); 4-byte aligned. */
static inline void pmm_fill(pmm_paddr_t pa, uint64_t bytes, uint8_t byte) {
  pagelab_fill((double)pa, (double)bytes, byte);
}
static inline int pmm_is_filled(pmm_paddr_t pa, uint64_t bytes, uint8_t byte) {
  return pagelab_is_filled((double)pa, (double)bytes, byte);
}
/* Name the reason of an error (pagelab prints it); returns -code for `return pmm_error(...)`. */
static inline int pmm_error(int code, const char *why) {
  pagelab_report(why, -1.0);
  return -code;
}
static inline int pmm_error_at(int code, const char *why, uint64_t value) {
  pagelab_report(why, (double)value);
  return -code;
}

#else /* your kernel */

#ifndef PMM_HAVE_ACCESSORS
#ifndef PMM_PHYS_TO_VIRT
#ifndef PMM_DIRECT_MAP_BASE
#define PMM_DIRECT_MAP_BASE 0xffff888000000000ull
#endif
#define PMM_PHYS_TO_VIRT(pa) ((void *)(uintptr_t)((pa) + PMM_DIRECT_MAP_BASE))
#endif
static inline uint32_t pmm_read32(pmm_paddr_t pa) { return *(volatile uint32_t *)PMM_PHYS_TO_VIRT(pa); }
static inline void pmm_write32(pmm_paddr_t pa, uint32_t v) { *(volatile uint32_t *)PMM_PHYS_TO_VIRT(pa) = v; }
static inline uint64_t pmm_read64(pmm_paddr_t pa) { return *(volatile uint64_t *)PMM_PHYS_TO_VIRT(pa); }
static inline void pmm_write64(pmm_paddr_t pa, uint64_t v) { *(volatile uint64_t *)PMM_PHYS_TO_VIRT(pa) = v; }
static inline void pmm_zero_frame(pmm_pfn_t pfn) {
  volatile uint64_t *p = (volatile uint64_t *)PMM_PHYS_TO_VIRT(pfn * PMM_PAGE_SIZE);
  for (unsigned i = 0; i < PMM_PAGE_SIZE / 8; i++) p[i] = 0;
}
static inline void pmm_fill(pmm_paddr_t pa, uint64_t bytes, uint8_t byte) {
  uint32_t w = byte * 0x01010101u;
  for (uint64_t o = 0; o < bytes; o += 4) pmm_write32(pa + o, w);
}
static inline int pmm_is_filled(pmm_paddr_t pa, uint64_t bytes, uint8_t byte) {
  uint32_t w = byte * 0x01010101u;
  for (uint64_t o = 0; o < bytes; o += 4)
    if (pmm_read32(pa + o) != w) return 0;
  return 1;
}
#endif /* PMM_HAVE_ACCESSORS */

#ifndef PMM_LOG
#define PMM_LOG(why, value) ((void)(why), (void)(value)) /* e.g. printk("pmm: %s %llx\n", why, value) */
#endif
static inline int pmm_error(int code, const char *why) {
  PMM_LOG(why, (uint64_t)-1);
  return -code;
}
static inline int pmm_error_at(int code, const char *why, uint64_t value) {
  PMM_LOG(why, value);
  return -code;
}

#endif /* PAGELAB_WASM */

#define PMM_READ32(pa) pmm_read32(pa)
#define PMM_WRITE32(pa, v) pmm_write32((pa), (v))
#define PMM_READ64(pa) pmm_read64(pa)
#define PMM_WRITE64(pa, v) pmm_write64((pa), (v))

/* ---- The wasm ABI: exports pagelab calls, wrapping the functions above (one file per module). ---- */
#if defined(PAGELAB_WASM) && !defined(PAGELAB_NO_SHIMS)

extern const char pmm_design_name[] __attribute__((weak));    /* from PMM_DESIGN, if the file has it */
extern const char pmm_design_summary[] __attribute__((weak));

static struct pmm_layout pagelab_layout_;
static struct pmm_stats pagelab_stats_;

PAGELAB_EXPORT("pagelab_abi") int pagelab_abi(void) { return PAGELAB_PMM_ABI; }
PAGELAB_EXPORT("pagelab_name") const char *pagelab_name(void) { return pmm_design_name ? pmm_design_name : ""; }
PAGELAB_EXPORT("pagelab_summary") const char *pagelab_summary(void) {
  return pmm_design_summary ? pmm_design_summary : "";
}

PAGELAB_EXPORT("pagelab_layout_reset") void pagelab_layout_reset(uint32_t cpus, uint32_t colours) {
  pagelab_layout_.nranges = 0;
  pagelab_layout_.cpus = cpus;
  pagelab_layout_.colours = colours;
}
PAGELAB_EXPORT("pagelab_layout_add") int pagelab_layout_add(double start, double end, uint32_t node) {
  if (pagelab_layout_.nranges >= PMM_MAX_RANGES) return -PMM_ELAYOUT;
  struct pmm_range *r = &pagelab_layout_.range[pagelab_layout_.nranges++];
  r->start = (pmm_pfn_t)start;
  r->end = (pmm_pfn_t)end;
  r->node = node;
  return 0;
}
PAGELAB_EXPORT("pagelab_metadata_bytes") double pagelab_metadata_bytes(void) {
  return (double)pmm_metadata_bytes(&pagelab_layout_);
}
PAGELAB_EXPORT("pagelab_create") int pagelab_create(double metadata) {
  return pmm_create(&pagelab_layout_, (pmm_paddr_t)metadata);
}
PAGELAB_EXPORT("pagelab_add_free") int pagelab_add_free(double start, double count) {
  return pmm_add_free((pmm_pfn_t)start, (uint64_t)count);
}
/* has: bit 0 max_addr, bit 1 colour, bit 2 node, bit 3 cpu, bit 4 mobility; 0 = no constraints. */
PAGELAB_EXPORT("pagelab_alloc")
double pagelab_alloc(uint32_t order, uint32_t has, double max_addr, int32_t colour, int32_t node, int32_t cpu,
                     uint32_t mobility) {
  pmm_pfn_t p;
  if (has == 0) {
    p = pmm_alloc(order, 0);
  } else {
    struct pmm_constraints c;
    c.max_addr = (has & 1) ? (uint64_t)max_addr : 0;
    c.colour = (has & 2) ? colour : -1;
    c.node = (has & 4) ? node : -1;
    c.cpu = (has & 8) ? cpu : -1;
    c.mobility = (has & 16) ? mobility : 0;
    p = pmm_alloc(order, &c);
  }
  return p == PMM_NO_PFN ? -1.0 : (double)p;
}
PAGELAB_EXPORT("pagelab_free") int pagelab_free(double pfn, uint32_t order) {
  return pmm_free((pmm_pfn_t)pfn, order);
}
PAGELAB_EXPORT("pagelab_check") int pagelab_check(void) { return pmm_check(); }
PAGELAB_EXPORT("pagelab_max_order") uint32_t pagelab_max_order(void) { return pmm_max_order(); }
PAGELAB_EXPORT("pagelab_stats") void pagelab_stats(void) { pmm_stats(&pagelab_stats_); }
PAGELAB_EXPORT("pagelab_stat") double pagelab_stat(uint32_t i) {
  return i == 0 ? (double)pagelab_stats_.managed_frames
                : i == 1 ? (double)pagelab_stats_.metadata_bytes : (double)pagelab_stats_.transient_bytes;
}
static void pagelab_block_cb_(pmm_pfn_t pfn, uint64_t count, void *ctx) {
  (void)ctx;
  pagelab_block((double)pfn, (double)count);
}
PAGELAB_EXPORT("pagelab_for_each_free") void pagelab_for_each_free(void) {
  pmm_for_each_free(pagelab_block_cb_, 0);
}
PAGELAB_EXPORT("pagelab_for_each_meta_frame") void pagelab_for_each_meta_frame(void) {
  pmm_for_each_meta_frame(pagelab_block_cb_, 0);
}

#endif /* PAGELAB_WASM && !PAGELAB_NO_SHIMS */

#endif /* PAGELAB_PMM_H */
