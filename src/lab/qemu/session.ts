/**
 * One QEMU (`qemu-system-x86_64`, TCG) under the harness's control.
 *
 *   qemu-system-x86_64 -nodefaults -no-user-config -machine pc -accel tcg -cpu max -m 256M
 *       -display none -monitor none -no-reboot -S
 *       -gdb unix:TMP/gdb.sock,server=on,wait=off -qmp unix:TMP/qmp.sock,server=on,wait=off
 *       -device loader,file=TMP/run0.bin,addr=0x…,force-raw=on …
 *
 * Page-table pages go in with `-device loader` (one blob per physically contiguous run of pages). The
 * CPU stays stopped (`-S`): paging is switched on by writing CR4, EFER, CR3 and CR0 through the
 * gdbstub, then QEMU's monitor reports its own view of the tables (`info tlb`, `gva2gpa`, `info mem`).
 * The sockets live in a private temporary directory: nothing listens on the network. Every wait has a
 * timeout; `close()` ends QEMU (QMP quit, then SIGKILL of that one process) and removes the directory.
 *
 * Register numbers are not hard-coded: they are read from the target description QEMU sends to a
 * debugger (`qXfer:features:read`, QEMU's gdb-xml/i386-64bit.xml). Asking for it is also what makes
 * QEMU's gdbstub accept `p`/`P` packets at all.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fail, hex } from "../../errors.ts";
import type { Levels } from "../../machine/x86/vaddr.ts";
import { checkQemu } from "./tools.ts";
import { GdbClient, QmpClient } from "./wire.ts";

/** A blob to place in guest physical memory before the CPU starts. */
export interface Blob {
  pa: number;
  data: Uint8Array;
}

export interface SessionOptions {
  /** Extra -cpu features, e.g. "max" or "max,pdpe1gb=off" (default "max"). */
  cpu?: string;
  machine?: "pc" | "q35";
  /** Number of vCPUs (default 1). */
  smp?: number;
  /** Guest RAM, e.g. "256M" (default). */
  memory?: string;
  blobs?: Blob[];
  /**
   * Load the boot area (GDT and identity tables at [0, 0x4000)) so that `enablePaging` can reach
   * 64-bit mode (default true when `control` is on).
   */
  bootArea?: boolean;
  /** Send the guest's COM1 to a file in the session directory (read it with `serial()`). */
  serialFile?: boolean;
  /** Extra command-line arguments (kernel, serial, devices). */
  args?: string[];
  /** Start stopped (-S) with gdbstub and QMP (default true). */
  control?: boolean;
  timeoutMs?: number;
}

export interface PagingState {
  cr3: number;
  levels: Levels;
  nxe?: boolean;
  wp?: boolean;
  smep?: boolean;
  smap?: boolean;
  pge?: boolean;
}

/** CR0, CR4 and EFER bits used here (SDM Vol. 3A, 2.5 and 2.2.1). */
export const CR0_PE = 1n << 0n;
export const CR0_ET = 1n << 4n;
export const CR0_WP = 1n << 16n;
export const CR0_PG = 1n << 31n;
export const CR4_PAE = 1n << 5n;
export const CR4_PGE = 1n << 7n;
export const CR4_LA57 = 1n << 12n;
export const CR4_SMEP = 1n << 20n;
export const CR4_SMAP = 1n << 21n;
export const EFER_LME = 1n << 8n;
export const EFER_NXE = 1n << 11n;

/**
 * The harness's boot area, [0, 0x4000): a GDT at 0 (null, 64-bit code at 0x08, data at 0x10) and
 * tables that identity-map the first GiB (PML4 at 0x1000, PDPT at 0x2000, PML5 at 0x3000). Loaded
 * only when `SessionOptions.bootArea` is set; tables under test must not use these frames.
 */
export const BOOT_AREA_END = 0x4000;
const BOOT_PML4 = 0x1000;
const BOOT_PDPT = 0x2000;
const BOOT_PML5 = 0x3000;

function bootAreaBlob(): Blob {
  const data = new Uint8Array(BOOT_AREA_END);
  const dv = new DataView(data.buffer);
  const q = (off: number, v: bigint) => dv.setBigUint64(off, v, true);
  q(0x08, 0x00209a0000000000n); // 64-bit code: P, DPL 0, execute/read, L
  q(0x10, 0x0000920000000000n); // data: P, DPL 0, read/write
  q(BOOT_PML4, BigInt(BOOT_PDPT) | 0x3n); // P RW
  q(BOOT_PDPT, 0x83n); // 1 GiB at 0: P RW PS
  q(BOOT_PML5, BigInt(BOOT_PML4) | 0x3n);
  return { pa: 0, data };
}

/** Group 4 KiB pages into physically contiguous runs (for one `-device loader` each). */
export function contiguousRuns(pages: Blob[]): Blob[] {
  const sorted = [...pages].sort((a, b) => a.pa - b.pa);
  const runs: Blob[] = [];
  let start = -1;
  let parts: Uint8Array[] = [];
  let next = -1;
  const flush = () => {
    if (start < 0) return;
    const len = parts.reduce((s, p) => s + p.length, 0);
    const data = new Uint8Array(len);
    let o = 0;
    for (const p of parts) {
      data.set(p, o);
      o += p.length;
    }
    runs.push({ pa: start, data });
  };
  for (const p of sorted) {
    if (p.pa !== next) {
      flush();
      start = p.pa;
      parts = [];
    }
    parts.push(p.data);
    next = p.pa + p.data.length;
  }
  flush();
  return runs;
}

export class QemuSession {
  readonly dir: string;
  readonly proc: ChildProcess;
  gdb: GdbClient | null = null;
  qmp: QmpClient | null = null;
  private output = "";
  private errors = "";
  private exited: Promise<number | null>;
  private exitCode: number | null | undefined = undefined;
  private regs = new Map<string, number>();
  private bootArea = false;
  readonly timeoutMs: number;

  private constructor(dir: string, proc: ChildProcess, timeoutMs: number) {
    this.dir = dir;
    this.proc = proc;
    this.timeoutMs = timeoutMs;
    proc.stdout?.setEncoding("utf8");
    proc.stderr?.setEncoding("utf8");
    proc.stdout?.on("data", (d: string) => {
      this.output += d;
    });
    proc.stderr?.on("data", (d: string) => {
      this.errors += d;
    });
    this.exited = new Promise((resolve) => {
      proc.on("exit", (code) => {
        this.exitCode = code;
        resolve(code);
      });
      proc.on("error", (e) => {
        this.errors += `\nspawn error: ${e.message}`;
        this.exitCode = null;
        resolve(null);
      });
    });
  }

  /** What QEMU printed on stdout so far (the guest's serial port with -serial stdio). */
  get stdout(): string {
    return this.output;
  }

  /** The guest's serial output so far (with `serialFile`). */
  serial(): string {
    try {
      return readFileSync(join(this.dir, "serial.txt"), "latin1");
    } catch {
      return "";
    }
  }

  /** What QEMU printed on stderr so far (its own warnings and errors). */
  get stderr(): string {
    return this.errors;
  }

  static async start(opts: SessionOptions = {}): Promise<QemuSession> {
    const q = checkQemu();
    if (!q.ok) fail("QEMU_MISSING", q.reason);
    const dir = mkdtempSync(join(tmpdir(), "pagelab-qemu-"));
    const control = opts.control ?? true;
    const args = [
      "-nodefaults",
      "-no-user-config",
      "-machine",
      opts.machine ?? "pc",
      "-accel",
      "tcg",
      "-cpu",
      opts.cpu ?? "max",
      "-m",
      opts.memory ?? "256M",
      "-smp",
      String(opts.smp ?? 1),
      "-display",
      "none",
      "-monitor",
      "none",
      "-no-reboot",
    ];
    if (control) {
      args.push("-S");
      args.push("-gdb", `unix:${join(dir, "gdb.sock")},server=on,wait=off`);
      args.push("-qmp", `unix:${join(dir, "qmp.sock")},server=on,wait=off`);
    }
    const bootArea = control && (opts.bootArea ?? true);
    const blobs = [...(opts.blobs ?? [])];
    if (bootArea) {
      const clash = blobs.find((b) => b.pa < BOOT_AREA_END);
      if (clash !== undefined) {
        fail(
          "QEMU_BOOT_AREA",
          `a blob at ${hex(clash.pa)} overlaps the harness's boot area [0, ${hex(BOOT_AREA_END)}): place page tables above it`,
        );
      }
      blobs.push(bootAreaBlob());
    }
    contiguousRuns(blobs).forEach((b, i) => {
      const f = join(dir, `blob${i}.bin`);
      writeFileSync(f, b.data);
      args.push("-device", `loader,file=${f},addr=${hex(b.pa)},force-raw=on`);
    });
    if (opts.serialFile) args.push("-serial", `file:${join(dir, "serial.txt")}`);
    args.push(...(opts.args ?? []));
    const proc = spawn(q.path, args, { stdio: ["ignore", "pipe", "pipe"] });
    const s = new QemuSession(dir, proc, opts.timeoutMs ?? 20_000);
    s.bootArea = bootArea;
    if (!control) return s;
    try {
      const died = s.exited.then((code) =>
        fail("QEMU_EXITED", `QEMU exited (code ${code}) during start-up: ${s.errors.trim().slice(0, 500)}`),
      );
      const ready = (async () => {
        s.gdb = await GdbClient.connect(join(dir, "gdb.sock"), s.timeoutMs);
        s.qmp = await QmpClient.connect(join(dir, "qmp.sock"), s.timeoutMs);
        await s.loadRegisterNumbers();
      })();
      await Promise.race([ready, died]);
      died.catch(() => undefined);
    } catch (e) {
      await s.close();
      throw e;
    }
    return s;
  }

  /** Learn register numbers by name from QEMU's target description (and unlock p/P packets). */
  private async loadRegisterNumbers(): Promise<void> {
    const gdb = this.gdb!;
    await gdb.command("qSupported:xmlRegisters=i386");
    const main = await this.readXfer("target.xml");
    const files = [...main.matchAll(/xi:include href="([^"]+)"/g)].map((m) => m[1]);
    let n = 0;
    for (const f of files) {
      const xml = (await this.readXfer(f)).replace(/<!--[\s\S]*?-->/g, "");
      for (const m of xml.matchAll(/<reg\s+([^>]*)\/?>/g)) {
        const name = /name="([^"]+)"/.exec(m[1])?.[1];
        const num = /regnum="(\d+)"/.exec(m[1])?.[1];
        if (num !== undefined) n = Number(num);
        if (name !== undefined) this.regs.set(name, n);
        n++;
      }
    }
    for (const r of ["cr0", "cr3", "cr4", "efer"]) {
      if (!this.regs.has(r)) {
        fail("QEMU_GDB", `QEMU's gdb target description has no register "${r}" (files: ${files.join(", ")})`);
      }
    }
  }

  private async readXfer(file: string): Promise<string> {
    let text = "";
    for (let guard = 0; guard < 64; guard++) {
      const r = await this.gdb!.command(`qXfer:features:read:${file}:${text.length.toString(16)},ffb`);
      if (r === "" || (r[0] !== "m" && r[0] !== "l"))
        fail("QEMU_GDB", `gdbstub could not send ${file}: "${r}"`);
      text += r.slice(1);
      if (r[0] === "l") return text;
    }
    fail("QEMU_GDB", `${file} from the gdbstub is too long`);
  }

  /** gdb register number of a named register (cr0, cr3, cr4, efer, rip…). */
  regNum(name: string): number {
    const n = this.regs.get(name);
    if (n === undefined) fail("QEMU_GDB", `no gdb register named ${name}`);
    return n;
  }

  async readReg(name: string): Promise<bigint> {
    return this.gdb!.readRegister(this.regNum(name));
  }

  /**
   * Switch the stopped CPU to long mode with `state`'s tables.
   *
   * QEMU's gdbstub takes only 32-bit values for control registers while CS is not a 64-bit segment, and
   * sign-extends them (CR3 = 0xbffdf000 becomes 0xffffffffbffdf000). So the CPU is first brought into
   * 64-bit mode on tiny boot tables in the harness's boot area (a GDT with a 64-bit code segment at 0x0,
   * identity-mapping tables at 0x1000..0x3fff): CR4 (PAE, LA57), EFER (LME, NXE), CR3, CR0 (PE, PG, WP)
   * in the order software must use, then CS = 0x08 through the debugger. Only then is the real CR3
   * written, as a full 64-bit value, and every register read back and checked.
   */
  async enablePaging(state: PagingState): Promise<void> {
    let cr4 = CR4_PAE;
    if (state.levels === 5) cr4 |= CR4_LA57;
    if (state.smep) cr4 |= CR4_SMEP;
    if (state.smap) cr4 |= CR4_SMAP;
    if (state.pge) cr4 |= CR4_PGE;
    let efer = EFER_LME;
    if (state.nxe ?? true) efer |= EFER_NXE;
    let cr0 = CR0_PE | CR0_ET | CR0_PG;
    if (state.wp ?? true) cr0 |= CR0_WP;
    const g = this.gdb!;
    if (!this.bootArea) {
      fail("QEMU_PAGING", "this session was started without the boot area (SessionOptions.bootArea)");
    }
    await g.writeRegister(this.regNum("cr4"), cr4);
    await g.writeRegister(this.regNum("efer"), efer);
    await g.writeRegister(this.regNum("cr3"), BigInt(state.levels === 5 ? BOOT_PML5 : BOOT_PML4));
    await g.writeRegister(this.regNum("cr0"), cr0);
    await g.writeRegister(this.regNum("cs"), 0x08n);
    const regs = await this.hmp("info registers");
    if (!/CS =0008 .*CS64/.test(regs)) {
      fail("QEMU_PAGING", `QEMU did not enter 64-bit mode on the boot tables:\n${regs.slice(0, 800)}`);
    }
    await g.writeRegister(this.regNum("cr3"), BigInt(state.cr3));
    const got = {
      cr0: await this.readReg("cr0"),
      cr3: await this.readReg("cr3"),
      cr4: await this.readReg("cr4"),
      efer: await this.readReg("efer"),
    };
    const lma = 1n << 10n;
    if (got.cr0 !== cr0 || got.cr3 !== BigInt(state.cr3) || got.cr4 !== cr4 || got.efer !== (efer | lma)) {
      fail(
        "QEMU_PAGING",
        `QEMU did not take the paging registers: wanted CR0=${hex(cr0)} CR3=${hex(state.cr3)} CR4=${hex(cr4)} EFER=${hex(efer | lma)}, has CR0=${hex(got.cr0)} CR3=${hex(got.cr3)} CR4=${hex(got.cr4)} EFER=${hex(got.efer)}`,
      );
    }
  }

  async hmp(command: string, timeoutMs?: number): Promise<string> {
    if (this.qmp === null) fail("QEMU_QMP", "this session has no QMP channel");
    return this.qmp.hmp(command, timeoutMs);
  }

  /** Wait for QEMU to exit by itself (the probe's isa-debug-exit); kill it after `timeoutMs`. */
  async waitExit(timeoutMs: number): Promise<{ code: number | null; timedOut: boolean }> {
    let timer: NodeJS.Timeout | undefined;
    const t = new Promise<"timeout">((r) => {
      timer = setTimeout(() => r("timeout"), timeoutMs);
    });
    const r = await Promise.race([this.exited, t]);
    clearTimeout(timer);
    if (r === "timeout") {
      await this.stop();
      return { code: null, timedOut: true };
    }
    return { code: r, timedOut: false };
  }

  /** End QEMU (politely, then SIGKILL of this one process) and remove the temporary directory. */
  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async stop(): Promise<void> {
    if (this.exitCode === undefined && this.qmp !== null) {
      await Promise.race([
        this.qmp.execute("quit").catch(() => undefined),
        new Promise((r) => setTimeout(r, 2000)),
      ]);
    }
    this.gdb?.close();
    this.qmp?.close();
    if (this.exitCode === undefined && this.qmp === null) this.proc.kill("SIGTERM");
    if (this.exitCode === undefined) {
      const done = await Promise.race([
        this.exited.then(() => true),
        new Promise((r) => setTimeout(() => r(false), 2000)),
      ]);
      if (!done && this.proc.pid !== undefined) {
        this.proc.kill("SIGKILL");
        await Promise.race([this.exited, new Promise((r) => setTimeout(r, 2000))]);
      }
    }
  }
}
