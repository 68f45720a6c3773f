// Entry of the validation worker of WebAssembly allocators: register tsx's loader (Node 20 does not
// pass it on to workers), then load the TypeScript worker.
import { register } from "tsx/esm/api";

register();
await import("./validate-worker.ts");
