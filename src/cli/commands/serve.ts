/** `pagelab serve`: the web explorer on a loopback port (building the page first when needed). */
import { type Command, Option } from "@commander-js/extra-typings";
import { fail } from "../../errors.ts";
import { ensureWebBuilt } from "../../lab/serve/build.ts";
import { startServer } from "../../lab/serve/server.ts";
import { parseIntOption } from "../output.ts";

export function registerServe(program: Command): void {
  program
    .command("serve")
    .description(
      "start the web explorer on 127.0.0.1: boot a map, browse its frames, page tables, boot log and compare runs",
    )
    .addOption(
      new Option("--port <n>", "TCP port (0 picks a free one)")
        .default(8080)
        .argParser(parseIntOption("--port", 0, 65535)),
    )
    .option("--rebuild", "build the page even when web/dist is up to date")
    .option("--quiet", "do not log requests")
    .action(async (o) => {
      const b = await ensureWebBuilt(o.rebuild === true);
      if (b.built) console.log(`pagelab serve: built the page (${b.why}) in ${Math.round(b.ms)} ms`);
      const started = startServer({
        port: o.port,
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
