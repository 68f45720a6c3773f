/** Small HTTP clients for the server tests: node:http requests and raw-socket requests. */
import { request } from "node:http";
import { connect } from "node:net";

export interface Answer {
  status: number;
  body: string;
}

/** One request over a raw socket (the exact bytes of the request line): resolves with the answer. */
export function raw(port: number, text: string | Buffer): Promise<Answer> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    s.on("data", (c) => chunks.push(c));
    // The server may close while a large request is still being written (after its answer).
    s.on("error", () => {});
    s.on("close", () => {
      // Skip interim answers (100 Continue).
      const all = Buffer.concat(chunks)
        .toString("latin1")
        .replace(/^(?:HTTP\/1\.1 1\d\d [^\r]*\r\n\r\n)+/, "");
      const m = /^HTTP\/1\.1 (\d{3})/.exec(all);
      resolve({ status: m ? Number(m[1]) : 0, body: all.slice(all.indexOf("\r\n\r\n") + 4) });
    });
    // No half-close: like curl and browsers, wait for the server to close (Connection: close).
    s.write(text);
  });
}

export function call(
  port: number,
  path: string,
  opts: { method?: string; body?: string | Buffer; headers?: Record<string, string> } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: opts.method ?? "GET",
        headers: { host: `127.0.0.1:${port}`, ...opts.headers },
      },
      (res) => {
        let body = "";
        res.on("data", (c) => (body += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("error", reject);
    req.end(opts.body);
  });
}
