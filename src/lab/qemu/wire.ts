/**
 * The two control channels of a QEMU under test, each over a Unix socket in the run's temporary
 * directory (never a network port):
 *
 *  - `GdbClient`: the GDB remote serial protocol of QEMU's gdbstub (`-gdb unix:…`): `$data#cs`
 *    packets acknowledged with `+`. Used for what only a debugger can do to a stopped CPU: write
 *    control registers (`P` packets) and read them back (`p`).
 *  - `QmpClient`: the QEMU Machine Protocol (`-qmp unix:…`), newline-delimited JSON. Used to run
 *    human-monitor commands (`info tlb`, `gva2gpa`, `info mem`) through `human-monitor-command`, which
 *    returns their text without the terminal echo of a raw monitor.
 *
 * Every wait is bounded by a timeout and fails with a PagelabError naming what was awaited.
 */
import { connect, type Socket } from "node:net";
import { fail } from "../../errors.ts";

function connectUnix(path: string, timeoutMs: number, what: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(path);
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`${what}: no connection to ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.once("connect", () => {
      clearTimeout(t);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Retry connecting until the socket file accepts (QEMU creates it at start-up). */
export async function connectRetry(path: string, timeoutMs: number, what: string): Promise<Socket> {
  const end = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < end) {
    try {
      return await connectUnix(path, Math.max(100, end - Date.now()), what);
    } catch (e) {
      last = (e as Error).message;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  fail("QEMU_TIMEOUT", `${what}: could not connect to ${path} within ${timeoutMs} ms (${last})`);
}

function checksum(s: string): string {
  let c = 0;
  for (let i = 0; i < s.length; i++) c = (c + s.charCodeAt(i)) & 0xff;
  return c.toString(16).padStart(2, "0");
}

/** Little-endian hex of a 64-bit value, as the gdb protocol carries registers. */
export function leHex64(v: bigint): string {
  let s = "";
  for (let i = 0n; i < 8n; i++) s += ((v >> (8n * i)) & 0xffn).toString(16).padStart(2, "0");
  return s;
}

export function parseLeHex(hex: string): bigint {
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2)
    v = (v << 8n) | BigInt(Number.parseInt(hex.slice(i, i + 2), 16));
  return v;
}

export class GdbClient {
  private buf = "";
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(
    private readonly sock: Socket,
    private readonly timeoutMs: number,
  ) {
    sock.setEncoding("latin1");
    sock.on("data", (d: string) => {
      this.buf += d;
      this.waiter?.();
    });
    sock.on("close", () => {
      this.closed = true;
      this.waiter?.();
    });
    sock.on("error", () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static async connect(path: string, timeoutMs = 10_000): Promise<GdbClient> {
    return new GdbClient(await connectRetry(path, timeoutMs, "gdbstub"), timeoutMs);
  }

  /** Send one packet and return the payload of the reply. */
  async command(data: string): Promise<string> {
    this.sock.write(`$${data}#${checksum(data)}`);
    const end = Date.now() + this.timeoutMs;
    for (;;) {
      // Drop acknowledgements; a reply is $payload#xx.
      this.buf = this.buf.replace(/^[+-]+/, "");
      const m = /^\$([^#]*)#([0-9a-fA-F]{2})/.exec(this.buf);
      if (m !== null) {
        this.buf = this.buf.slice(m[0].length);
        this.sock.write("+");
        return m[1];
      }
      if (this.closed)
        fail("QEMU_GDB", `gdbstub closed the connection while answering "${data.slice(0, 40)}"`);
      const left = end - Date.now();
      if (left <= 0)
        fail("QEMU_TIMEOUT", `gdbstub did not answer "${data.slice(0, 40)}" within ${this.timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = null;
          resolve();
        };
      });
    }
  }

  /** Write a register by its gdb number (P packet); throws unless QEMU answers OK. */
  async writeRegister(n: number, value: bigint): Promise<void> {
    const r = await this.command(`P${n.toString(16)}=${leHex64(value)}`);
    if (r !== "OK") fail("QEMU_GDB", `gdbstub refused to write register ${n}: "${r}"`);
  }

  /** Read a register of `bytes` bytes by its gdb number (p packet). */
  async readRegister(n: number, bytes = 8): Promise<bigint> {
    const r = await this.command(`p${n.toString(16)}`);
    if (!/^[0-9a-fA-F]+$/.test(r) || r.length < 2 * bytes) {
      fail("QEMU_GDB", `gdbstub could not read register ${n}: "${r}"`);
    }
    // QEMU 7.2 sometimes appends stale bytes after the register's own: keep its size.
    return parseLeHex(r.slice(0, 2 * bytes));
  }

  /** Read guest memory through the debugger (virtual addresses; physical while paging is off). */
  async readMemory(addr: bigint, len: number): Promise<Uint8Array> {
    const out = new Uint8Array(len);
    for (let done = 0; done < len; ) {
      const n = Math.min(1024, len - done);
      const r = await this.command(`m${(addr + BigInt(done)).toString(16)},${n.toString(16)}`);
      if (!/^[0-9a-fA-F]*$/.test(r) || r.length !== n * 2) {
        fail(
          "QEMU_GDB",
          `gdbstub could not read ${n} bytes at 0x${(addr + BigInt(done)).toString(16)}: "${r}"`,
        );
      }
      for (let i = 0; i < n; i++) out[done + i] = Number.parseInt(r.slice(2 * i, 2 * i + 2), 16);
      done += n;
    }
    return out;
  }

  close(): void {
    this.sock.destroy();
  }
}

export class QmpClient {
  private buf = "";
  private readonly messages: Record<string, unknown>[] = [];
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(
    private readonly sock: Socket,
    private readonly timeoutMs: number,
  ) {
    sock.setEncoding("utf8");
    sock.on("data", (d: string) => {
      this.buf += d;
      let i = this.buf.indexOf("\n");
      while (i >= 0) {
        const line = this.buf.slice(0, i).trim();
        this.buf = this.buf.slice(i + 1);
        if (line !== "") {
          try {
            const msg = JSON.parse(line) as Record<string, unknown>;
            if (!("event" in msg)) this.messages.push(msg);
          } catch {
            this.messages.push({ error: { desc: `unparsable QMP line: ${line.slice(0, 80)}` } });
          }
        }
        i = this.buf.indexOf("\n");
      }
      this.waiter?.();
    });
    sock.on("close", () => {
      this.closed = true;
      this.waiter?.();
    });
    sock.on("error", () => {
      this.closed = true;
      this.waiter?.();
    });
  }

  static async connect(path: string, timeoutMs = 10_000): Promise<QmpClient> {
    const c = new QmpClient(await connectRetry(path, timeoutMs, "QMP"), timeoutMs);
    const greeting = await c.next("the QMP greeting");
    if (!("QMP" in greeting))
      fail("QEMU_QMP", `unexpected QMP greeting: ${JSON.stringify(greeting).slice(0, 120)}`);
    await c.execute("qmp_capabilities");
    return c;
  }

  private async next(what: string, timeoutMs = this.timeoutMs): Promise<Record<string, unknown>> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const m = this.messages.shift();
      if (m !== undefined) return m;
      if (this.closed) fail("QEMU_QMP", `QMP connection closed while waiting for ${what}`);
      const left = end - Date.now();
      if (left <= 0) fail("QEMU_TIMEOUT", `QMP: no answer to ${what} within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = null;
          resolve();
        };
      });
    }
  }

  async execute(
    command: string,
    args?: Record<string, unknown>,
    timeoutMs = this.timeoutMs,
  ): Promise<unknown> {
    this.sock.write(
      `${JSON.stringify(args === undefined ? { execute: command } : { execute: command, arguments: args })}\n`,
    );
    const r = await this.next(`"${command}"`, timeoutMs);
    if ("error" in r) {
      const e = r.error as { desc?: string };
      fail("QEMU_QMP", `QMP ${command} failed: ${e.desc ?? JSON.stringify(r.error)}`);
    }
    return r.return;
  }

  /** Run a human-monitor (HMP) command such as `info tlb` and return its text. */
  async hmp(commandLine: string, timeoutMs = this.timeoutMs): Promise<string> {
    const r = await this.execute("human-monitor-command", { "command-line": commandLine }, timeoutMs);
    return typeof r === "string" ? r : "";
  }

  close(): void {
    this.sock.destroy();
  }
}
