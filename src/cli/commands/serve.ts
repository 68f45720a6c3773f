/** `pagelab serve`: the web explorer on a loopback port (building the page first when needed). */
import { SUMMARY } from "./index.ts";
import { type Command, Option } from "@commander-js/extra-typings";
import { fail } from "../../errors.ts";
import { ensureWebBuilt } from "../../serve/build.ts";
import { DEFAULT_BOOT_TIMEOUT_MS, DEFAULT_HOST_BUDGET } from "../../serve/host.ts";
import { startServer } from "../../serve/server.ts";
import { parseIntOption } from "../output.ts";
import { parseBytes } from "./boot.ts";

/** A duration: 90, 90s, 2m, 1500ms (a bare number is seconds). */
export function parseDuration(s: string, what: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(s.trim());
  const ms = m ? Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "m" ? 60_000 : 1000) : Number.NaN;
  if (!(ms >= 1 && ms <= 24 * 3_600_000))
    fail("BAD_OPTION", `${what} must be a duration such as 60s, 2m or 500ms, from 1 ms to 24 h (got "${s}")`);
  return Math.round(ms);
}

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(SUMMARY.serve)
    .addOption(
      new Option("--port <n>", "TCP port (0 picks a free one)")
        .default(8080)
        .argParser(parseIntOption("--port", 0, 65535)),
    )
    .option(
      "--boot-timeout <duration>",
      `stop a boot still running after this long (60s, 2m, 500ms; default ${DEFAULT_BOOT_TIMEOUT_MS / 1000}s)`,
    )
    .option(
      "--host-budget <bytes>",
      `host memory one boot may use: refused up front past it by estimate, stopped when the server grows past it (default ${DEFAULT_HOST_BUDGET / 2 ** 30}G)`,
    )
    .addOption(
      new Option("--max-boots <n>", "boots running at once, all clients together (one per client)")
        .default(2)
        .argParser(parseIntOption("--max-boots", 1, 64)),
    )
    .option("--rebuild", "build the page even when web/dist is up to date")
    .option("--quiet", "do not log requests")
    .action(async (o) => {
      const bootTimeoutMs =
        o.bootTimeout === undefined ? undefined : parseDuration(o.bootTimeout, "--boot-timeout");
      const hostBudget = o.hostBudget === undefined ? undefined : parseBytes(o.hostBudget, "--host-budget");
      const b = await ensureWebBuilt(o.rebuild === true);
      if (b.built) console.log(`pagelab serve: built the page (${b.why}) in ${Math.round(b.ms)} ms`);
      const started = startServer({
        port: o.port,
        bootTimeoutMs,
        hostBudget,
        maxBoots: o.maxBoots,
        onRequest: o.quiet
          ? undefined
          : (method, path, status, ms) => {
              if (path.startsWith("/api/"))
                console.log(`${method} ${path.slice(0, 100)} ${status} ${ms.toFixed(0)} ms`);
            },
      }).catch((e: NodeJS.ErrnoException) => {
        if (e.code === "EADDRINUSE")
          fail(
            "PORT_IN_USE",
            `port ${o.port} on 127.0.0.1 is in use: choose another with --port (0 picks a free one)`,
          );
        throw e;
      });
      const { url } = await started;
      console.log(`pagelab serve: listening on ${url} (loopback only; Ctrl-C stops)`);
    });
}
