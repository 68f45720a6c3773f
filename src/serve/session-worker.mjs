// Entry of a boot-session worker thread of `pagelab serve`: tsx's loader does not reach ESM workers on
// Node 20, so register it here, then load the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./session-worker.ts");
