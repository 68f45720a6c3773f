/*
 * pagelab probe kernel: runs the cases of the plan the harness loaded at PLAN_PA and reports, on the
 * serial port, what the CPU did: for each case the exception (vector 14 with its error code and CR2, or
 * none) and the low words of the paging-structure entries on the walk's path read back afterwards
 * (their Accessed and Dirty bits). Then it leaves QEMU through isa-debug-exit.
 *
 * Each case: set CR0.WP, EFER.NXE, CR4.SMEP/SMAP as asked; clear A and D in the path's entries; reload
 * CR3 (a full flush: CR4.PGE stays 0); make the access (STAC first when the case wants EFLAGS.AC at
 * CPL0); restore the base controls; read the path back.
 *
 * Output lines (hex numbers without 0x):
 *   PROBE levels=L maxphys=N pdpe1gb=B smep=B smap=B la57=B pku=B nx=B cases=N
 *   R id vector error cr2 rip lo0 lo1 …      (vector "-" when no exception)
 *   DONE
 */
typedef unsigned long u64;
typedef unsigned int u32;
typedef unsigned short u16;
typedef unsigned char u8;

#define PLAN_PA 0x700000UL
#define PLAN_MAGIC 0x314e4c50U
#define MAX_CASES 16000

#define CTL_CPL3 1
#define CTL_WP 2
#define CTL_NXE 4
#define CTL_SMEP 8
#define CTL_SMAP 16
#define CTL_AC 32

struct plan_case {
  u64 va;
  u32 kind;
  u32 ctl;
  u32 npath;
  u32 id;
  u64 path[5];
};

struct plan {
  u32 magic;
  u32 ncases;
  u32 levels;
  u32 flags;
  u64 cr3;
  u64 user_rip;
  u64 user_rsp;
  u64 pad_pa;
  u64 reserved[2];
  struct plan_case cases[];
};

struct tss {
  u32 reserved0;
  u64 rsp0;
  u64 rsp1;
  u64 rsp2;
  u64 reserved1;
  u64 ist[7];
  u64 reserved2;
  u16 reserved3;
  u16 iomap;
} __attribute__((packed));

struct idt_gate {
  u16 off0;
  u16 sel;
  u8 ist;
  u8 attr;
  u16 off1;
  u32 off2;
  u32 zero;
} __attribute__((packed));

long run_access(long kind, u64 va, long user, u64 user_rip, u64 user_rsp, u64 user_rflags);
extern const u64 isr_table[33];
extern u64 gdt[7];
extern volatile u64 exc_vector, exc_error, exc_rip, exc_cr2;
extern char trap_stack_top[];

static struct tss tss __attribute__((aligned(16)));
static struct idt_gate idt[256] __attribute__((aligned(16)));

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port)); }
static inline u8 inb(u16 port) {
  u8 v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}
static inline u64 rd_cr0(void) { u64 v; __asm__ volatile("mov %%cr0, %0" : "=r"(v)); return v; }
static inline void wr_cr0(u64 v) { __asm__ volatile("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline u64 rd_cr3(void) { u64 v; __asm__ volatile("mov %%cr3, %0" : "=r"(v)); return v; }
static inline void wr_cr3(u64 v) { __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline u64 rd_cr4(void) { u64 v; __asm__ volatile("mov %%cr4, %0" : "=r"(v)); return v; }
static inline void wr_cr4(u64 v) { __asm__ volatile("mov %0, %%cr4" : : "r"(v) : "memory"); }
static inline u64 rdmsr(u32 msr) {
  u32 lo, hi;
  __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
  return ((u64)hi << 32) | lo;
}
static inline void wrmsr(u32 msr, u64 v) {
  __asm__ volatile("wrmsr" : : "c"(msr), "a"((u32)v), "d"((u32)(v >> 32)) : "memory");
}
static inline void cpuid(u32 leaf, u32 sub, u32 *a, u32 *b, u32 *c, u32 *d) {
  __asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(sub));
}

static void putc_serial(char c) {
  while ((inb(0x3fd) & 0x20) == 0) {
  }
  outb(0x3f8, (u8)c);
}
static void puts_serial(const char *s) {
  while (*s) putc_serial(*s++);
}
static void puthex(u64 v) {
  char buf[17];
  int i = 16;
  buf[16] = 0;
  do {
    buf[--i] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0 && i > 0);
  puts_serial(buf + i);
}
static void putdec(u64 v) {
  char buf[21];
  int i = 20;
  buf[20] = 0;
  do {
    buf[--i] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0 && i > 0);
  puts_serial(buf + i);
}

static void qemu_exit(u8 code) {
  outb(0xf4, code);
  for (;;) __asm__ volatile("hlt");
}

void probe_unexpected(void) {
  puts_serial("UNEXPECTED vector=");
  puthex(exc_vector);
  puts_serial(" error=");
  puthex(exc_error);
  puts_serial(" rip=");
  puthex(exc_rip);
  puts_serial(" cr2=");
  puthex(exc_cr2);
  puts_serial("\n");
  qemu_exit(4);
}

static int has_smep, has_smap, has_pku, has_la57, has_pdpe1gb, has_nx;
static u32 maxphys;

static void detect(void) {
  u32 a, b, c, d;
  cpuid(0, 0, &a, &b, &c, &d);
  u32 maxleaf = a;
  if (maxleaf >= 7) {
    cpuid(7, 0, &a, &b, &c, &d);
    has_smep = (b >> 7) & 1;
    has_smap = (b >> 20) & 1;
    has_pku = (c >> 3) & 1;
    has_la57 = (c >> 16) & 1;
  }
  cpuid(0x80000000, 0, &a, &b, &c, &d);
  u32 maxext = a;
  if (maxext >= 0x80000001) {
    cpuid(0x80000001, 0, &a, &b, &c, &d);
    has_pdpe1gb = (d >> 26) & 1;
    has_nx = (d >> 20) & 1;
  }
  maxphys = 36;
  if (maxext >= 0x80000008) {
    cpuid(0x80000008, 0, &a, &b, &c, &d);
    maxphys = a & 0xff;
  }
}

static void setup_cpu_tables(void) {
  u64 base = (u64)&tss;
  u64 limit = sizeof(tss) - 1;
  tss.rsp0 = (u64)trap_stack_top;
  tss.iomap = sizeof(tss);
  gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89UL << 40) | (((limit >> 16) & 0xf) << 48) |
           (((base >> 24) & 0xff) << 56);
  gdt[6] = base >> 32;
  __asm__ volatile("ltr %w0" : : "r"(0x28));
  for (int v = 0; v < 33; v++) {
    int vec = v < 32 ? v : 0x80;
    u64 h = isr_table[v];
    idt[vec].off0 = (u16)h;
    idt[vec].sel = 0x08;
    idt[vec].ist = 0;
    idt[vec].attr = vec == 0x80 ? 0xEE : 0x8E; /* interrupt gate; int $0x80 callable from CPL3 */
    idt[vec].off1 = (u16)(h >> 16);
    idt[vec].off2 = (u32)(h >> 32);
    idt[vec].zero = 0;
  }
  struct {
    u16 limit;
    u64 base;
  } __attribute__((packed)) idtr = {sizeof(idt) - 1, (u64)idt};
  __asm__ volatile("lidt %0" : : "m"(idtr));
}

static void set_controls(u32 ctl) {
  u64 cr0 = rd_cr0();
  cr0 = (ctl & CTL_WP) ? cr0 | (1UL << 16) : cr0 & ~(1UL << 16);
  wr_cr0(cr0);
  u64 efer = rdmsr(0xC0000080);
  efer = (ctl & CTL_NXE) ? efer | (1UL << 11) : efer & ~(1UL << 11);
  wrmsr(0xC0000080, efer);
  u64 cr4 = rd_cr4();
  if (has_smep) cr4 = (ctl & CTL_SMEP) ? cr4 | (1UL << 20) : cr4 & ~(1UL << 20);
  if (has_smap) cr4 = (ctl & CTL_SMAP) ? cr4 | (1UL << 21) : cr4 & ~(1UL << 21);
  wr_cr4(cr4);
}

void probe_main(void) {
  struct plan *p = (struct plan *)PLAN_PA;
  detect();
  setup_cpu_tables();
  puts_serial("PROBE levels=");
  putdec(p->levels);
  puts_serial(" maxphys=");
  putdec(maxphys);
  puts_serial(" pdpe1gb=");
  putdec(has_pdpe1gb);
  puts_serial(" smep=");
  putdec(has_smep);
  puts_serial(" smap=");
  putdec(has_smap);
  puts_serial(" la57=");
  putdec(has_la57);
  puts_serial(" pku=");
  putdec(has_pku);
  puts_serial(" nx=");
  putdec(has_nx);
  puts_serial(" cases=");
  putdec(p->ncases);
  puts_serial("\n");
  if (p->ncases > MAX_CASES) {
    puts_serial("BADPLAN too many cases\n");
    qemu_exit(5);
  }
  volatile u8 *pad = (volatile u8 *)p->pad_pa;
  for (int i = 0; i < 4096; i++) pad[i] = 0xc3; /* ret: fetches return at once */
  const u32 base_ctl = CTL_WP | CTL_NXE;
  for (u32 i = 0; i < p->ncases; i++) {
    struct plan_case *c = &p->cases[i];
    u32 npath = c->npath > 5 ? 5 : c->npath;
    set_controls(c->ctl);
    for (u32 j = 0; j < npath; j++) {
      volatile u32 *e = (volatile u32 *)c->path[j];
      *e &= ~0x60U; /* clear Accessed and Dirty */
    }
    wr_cr3(rd_cr3());
    int user = (c->ctl & CTL_CPL3) != 0;
    int ac = (c->ctl & CTL_AC) != 0;
    if (ac && !user && has_smap) __asm__ volatile("stac" ::: "memory");
    u64 uflags = 0x2 | (ac ? (1UL << 18) : 0);
    long vec = run_access(c->kind, c->va, user, p->user_rip, p->user_rsp, uflags);
    if (has_smap) __asm__ volatile("clac" ::: "memory");
    set_controls(base_ctl);
    puts_serial("R ");
    puthex(c->id);
    puts_serial(" ");
    if (vec < 0 || vec == 0x80) puts_serial("-");
    else puthex((u64)vec);
    puts_serial(" ");
    puthex(vec < 0 || vec == 0x80 ? 0 : exc_error);
    puts_serial(" ");
    puthex(vec < 0 || vec == 0x80 ? 0 : exc_cr2);
    puts_serial(" ");
    puthex(vec < 0 || vec == 0x80 ? 0 : exc_rip);
    for (u32 j = 0; j < npath; j++) {
      puts_serial(" ");
      puthex(*(volatile u32 *)c->path[j]);
    }
    puts_serial("\n");
  }
  puts_serial("DONE\n");
  qemu_exit(0);
}
