/** `npm run golden`: regenerate test/golden/counters.json (commit it with the reason for every change). */
import { writeFileSync } from "node:fs";
import { makeGolden } from "./golden.ts";

const golden = await makeGolden(2);
const path = new URL("./counters.json", import.meta.url);
writeFileSync(path, `${JSON.stringify(golden, null, 1)}\n`);
process.stdout.write(`wrote ${Object.keys(golden).length} entries to test/golden/counters.json\n`);
