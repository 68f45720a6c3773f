/**
 * A deep copy of a booted machine's object graph: RAM (typed arrays, copied by buffer so that views
 * sharing memory still share it), TLBs, CPUs, the kernel's registers and the PMM's. `pagelab compare`
 * boots a configuration once and hands each workload a copy, instead of booting it again for every
 * workload: the boot is deterministic, so the copy is the state a fresh boot would have reached, and its
 * counters are the same (test/machine/clone.test.ts and the compare golden file hold it to that).
 *
 * Only data is copied: class instances (with their prototypes), arrays, Maps, Sets, typed arrays and
 * their buffers. A function found as a value is state the copy could not carry (a closure over the
 * original's objects), so it refuses with `CloneRefused`, and the caller boots afresh instead, unless the
 * function was declared `stateless` (it reads nothing but its arguments and `this`). Frozen objects and
 * empty typed arrays are shared (sentinels keep their identity).
 */

/** Thrown when the graph holds something that cannot be copied faithfully (a closure, a WebAssembly instance). */
export class CloneRefused extends Error {}

const STATELESS = new WeakSet<object>();

/** Declare `fn` safe to share between a machine and its copies: it keeps no state of its own. */
export function stateless<F extends (...args: never[]) => unknown>(fn: F): F {
  STATELESS.add(fn);
  return fn;
}

/** Built-in classes whose instances are copied (their contents by the rules above). */
const COPYABLE = new Set<unknown>([Object, Array, Map, Set]);

/**
 * Host memory for copies: the big buffers of a copy that is done with, handed to the next copy (of
 * the same machine, so of the same sizes). Writing into memory the host has already faulted in costs a
 * memcpy; fresh memory costs a page fault every 4 KiB as well (128 MiB: 36 ms against 375 ms here).
 */
export class BufferRecycler {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private held = 0;
  /** Buffers of at least this many bytes are worth keeping. */
  static readonly MIN_BYTES = 1 << 20;

  /** `maxBytes`: what it may hold at most (buffers given beyond it are left to the garbage collector). */
  constructor(private readonly maxBytes = Number.POSITIVE_INFINITY) {}

  /** A buffer of `bytes` bytes whose old contents the caller will overwrite, or null. */
  take(bytes: number): ArrayBuffer | null {
    const b = this.free.get(bytes)?.pop();
    if (b === undefined) return null;
    this.held -= bytes;
    return b;
  }

  /** Buffers nothing uses any more. */
  give(buffers: readonly ArrayBuffer[]): void {
    for (const b of buffers) {
      if (this.held + b.byteLength > this.maxBytes) continue;
      this.held += b.byteLength;
      const list = this.free.get(b.byteLength);
      if (list === undefined) this.free.set(b.byteLength, [b]);
      else list.push(b);
    }
  }
}

/** What owns a buffer whose tail is not in use yet (see `trackLiveBytes`). */
export interface LiveExtent {
  /** Bytes of `buffer` from its start that hold data; the rest is zero and may be left out of a copy. */
  liveBytes(buffer: ArrayBufferLike): number;
}

const LIVE = new WeakMap<ArrayBufferLike, LiveExtent>();

/**
 * Declare that `owner` knows how much of `buffer` is in use (a slab handed out from its start): a copy
 * copies that much and leaves the rest zero, without touching it.
 */
export function trackLiveBytes(buffer: ArrayBufferLike, owner: LiveExtent): void {
  LIVE.set(buffer, owner);
}

/** Buffers up to this size are copied into shared arenas of ARENA_BYTES (8-byte aligned places). */
const SMALL_BYTES = 64 * 1024;
const ARENA_BYTES = 1 << 20;

export interface CloneOptions {
  /** Objects kept as they are, with everything only they reach: immutable configuration. */
  shared?: Iterable<object>;
  /** Where big buffers come from (and `made` lists those this copy made or took, to give back later). */
  recycler?: BufferRecycler;
  made?: ArrayBuffer[];
}

/** Copy `root` deeply (see the module's comment for what is copied and what refuses). */
export function cloneGraph<T>(root: T, opts: CloneOptions = {}): T {
  const memo = new Map<unknown, unknown>();
  for (const s of opts.shared ?? []) memo.set(s, s);
  // Where each original buffer's bytes went: a buffer of its own, or a place in an arena.
  const buffers = new Map<ArrayBufferLike, { buf: ArrayBufferLike; at: number }>();
  let arena: ArrayBuffer | null = null;
  let arenaUsed = 0;
  /** A buffer of `bytes` for this copy: a recycled one (its old bytes still in it) when there is one. */
  const bigBuffer = (bytes: number): { buf: ArrayBuffer; recycled: boolean } => {
    const old = opts.recycler?.take(bytes) ?? null;
    const buf = old ?? new ArrayBuffer(bytes);
    opts.made?.push(buf);
    return { buf, recycled: old !== null };
  };
  const copyBuffer = (b: ArrayBufferLike): { buf: ArrayBufferLike; at: number } => {
    const n = b.byteLength;
    if (!(b instanceof ArrayBuffer)) return { buf: b.slice(0), at: 0 };
    // Small buffers (a sparse chunk's indexes, TLB arrays: thousands a machine) share arenas: one host
    // allocation for many, instead of an ArrayBuffer each (about 9 us apiece).
    if (n <= SMALL_BYTES) {
      if (arena === null || arenaUsed + n > ARENA_BYTES) {
        arena = bigBuffer(ARENA_BYTES).buf;
        arenaUsed = 0;
      }
      const at = arenaUsed;
      new Uint8Array(arena, at, n).set(new Uint8Array(b));
      arenaUsed += (n + 7) & ~7;
      return { buf: arena, at };
    }
    if (n < BufferRecycler.MIN_BYTES) return { buf: b.slice(0), at: 0 };
    const live = Math.min(n, LIVE.get(b)?.liveBytes(b) ?? n);
    const out = bigBuffer(n);
    new Uint8Array(out.buf, 0, live).set(new Uint8Array(b, 0, live));
    if (out.recycled && live < n) new Uint8Array(out.buf, live).fill(0); // a recycled tail holds old bytes
    return { buf: out.buf, at: 0 };
  };

  // Where a value sits, for CloneRefused's message: a chain of links, spelled out only when refused (a
  // path string per property and element cost more than the copy of a machine's small objects).
  const copy = (v: unknown, up: Where | null, key: PropertyKey): unknown => {
    if (v === null || (typeof v !== "object" && typeof v !== "function")) return v;
    const seen = memo.get(v);
    if (seen !== undefined) return seen;
    if (typeof v === "function") {
      if (STATELESS.has(v)) return v;
      throw new CloneRefused(
        `${spell(up, key)} is a function (${v.name || "anonymous"}): state a copy cannot carry`,
      );
    }
    if (ArrayBuffer.isView(v)) {
      if (v.byteLength === 0) return v;
      let place = buffers.get(v.buffer);
      if (place === undefined) {
        place = copyBuffer(v.buffer);
        buffers.set(v.buffer, place);
      }
      const Ctor = v.constructor as new (b: ArrayBufferLike, o: number, n: number) => ArrayBufferView;
      const per = "BYTES_PER_ELEMENT" in v ? (v.BYTES_PER_ELEMENT as number) : 1;
      const out = new Ctor(place.buf, place.at + v.byteOffset, v.byteLength / per);
      memo.set(v, out);
      return out;
    }
    if (Object.isFrozen(v)) return v;
    const proto = Object.getPrototypeOf(v) as object | null;
    const ctor = proto === null ? null : (proto as { constructor?: unknown }).constructor;
    if (ctor !== null && ctor !== undefined && !COPYABLE.has(ctor) && isNative(ctor))
      throw new CloneRefused(
        `${spell(up, key)} is a ${String((ctor as { name?: string }).name)}: not copyable`,
      );
    if (v instanceof Map) {
      const out = new Map();
      memo.set(v, out);
      const here = { up, key };
      let i = 0;
      for (const [k, x] of v) out.set(copy(k, here, "key"), copy(x, here, i++));
      return out;
    }
    if (v instanceof Set) {
      const out = new Set();
      memo.set(v, out);
      const here = { up, key };
      for (const x of v) out.add(copy(x, here, "item"));
      return out;
    }
    if (Array.isArray(v)) {
      const out = new Array<unknown>(v.length);
      memo.set(v, out);
      const here = { up, key };
      for (let i = 0; i < v.length; i++) if (i in v) out[i] = copy(v[i], here, i);
      return out;
    }
    // A registered class is made by `new` (bare: see `blank`), others by Object.create: the former
    // get the original's hidden class, so the simulator's hot code sees one shape, not two (two cost
    // about 2x in the compare).
    const out = (
      typeof ctor === "function" && BLANKABLE.has(ctor) && ctor.prototype === proto
        ? bareInstance(ctor as new () => object)
        : Object.create(proto)
    ) as Record<PropertyKey, unknown>;
    memo.set(v, out);
    const here = { up, key };
    for (const k of Reflect.ownKeys(v)) {
      const d = Object.getOwnPropertyDescriptor(v, k)!;
      if (d.get !== undefined || d.set !== undefined)
        throw new CloneRefused(`${spell(here, k)} is an accessor: not copyable`);
      const x = copy(d.value, here, k);
      if (d.writable && d.enumerable && d.configurable) out[k] = x;
      else Object.defineProperty(out, k, { ...d, value: x });
    }
    return out;
  };
  return copy(root, null, "root") as T;
}

/** A link of the way from the root to a value: the container's link and the key in it. */
interface Where {
  up: Where | null;
  key: PropertyKey;
}

/** The way to a value as `root.a[3].b`: a number is an index, a string a property. */
function spell(up: Where | null, key: PropertyKey): string {
  const link = (k: PropertyKey, top: boolean) =>
    typeof k === "number" ? `[${k}]` : typeof k === "symbol" ? `[${String(k)}]` : top ? k : `.${k}`;
  let s = link(key, up === null);
  for (let w = up; w !== null; w = w.up) s = link(w.key, w.up === null) + s;
  return s;
}

const nativeCache = new Map<unknown, boolean>();
function isNative(ctor: unknown): boolean {
  let n = nativeCache.get(ctor);
  if (n === undefined) {
    n = typeof ctor === "function" && Function.prototype.toString.call(ctor).includes("[native code]");
    nativeCache.set(ctor, n);
  }
  return n;
}

let blankDepth = 0;
let caught: object | null = null;
const BARE = new Error("bare instance");
const BLANKABLE = new WeakSet<object>();

/**
 * True while `cloneGraph` constructs a bare instance of a registered class: its constructor then calls
 * `bare(this)` first thing. Its fields exist by then (class fields are defined, in declaration order,
 * before the constructor's body), so the instance has the hidden class `new` gives every instance;
 * the copy fills the fields in.
 */
export function blank(): boolean {
  return blankDepth > 0;
}

/** Hand the bare instance under construction to `cloneGraph` (leaves the constructor: never returns). */
export function bare(instance: object): never {
  caught = instance;
  throw BARE;
}

/** Classes whose constructors call `bare(this)` when `blank()` (copies are then made by `new`, not `Object.create`). */
export function cloneable(...classes: (abstract new (...args: never[]) => object)[]): void {
  for (const c of classes) BLANKABLE.add(c);
}

function bareInstance(ctor: new () => object): object {
  blankDepth++;
  caught = null;
  try {
    return new ctor(); // a constructor with an empty body returns normally
  } catch (e) {
    if (e !== BARE || caught === null) throw e;
    return caught;
  } finally {
    blankDepth--;
    caught = null;
  }
}
