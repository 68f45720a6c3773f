// Entry of a PMM benchmark worker thread: tsx's loader does not reach ESM workers on Node 20, so
// register it here, then load the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./pmm-worker.ts");
