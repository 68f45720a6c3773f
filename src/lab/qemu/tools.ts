/**
 * Which external tools the QEMU conformance harness can use on this machine, and why not when it
 * cannot. Nothing here installs anything: CI installs qemu-system-x86 (see .ci/run); the tests skip
 * with the reason given here when a tool is missing.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";

/** Absolute path of an executable found on PATH, or null. */
export function which(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir === "") continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

export interface ToolCheck {
  ok: boolean;
  /** Why the tool cannot be used (empty when ok). */
  reason: string;
}

export interface QemuCheck extends ToolCheck {
  path: string;
  version: string;
}

let qemuCache: QemuCheck | null = null;

/** Is `qemu-system-x86_64` installed and runnable (TCG is enough)? */
export function checkQemu(): QemuCheck {
  if (qemuCache !== null) return qemuCache;
  const path = which("qemu-system-x86_64");
  if (path === null) {
    qemuCache = {
      ok: false,
      reason: "qemu-system-x86_64 is not installed (apt-get install -y qemu-system-x86)",
      path: "",
      version: "",
    };
    return qemuCache;
  }
  const r = spawnSync(path, ["--version"], { encoding: "utf8", timeout: 10_000 });
  const version = /version\s+(\S+)/.exec(r.stdout ?? "")?.[1] ?? "";
  qemuCache =
    r.status === 0 && version !== ""
      ? { ok: true, reason: "", path, version }
      : {
          ok: false,
          reason: `${path} --version failed (${r.error?.message ?? `status ${r.status}`})`,
          path,
          version,
        };
  return qemuCache;
}

let ccCache: ToolCheck | null = null;

/** Can the probe kernel be built here (cc, ld, objcopy for x86-64)? */
export function checkToolchain(): ToolCheck {
  if (ccCache !== null) return ccCache;
  const missing = ["cc", "ld", "objcopy"].filter((t) => which(t) === null);
  if (missing.length > 0) {
    ccCache = { ok: false, reason: `${missing.join(", ")} not installed (apt-get install -y gcc binutils)` };
    return ccCache;
  }
  const r = spawnSync("cc", ["-dumpmachine"], { encoding: "utf8", timeout: 10_000 });
  const target = (r.stdout ?? "").trim();
  ccCache = target.startsWith("x86_64")
    ? { ok: true, reason: "" }
    : {
        ok: false,
        reason: `cc targets "${target || "unknown"}", not x86_64: the probe kernel needs an x86-64 toolchain`,
      };
  return ccCache;
}
