//! Linked stack pages in Rust: the same algorithm as examples/c/stack_pages.c and pagelab's TypeScript
//! `stack-pages`, as a `no_std` crate speaking include/pagelab/pmm.h's WebAssembly ABI directly (the
//! `pagelab_*` exports, the `pagelab` imports). Every metadata access goes through the imports, so the
//! simulated kernel translates and counts it.
//!
//!   npx pagelab boot --pmm examples/rust/stack_pages.rs
//!   (rustc --target wasm32-unknown-unknown --crate-type cdylib -C panic=abort -O ... : pagelab runs it)
//!
//! In a kernel, replace the `pagelab` imports by volatile accesses through your direct map.
#![no_std]
#![allow(clippy::missing_safety_doc)]

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

#[link(wasm_import_module = "pagelab")]
extern "C" {
    fn read32(pa: f64) -> u32;
    fn write32(pa: f64, v: u32);
    fn read64(pa: f64, out: *mut u64);
    fn write64(pa: f64, lo: u32, hi: u32);
    fn zero_frame(pfn: f64);
    fn report(msg: *const u8, value: f64);
    fn block(pfn: f64, count: f64);
}

const PAGE: u64 = 4096;
const PER_STACK_PAGE: u32 = 511;
const NIL: u64 = u64::MAX;
const MAX_RANGES: usize = 64;
const NAME: &[u8] = b"stack_pages.rs\0";
const SUMMARY: &[u8] = b"Linked stack pages of 511 free frame numbers each, in Rust: O(1), no contiguity.\0";

fn rd32(pa: u64) -> u32 { unsafe { read32(pa as f64) } }
fn wr32(pa: u64, v: u32) { unsafe { write32(pa as f64, v) } }
fn rd64(pa: u64) -> u64 {
    let mut v = 0u64;
    unsafe { read64(pa as f64, &mut v) };
    v
}
fn wr64(pa: u64, v: u64) { unsafe { write64(pa as f64, v as u32, (v >> 32) as u32) } }
fn error(code: i32, why: &'static [u8]) -> i32 {
    unsafe { report(why.as_ptr(), -1.0) };
    -code
}

struct State {
    head: u64, top: u32, pages: u64, entries: u64, managed: u64,
    nranges: usize, rstart: [u64; MAX_RANGES], rend: [u64; MAX_RANGES], rnode: [u32; MAX_RANGES],
    nbits: usize, bstart: [u64; MAX_RANGES], bend: [u64; MAX_RANGES], bbase: [u64; MAX_RANGES], bframes: u64,
    amap: u64, colours: u32, cpus: u32,
}

static mut S: State = State {
    head: NIL, top: 0, pages: 0, entries: 0, managed: 0,
    nranges: 0, rstart: [0; MAX_RANGES], rend: [0; MAX_RANGES], rnode: [0; MAX_RANGES],
    nbits: 0, bstart: [0; MAX_RANGES], bend: [0; MAX_RANGES], bbase: [0; MAX_RANGES], bframes: 0,
    amap: 0, colours: 1, cpus: 1,
};

fn st() -> &'static mut State { unsafe { &mut *core::ptr::addr_of_mut!(S) } }

fn page_round(b: u64) -> u64 { (b + PAGE - 1) / PAGE * PAGE }

/// The bitmap's regions: usable ranges widened to 32 frames, merged where they touch.
fn widen(s: &mut State) -> u64 {
    let (mut n, mut total, mut last) = (0usize, 0u64, 0u64);
    for i in 0..s.nranges {
        let a = s.rstart[i] / 32 * 32;
        let e = (s.rend[i] + 31) / 32 * 32;
        if n > 0 && a <= last {
            if e > last { total += e - last; last = e; s.bend[n - 1] = e; }
            continue;
        }
        s.bstart[n] = a; s.bend[n] = e; s.bbase[n] = total;
        n += 1; last = e; total += e - a;
    }
    s.nbits = n;
    total
}

fn region_of(s: &State, pfn: u64) -> Option<usize> { (0..s.nranges).find(|&i| pfn >= s.rstart[i] && pfn < s.rend[i]) }
fn slot(s: &State, pfn: u64) -> Option<u64> {
    (0..s.nbits).find(|&i| pfn >= s.bstart[i] && pfn < s.bend[i]).map(|i| s.bbase[i] + pfn - s.bstart[i])
}
fn amap_is_set(s: &State, pfn: u64) -> bool {
    match slot(s, pfn) { Some(x) => (rd32(s.amap + (x >> 5) * 4) >> (x & 31)) & 1 == 1, None => false }
}
fn amap_put(s: &State, pfn: u64, set: bool) {
    let x = slot(s, pfn).unwrap_or(0);
    let a = s.amap + (x >> 5) * 4;
    let w = rd32(a);
    wr32(a, if set { w | (1 << (x & 31)) } else { w & !(1 << (x & 31)) });
}

fn push(s: &mut State, pfn: u64) {
    if s.head == NIL || s.top == PER_STACK_PAGE {
        wr64(pfn * PAGE, s.head); // the freed frame becomes the new top page
        s.head = pfn; s.top = 0; s.pages += 1;
        return;
    }
    wr64(s.head * PAGE + 8 + s.top as u64 * 8, pfn);
    s.top += 1; s.entries += 1;
}

fn pop(s: &mut State) -> u64 {
    let h = s.head;
    if h == NIL { return NIL; }
    if s.top == 0 {
        s.head = rd64(h * PAGE); // hand out the empty stack page itself
        s.top = if s.head == NIL { 0 } else { PER_STACK_PAGE };
        s.pages -= 1;
        return h;
    }
    s.top -= 1; s.entries -= 1;
    rd64(h * PAGE + 8 + s.top as u64 * 8)
}

fn walk(s: &State, mut f: impl FnMut(u64)) {
    let (mut page, mut n) = (s.head, s.top);
    while page != NIL {
        for i in 0..n { f(rd64(page * PAGE + 8 + i as u64 * 8)); }
        page = rd64(page * PAGE);
        n = PER_STACK_PAGE;
    }
}
fn walk_meta(s: &State, mut f: impl FnMut(u64)) {
    let mut page = s.head;
    while page != NIL { f(page); page = rd64(page * PAGE); }
}

#[no_mangle] pub extern "C" fn pagelab_abi() -> i32 { 1 }
#[no_mangle] pub extern "C" fn pagelab_name() -> *const u8 { NAME.as_ptr() }
#[no_mangle] pub extern "C" fn pagelab_summary() -> *const u8 { SUMMARY.as_ptr() }
#[no_mangle] pub extern "C" fn pagelab_layout_reset(cpus: u32, colours: u32) {
    let s = st(); s.nranges = 0; s.cpus = cpus; s.colours = if colours == 0 { 1 } else { colours };
}
#[no_mangle] pub extern "C" fn pagelab_layout_add(start: f64, end: f64, node: u32) -> i32 {
    let s = st();
    if s.nranges >= MAX_RANGES { return -6; }
    s.rstart[s.nranges] = start as u64; s.rend[s.nranges] = end as u64; s.rnode[s.nranges] = node;
    s.nranges += 1;
    0
}
#[no_mangle] pub extern "C" fn pagelab_metadata_bytes() -> f64 { page_round(widen(st()) / 8) as f64 }
#[no_mangle] pub extern "C" fn pagelab_create(meta: f64) -> i32 {
    let s = st();
    s.head = NIL; s.top = 0; s.pages = 0; s.entries = 0; s.managed = 0;
    s.bframes = widen(s);
    s.amap = meta as u64;
    let mut off = 0;
    while off < page_round(s.bframes / 8) { unsafe { zero_frame(((s.amap + off) / PAGE) as f64) }; off += PAGE; }
    0
}
#[no_mangle] pub extern "C" fn pagelab_add_free(start: f64, count: f64) -> i32 {
    let s = st();
    let (start, count) = (start as u64, count as u64);
    let mut p = start;
    while p < start + count {
        match region_of(s, p) { Some(r) => p = s.rend[r], None => return error(2, b"addFree outside the usable RAM of the layout\0") }
    }
    for i in 0..count { push(s, start + i); }
    s.managed += count;
    0
}
#[no_mangle] pub extern "C" fn pagelab_alloc(order: u32, has: u32, max_addr: f64, colour: i32, _node: i32, _cpu: i32, _mob: u32) -> f64 {
    let s = st();
    if order != 0 { return -1.0; }
    let max = if has & 1 != 0 { max_addr as u64 } else { 0 };
    let col = if has & 2 != 0 { colour } else { -1 };
    let fits = |pfn: u64| (max == 0 || (pfn + 1) * PAGE <= max) && (col < 0 || pfn % s.colours as u64 == col as u64);
    let pfn = if max == 0 && col < 0 { pop(s) } else {
        let mut found = NIL;
        if s.head != NIL {
            if s.top == 0 && fits(s.head) { found = pop(s); } else {
                let (mut page, mut n) = (s.head, s.top);
                'outer: while page != NIL {
                    let mut i = n as i64 - 1;
                    while i >= 0 {
                        let pa = page * PAGE + 8 + i as u64 * 8;
                        let p = rd64(pa);
                        if fits(p) {
                            let filler = pop(s);
                            if filler != p { wr64(pa, filler); }
                            found = p;
                            break 'outer;
                        }
                        i -= 1;
                    }
                    page = rd64(page * PAGE);
                    n = PER_STACK_PAGE;
                }
            }
        }
        found
    };
    if pfn == NIL { return -1.0; }
    amap_put(s, pfn, true);
    pfn as f64
}
#[no_mangle] pub extern "C" fn pagelab_free(pfn: f64, order: u32) -> i32 {
    let s = st();
    let pfn = pfn as u64;
    if order != 0 { return error(4, b"this design only hands out orders 0..0\0"); }
    if region_of(s, pfn).is_none() { return error(2, b"not in usable RAM\0"); }
    if !amap_is_set(s, pfn) {
        let mut found = false;
        walk(s, |p| found |= p == pfn);
        walk_meta(s, |p| found |= p == pfn);
        return if found { error(1, b"already free\0") } else { error(2, b"never allocated (reserved or metadata)\0") };
    }
    amap_put(s, pfn, false);
    push(s, pfn);
    0
}
#[no_mangle] pub extern "C" fn pagelab_check() -> i32 {
    let s = st();
    let (mut n, mut bad) = (0u64, false);
    walk(s, |p| { n += 1; bad |= region_of(s, p).is_none() || amap_is_set(s, p); });
    if bad { return error(5, b"a frame on the stack is outside usable RAM or marked allocated\0"); }
    if n != s.entries { return error(5, b"stack entries differ from the register\0"); }
    let mut m = 0u64;
    walk_meta(s, |_| m += 1);
    if m != s.pages { return error(5, b"stack pages linked differ from the register\0"); }
    let mut allocated = 0u64;
    for w in 0..(s.bframes / 32) { allocated += rd32(s.amap + w * 4).count_ones() as u64; }
    if allocated + n + m != s.managed { return error(5, b"allocated + free frames differ from managed frames\0"); }
    0
}
#[no_mangle] pub extern "C" fn pagelab_max_order() -> u32 { 0 }
#[no_mangle] pub extern "C" fn pagelab_stats() {}
#[no_mangle] pub extern "C" fn pagelab_stat(i: u32) -> f64 {
    let s = st();
    match i { 0 => s.managed as f64, 1 => page_round(s.bframes / 8) as f64, _ => (s.pages * PAGE) as f64 }
}
#[no_mangle] pub extern "C" fn pagelab_for_each_free() { walk(st(), |p| unsafe { block(p as f64, 1.0) }); }
#[no_mangle] pub extern "C" fn pagelab_for_each_meta_frame() { walk_meta(st(), |p| unsafe { block(p as f64, 1.0) }); }
