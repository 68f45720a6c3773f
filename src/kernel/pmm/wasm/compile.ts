/**
 * The compiler driver of bring-your-own allocators: a `.c` file is compiled for wasm32 with the system
 * clang (and wasm-ld from lld), a `.rs` file with a rustc that has the wasm32-unknown-unknown standard
 * library; a `.wasm` file is taken as it is. Compiled modules are cached by the digest of the
 * preprocessed source and the flags (in $XDG_CACHE_HOME/pagelab/wasm or the temp dir), so the worker
 * threads of `pagelab compare` compile once.
 *
 * A missing tool is a clear error (exit 2) naming the package to install and the command to build the
 * `.wasm` by hand.
 */
import { packagePath } from "../../../paths.ts";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { fail } from "../../../errors.ts";

/** Where include/pagelab/pmm.h is (`pagelab include-path` prints it). */
export function includeDir(): string {
  return packagePath("include");
}

/**
 * Link flags every module gets: no entry point, a 16 KiB stack first. Linear memory is sized by the
 * linker (globals + stack); the loader refuses more than 64 KiB, saying why (a C array as frame table).
 */
export const WASM_LINK_FLAGS = ["-Wl,--no-entry", "-Wl,--stack-first", "-Wl,-z,stack-size=16384"];

export function clangCommand(src: string, out: string, clang = "clang"): string[] {
  return [
    clang,
    "--target=wasm32",
    "-O2",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-nostdlib",
    "-ffreestanding",
    "-mbulk-memory",
    "-DPAGELAB_WASM=1",
    `-I${includeDir()}`,
    ...WASM_LINK_FLAGS,
    "-o",
    out,
    src,
  ];
}

const RUST_LINK = [
  "-C",
  "link-arg=--no-entry",
  "-C",
  "link-arg=--stack-first",
  "-C",
  "link-arg=-zstack-size=16384",
];

export function rustcCommand(src: string, out: string, rustc = "rustc"): string[] {
  return [
    rustc,
    "--target",
    "wasm32-unknown-unknown",
    "--crate-type",
    "cdylib",
    "--edition",
    "2021",
    "-C",
    "opt-level=2",
    "-C",
    "panic=abort",
    ...RUST_LINK,
    "-o",
    out,
    src,
  ];
}

function cacheDir(): string {
  const base = process.env.XDG_CACHE_HOME ?? (homedir() ? join(homedir(), ".cache") : tmpdir());
  const d = join(base, "pagelab", "wasm");
  try {
    mkdirSync(d, { recursive: true });
    return d;
  } catch {
    const t = join(tmpdir(), "pagelab-wasm-cache");
    mkdirSync(t, { recursive: true });
    return t;
  }
}

function run(
  cmd: string[],
  input?: string,
): { status: number; stdout: string; stderr: string; missing: boolean } {
  const r = spawnSync(cmd[0], cmd.slice(1), { encoding: "utf8", input, maxBuffer: 64 * 2 ** 20 });
  const missing = (r.error as NodeJS.ErrnoException | undefined)?.code === "ENOENT";
  return { status: r.status ?? -1, stdout: r.stdout ?? "", stderr: r.stderr ?? "", missing };
}

let clangFound: string | null | undefined;

/** The first clang that can target wasm32 and link with wasm-ld, or null. */
export function findClang(): string | null {
  if (clangFound !== undefined) return clangFound;
  const candidates = [
    process.env.PAGELAB_CLANG,
    "clang",
    ...[19, 18, 17, 16, 15, 14].map((v) => `clang-${v}`),
  ];
  clangFound = null;
  for (const c of candidates) {
    if (!c) continue;
    const r = run([c, "--version"]);
    if (r.missing || r.status !== 0) continue;
    clangFound = c;
    break;
  }
  return clangFound;
}

function hasWasmLd(clang: string): boolean {
  const r = run([clang, "--target=wasm32", "-print-prog-name=wasm-ld"]);
  const p = r.stdout.trim();
  if (p.includes("/")) return existsSync(p);
  return !run([p || "wasm-ld", "--version"]).missing;
}

let rustcFound: string | null | undefined;

/** A rustc whose sysroot has the wasm32-unknown-unknown standard library (rustup's may lack it), or null. */
export function findRustc(): string | null {
  if (rustcFound !== undefined) return rustcFound;
  rustcFound = null;
  for (const c of [process.env.PAGELAB_RUSTC, "rustc", "/usr/bin/rustc"]) {
    if (!c) continue;
    const r = run([c, "--print", "target-libdir", "--target", "wasm32-unknown-unknown"]);
    if (r.missing || r.status !== 0) continue;
    const dir = r.stdout.trim();
    if (existsSync(dir) && readdirSync(dir).some((f) => f.startsWith("libcore-"))) {
      rustcFound = c;
      break;
    }
  }
  return rustcFound;
}

function noClang(src: string): never {
  const cmd = clangCommand(src, `${basename(src, ".c")}.wasm`).join(" ");
  return fail(
    "NO_COMPILER",
    `${src}: compiling C for WebAssembly needs clang and wasm-ld: install them (Debian/Ubuntu: apt-get install clang lld; ` +
      `macOS: brew install llvm lld), or build the module yourself and pass the .wasm:\n  ${cmd}`,
  );
}

/** Compile a C or Rust allocator to a wasm module (cached); returns its bytes. */
export function compileDesign(src: string): Uint8Array {
  const file = resolve(src);
  if (file.endsWith(".rs")) return compileRust(src, file);
  const clang = findClang();
  if (clang === null) noClang(src);
  // The digest of the preprocessed source: every #include counts, the cache never serves stale code.
  const cmd = clangCommand(file, "OUT", clang!);
  const pre = run([...cmd.filter((a) => !a.startsWith("-Wl,") && a !== "-o" && a !== "OUT"), "-E"]);
  if (pre.status !== 0) compileError(src, pre.stderr);
  const version = run([clang!, "--version"]).stdout.split("\n")[0];
  const key = createHash("sha256")
    .update(version)
    .update(cmd.slice(1, -3).join(" "))
    .update(pre.stdout)
    .digest("hex")
    .slice(0, 32);
  const cached = join(cacheDir(), `${key}.wasm`);
  if (existsSync(cached)) return new Uint8Array(readFileSync(cached));
  if (!hasWasmLd(clang!)) noClang(src);
  const tmp = `${cached}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const r = run(clangCommand(file, tmp, clang!));
  if (r.status !== 0) {
    if (
      /wasm-ld|unable to execute command|No such file or directory.*ld/.test(r.stderr) &&
      !/error: undefined symbol/.test(r.stderr)
    )
      noClang(src);
    compileError(src, r.stderr);
  }
  if (r.stderr.trim() !== "") process.stderr.write(r.stderr);
  renameSync(tmp, cached);
  return new Uint8Array(readFileSync(cached));
}

function compileError(src: string, stderr: string): never {
  const undef = [...stderr.matchAll(/undefined symbol: (\S+)/g)].map((m) => m[1]);
  const hint =
    undef.length > 0
      ? `\n(${undef.join(", ")}: not part of pagelab's ABI. The allocator runs without a C library; it may call ` +
        "only its own functions and the accessors of include/pagelab/pmm.h)"
      : "";
  return fail("BAD_DESIGN", `${src}: compilation failed:\n${stderr.trim()}${hint}`);
}

function compileRust(src: string, file: string): Uint8Array {
  const rustc = findRustc();
  if (rustc === null) {
    return fail(
      "NO_COMPILER",
      `${src}: compiling Rust for WebAssembly needs a rustc with the wasm32-unknown-unknown standard library: ` +
        "install it (Debian/Ubuntu: apt-get install rustc libstd-rust-dev-wasm32; with rustup: rustup target add " +
        "wasm32-unknown-unknown), or set PAGELAB_RUSTC, or build the module yourself and pass the .wasm:\n  " +
        rustcCommand(src, `${basename(src, ".rs")}.wasm`).join(" "),
    );
  }
  const version = run([rustc, "--version"]).stdout.trim();
  const key = createHash("sha256")
    .update(version)
    .update(rustcCommand("SRC", "OUT", "rustc").join(" "))
    .update(readFileSync(file))
    .digest("hex")
    .slice(0, 32);
  const cached = join(cacheDir(), `${key}.wasm`);
  if (existsSync(cached)) return new Uint8Array(readFileSync(cached));
  const tmp = `${cached}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  const r = run(rustcCommand(file, tmp, rustc));
  if (r.status !== 0) fail("BAD_DESIGN", `${src}: compilation failed:\n${r.stderr.trim()}`);
  renameSync(tmp, cached);
  return new Uint8Array(readFileSync(cached));
}

/** Read a module the user built. */
export function readWasm(src: string): Uint8Array {
  return new Uint8Array(readFileSync(resolve(src)));
}
