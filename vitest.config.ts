import { defaultServerConditions } from "vite";
import { defineConfig } from "vitest/config";

// `import … from "pagelab"` in tests and fixtures means the sources, as tsc reads them (tsconfig's
// customConditions): vite resolves the package's pagelab-source condition, and so does Node in the test
// processes (and their worker threads) for designs loaded through tsx. The built dist/ is tested as
// users get it, from a packed tarball (test/package).
export default defineConfig({
  ssr: { resolve: { conditions: [...defaultServerConditions, "pagelab-source"] } },
  test: {
    include: ["test/**/*.test.ts", "src/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    execArgv: ["--conditions=pagelab-source"],
  },
});
