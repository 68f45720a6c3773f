/**
 * Every error the command line can meet, as one line and an exit status: a PagelabError (bad input)
 * and a file-system error on a path the user named (ENOENT, EACCES, EISDIR, ENOTDIR, ...) exit 2; any
 * other error is a bug in pagelab: one line, status 70 (EX_SOFTWARE), the stack with PAGELAB_DEBUG=1.
 */
import { PagelabError } from "../errors.ts";

const FS_WHY: Record<string, string> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "a component of the path is not a directory",
  EEXIST: "already exists",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  EDQUOT: "disk quota exceeded",
  ENAMETOOLONG: "name too long",
  ELOOP: "too many symbolic links",
  EMFILE: "too many open files",
  EBUSY: "resource busy",
  EINVAL: "invalid argument",
  ENOTEMPTY: "directory not empty",
  EXDEV: "cross-device link",
  ETXTBSY: "text file busy",
  EFBIG: "file too large",
  EIO: "input/output error",
};

const VERB: Record<string, string> = {
  open: "cannot open",
  read: "cannot read",
  write: "cannot write",
  mkdir: "cannot create directory",
  rename: "cannot rename",
  unlink: "cannot remove",
  rm: "cannot remove",
  rmdir: "cannot remove",
  scandir: "cannot list",
  stat: "cannot stat",
  lstat: "cannot stat",
  copyfile: "cannot copy to",
};

export function isFsError(e: unknown): e is NodeJS.ErrnoException & { path: string } {
  if (typeof e !== "object" || e === null) return false;
  const x = e as NodeJS.ErrnoException;
  return typeof x.code === "string" && /^E[A-Z0-9]+$/.test(x.code) && typeof x.path === "string";
}

export function errorLine(e: unknown): { line: string; status: number } {
  if (e instanceof PagelabError) return { line: `pagelab: error [${e.code}]: ${e.message}`, status: 2 };
  if (isFsError(e)) {
    const code = e.code!;
    const verb = VERB[e.syscall ?? ""] ?? "cannot use";
    const d = (e as { dest?: unknown }).dest;
    const dest = typeof d === "string" ? ` -> '${d}'` : "";
    return {
      line: `pagelab: error [${code}]: ${verb} '${e.path}'${dest}: ${FS_WHY[code] ?? code}`,
      status: 2,
    };
  }
  const msg = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  return {
    line: `pagelab: internal error (a bug; PAGELAB_DEBUG=1 shows the stack): ${msg.split("\n")[0]}`,
    status: 70,
  };
}
