/**
 * The probe kernel: a small multiboot image (probe/boot.S + probe/probe.c + probe/link.ld) built with
 * the system `cc`/`ld`/`objcopy` into a temporary directory, booted by QEMU (`-kernel`), that performs
 * real reads, writes, instruction fetches and locked read-modify-writes at CPL0 and CPL3 on page
 * tables pagelab built, and reports each exception and the A/D bits the CPU set.
 *
 * Guest physical layout (QEMU -m 64M):
 *
 *   0x100000  probe kernel (.boot, .user at 0x101000, .text/.data/.bss below 2 MiB)
 *   0x400000  the user stack page
 *   0x600000  the pad: one page of RET (0xC3) that every test mapping leads to
 *   0x700000  the plan (header + 64-byte cases), loaded with -device loader
 *   0x800000+ pagelab's page tables, loaded with -device loader at their own addresses
 *
 * Plan format (little endian): u32 magic "PLN1", u32 ncases, u32 levels, u32 flags, u64 cr3,
 * u64 user_rip, u64 user_rsp, u64 pad_pa, 16 reserved bytes; then per case u64 va, u32 kind, u32 ctl,
 * u32 npath, u32 id, u64 path[5] (physical addresses of the entries on the walk's path).
 */
import { packagePath } from "../../paths.ts";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fail } from "../../errors.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { type Blob, QemuSession } from "./session.ts";
import { checkToolchain } from "./tools.ts";

export const PROBE_KERNEL_PA = 0x100000;
export const PROBE_USER_PAGE_PA = 0x101000;
export const PROBE_USER_STACK_PA = 0x400000;
export const PROBE_PAD_PA = 0x600000;
export const PROBE_PLAN_PA = 0x700000;
/** First frame the test's page tables may use. */
export const PROBE_TABLES_PFN = 0x800;
export const PROBE_MEMORY = "64M";
const PLAN_MAGIC = 0x314e4c50;
const HEADER_BYTES = 64;
const CASE_BYTES = 64;
export const MAX_PROBE_CASES = 16000;

export const enum Ctl {
  CPL3 = 1,
  WP = 2,
  NXE = 4,
  SMEP = 8,
  SMAP = 16,
  AC = 32,
}

export type ProbeKind = "read" | "write" | "fetch" | "lock";
export const KIND_CODE: Record<ProbeKind, number> = { read: 0, write: 1, fetch: 2, lock: 3 };

export interface PlanCase {
  id: number;
  va: bigint;
  kind: ProbeKind;
  ctl: number;
  /** Physical addresses of the paging-structure entries on the path (root first), at most 5. */
  path: number[];
}

export interface Plan {
  levels: Levels;
  cr3: number;
  userRip: bigint;
  userRsp: bigint;
  cases: PlanCase[];
}

export function encodePlan(plan: Plan): Uint8Array {
  if (plan.cases.length > MAX_PROBE_CASES) {
    fail("PROBE_PLAN", `${plan.cases.length} cases: the probe takes at most ${MAX_PROBE_CASES}`);
  }
  const buf = new Uint8Array(HEADER_BYTES + plan.cases.length * CASE_BYTES);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, PLAN_MAGIC, true);
  dv.setUint32(4, plan.cases.length, true);
  dv.setUint32(8, plan.levels, true);
  dv.setBigUint64(16, BigInt(plan.cr3), true);
  dv.setBigUint64(24, plan.userRip, true);
  dv.setBigUint64(32, plan.userRsp, true);
  dv.setBigUint64(40, BigInt(PROBE_PAD_PA), true);
  plan.cases.forEach((c, i) => {
    const o = HEADER_BYTES + i * CASE_BYTES;
    if (c.path.length > 5) fail("PROBE_PLAN", `case ${c.id}: a path has at most 5 entries`);
    dv.setBigUint64(o, c.va, true);
    dv.setUint32(o + 8, KIND_CODE[c.kind], true);
    dv.setUint32(o + 12, c.ctl, true);
    dv.setUint32(o + 16, c.path.length, true);
    dv.setUint32(o + 20, c.id, true);
    for (let j = 0; j < c.path.length; j++) dv.setBigUint64(o + 24 + 8 * j, BigInt(c.path[j]), true);
  });
  return buf;
}

export interface ProbeHeader {
  levels: number;
  maxphys: number;
  pdpe1gb: boolean;
  smep: boolean;
  smap: boolean;
  la57: boolean;
  pku: boolean;
  nx: boolean;
  cases: number;
}

export interface ProbeResult {
  id: number;
  /** Exception vector, or -1 when the access completed. */
  vector: number;
  error: number;
  cr2: bigint;
  rip: bigint;
  /** Low words of the path's entries after the access. */
  path: number[];
}

export interface ProbeOutput {
  header: ProbeHeader | null;
  results: ProbeResult[];
  done: boolean;
  /** Lines that are neither header, result nor DONE (e.g. UNEXPECTED …). */
  other: string[];
}

export function parseProbeOutput(text: string): ProbeOutput {
  const out: ProbeOutput = { header: null, results: [], done: false, other: [] };
  for (const raw of text.replace(/\r/g, "").split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    if (line.startsWith("PROBE ")) {
      const kv = Object.fromEntries(
        line
          .slice(6)
          .split(" ")
          .map((t) => t.split("=") as [string, string]),
      );
      const n = (k: string) => Number(kv[k] ?? Number.NaN);
      out.header = {
        levels: n("levels"),
        maxphys: n("maxphys"),
        pdpe1gb: kv.pdpe1gb === "1",
        smep: kv.smep === "1",
        smap: kv.smap === "1",
        la57: kv.la57 === "1",
        pku: kv.pku === "1",
        nx: kv.nx === "1",
        cases: n("cases"),
      };
    } else if (/^R [0-9a-f]+ /.test(line)) {
      const t = line.split(" ");
      out.results.push({
        id: Number.parseInt(t[1], 16),
        vector: t[2] === "-" ? -1 : Number.parseInt(t[2], 16),
        error: Number.parseInt(t[3], 16),
        cr2: BigInt(`0x${t[4]}`),
        rip: BigInt(`0x${t[5]}`),
        path: t.slice(6).map((x) => Number.parseInt(x, 16)),
      });
    } else if (line === "DONE") {
      out.done = true;
    } else {
      out.other.push(line);
    }
  }
  return out;
}

const SOURCES = `${packagePath("src/lab/qemu/probe")}/`;

function run(cmd: string, args: string[], cwd: string): void {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) {
    fail(
      "PROBE_BUILD",
      `building the probe kernel failed: ${cmd} ${args.join(" ")}\n${r.error?.message ?? ""}${r.stderr ?? ""}`,
    );
  }
}

/** Build the probe kernel into `dir` (created by the caller); returns the flat binary's path. */
export function buildProbe(dir: string): string {
  const tc = checkToolchain();
  if (!tc.ok) fail("PROBE_TOOLCHAIN", tc.reason);
  const cflags = [
    "-m64",
    "-O2",
    "-std=gnu11",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-asynchronous-unwind-tables",
    "-Wall",
    "-Werror",
  ];
  run("cc", [...cflags, "-c", join(SOURCES, "probe.c"), "-o", join(dir, "probe.o")], dir);
  run("cc", ["-m64", "-c", join(SOURCES, "boot.S"), "-o", join(dir, "boot.o")], dir);
  run(
    "ld",
    [
      "-m",
      "elf_x86_64",
      "-static",
      "-nostdlib",
      "-T",
      join(SOURCES, "link.ld"),
      "-o",
      "probe.elf",
      "boot.o",
      "probe.o",
    ],
    dir,
  );
  run("objcopy", ["-O", "binary", "probe.elf", "probe.bin"], dir);
  return join(dir, "probe.bin");
}

export interface RunProbeOptions {
  kernel: string;
  plan: Plan;
  tables: Blob[];
  /** -cpu value (default "max"). */
  cpu?: string;
  /** -smp value (default 1). */
  smp?: number;
  timeoutMs?: number;
}

export interface ProbeRun {
  output: ProbeOutput;
  serial: string;
  stderr: string;
  exitCode: number | null;
  timedOut: boolean;
  ms: number;
}

/** Boot the probe on the plan and tables; wait for it to leave through isa-debug-exit. */
export async function runProbe(o: RunProbeOptions): Promise<ProbeRun> {
  const t0 = Date.now();
  const planBytes = encodePlan(o.plan);
  if (PROBE_PLAN_PA + planBytes.length > PROBE_TABLES_PFN * 4096) {
    fail(
      "PROBE_PLAN",
      `the plan (${planBytes.length} bytes) runs into the page tables at ${PROBE_TABLES_PFN * 4096}`,
    );
  }
  for (const b of o.tables) {
    if (b.pa < PROBE_TABLES_PFN * 4096) {
      fail(
        "PROBE_PLAN",
        `a page table at 0x${b.pa.toString(16)} is below 0x${(PROBE_TABLES_PFN * 4096).toString(16)}`,
      );
    }
  }
  const s = await QemuSession.start({
    control: false,
    cpu: o.cpu ?? "max",
    memory: PROBE_MEMORY,
    blobs: [...o.tables, { pa: PROBE_PLAN_PA, data: planBytes }],
    smp: o.smp ?? 1,
    serialFile: true,
    args: ["-kernel", o.kernel, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"],
  });
  try {
    const r = await s.waitExit(o.timeoutMs ?? 30_000);
    const serial = s.serial();
    return {
      output: parseProbeOutput(serial),
      serial,
      stderr: s.stderr,
      exitCode: r.code,
      timedOut: r.timedOut,
      ms: Date.now() - t0,
    };
  } finally {
    await s.close();
  }
}

/** A temporary directory with the built probe; `cleanup()` removes it. */
export function probeWorkdir(): { dir: string; kernel: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "pagelab-probe-"));
  try {
    const kernel = buildProbe(dir);
    readFileSync(kernel);
    return { dir, kernel, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}
