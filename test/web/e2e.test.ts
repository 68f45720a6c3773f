/**
 * End to end: `pagelab serve` on a free port, driven by Debian's Chromium through playwright-core (a
 * fresh profile, headless, no sandbox, no background networking). Boots qemu:4G with buddy/direct and
 * checks what the page shows: the strip's owners and hover, a walk from CR3, a click into a page-table
 * entry, the boot log replay, compare charts and an error; then takes a screenshot
 * ($PAGELAB_E2E_SHOTS or the system temp dir, pagelab-e2e/explorer.png).
 *
 * Skipped, saying why, when Chromium ($PAGELAB_CHROMIUM, default /usr/bin/chromium) is missing or
 * cannot start; under CI=true that fails instead (`.ci/run` installs Chromium).
 */
// biome-ignore-all lint/performance/useDomNodeTextContent: these are Playwright locators, not DOM nodes
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { describeWithTool, toolFailed } from "../tools.ts";

const CHROMIUM = process.env.PAGELAB_CHROMIUM || "/usr/bin/chromium";
const BIN = fileURLToPath(new URL("../../bin/pagelab.mjs", import.meta.url));
const noChromium = existsSync(CHROMIUM)
  ? ""
  : `${CHROMIUM} is missing (install it with apt-get install -y chromium, or set PAGELAB_CHROMIUM)`;

function startServe(): Promise<{ child: ChildProcess; url: string; log: string[] }> {
  const child = spawn(process.execPath, [BIN, "serve", "--port", "0", "--quiet"], {
    env: { ...process.env, NO_COLOR: "1" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`pagelab serve did not start:\n${log.join("")}`)),
      50_000,
    );
    const onData = (d: Buffer) => {
      log.push(d.toString());
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+\/)/.exec(log.join(""));
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], log });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`pagelab serve exited (${code}):\n${log.join("")}`));
    });
  });
}

const resultsRows = [
  ["buddy", "direct", 1200],
  ["buddy", "recursive", 2600],
  ["bitmap", "direct", 1900],
  ["bitmap", "quickmap", 3100],
].map(([pmm, kmap, memReads], i) => ({
  index: i,
  kind: "workload",
  map: "qemu:4G",
  levels: 4,
  pmm,
  kmap,
  workload: "fork-exit",
  cpus: 1,
  error: null,
  counters: { memReads, tlbMisses: i * 10 },
  perOp: { memRefs: (memReads as number) / 100 },
}));

describeWithTool(noChromium, "the explorer in Chromium", () => {
  let serve: { child: ChildProcess; url: string; log: string[] };
  let profile: string;
  let shots: string;
  let ctx: BrowserContext;
  let page: Page;
  let launchError: string | null = null;
  const errors: string[] = [];
  const figures: Record<string, number> = {};

  beforeAll(async () => {
    const t0 = performance.now();
    serve = await startServe();
    figures.serveStartMs = performance.now() - t0;
    profile = mkdtempSync(join(tmpdir(), "pagelab-chromium-"));
    shots = process.env.PAGELAB_E2E_SHOTS ?? join(tmpdir(), "pagelab-e2e");
    mkdirSync(shots, { recursive: true });
    try {
      ctx = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        viewport: { width: 1280, height: 900 },
        args: [
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-quic",
          "--no-first-run",
          "--disable-background-networking",
          "--disable-component-update",
          "--disable-sync",
        ],
      });
    } catch (e) {
      // A Chromium that is installed but cannot start (a half-finished install) skips, like a missing
      // one, or fails under CI (each test says so).
      launchError = `Chromium (${CHROMIUM}) did not start: ${(e as Error).message.split("\n")[0]}`;
      return;
    }
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(15_000);
    page.on("pageerror", (e) => errors.push(e.message));
    // No request may leave the machine: the page is self-contained.
    page.on("request", (r) => {
      if (!r.url().startsWith(serve.url) && !r.url().startsWith("data:"))
        errors.push(`external request ${r.url()}`);
    });
  });

  afterAll(async () => {
    await ctx?.close();
    serve?.child.kill();
    if (profile) rmSync(profile, { recursive: true, force: true });
    console.log(
      `test/web/e2e.test.ts figures: ${JSON.stringify(figures, (_, v) => (typeof v === "number" ? Math.round(v) : v))}`,
    );
  });

  it("loads the page and boots qemu:4G with buddy/direct", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    let t = performance.now();
    await page.goto(serve.url);
    await page.getByTestId("boot-button").waitFor();
    figures.pageLoadMs = performance.now() - t;
    await page.getByTestId("map-preset").selectOption("qemu:4G");
    await page.getByTestId("pmm-select").selectOption("buddy");
    await page.getByTestId("kmap-select").selectOption("direct");
    t = performance.now();
    await page.getByTestId("boot-button").click();
    await expect
      .poll(() => page.getByTestId("status").innerText(), { timeout: 30_000 })
      .toMatch(/Booted qemu:4G: buddy PMM, direct/);
    figures.bootMs = performance.now() - t;
    await expect.poll(() => page.getByTestId("summary").innerText()).toMatch(/4\.00 GiB/);
  });

  it("shows kernel image, page table and free frames on the strip, with the sanitizer's decisions on hover", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    const strip = page.getByTestId("strip");
    await strip.locator('rect[data-owner="page-table"]').first().waitFor({ state: "attached" });
    for (const o of ["kernel-image", "page-table", "free", "pmm-metadata", "reserved"]) {
      expect(await strip.locator(`rect[data-owner="${o}"]`).count(), o).toBeGreaterThan(0);
      expect(Number(await page.getByTestId(`legend-${o}`).getAttribute("data-frames")), o).toBeGreaterThan(0);
    }
    // Frame 0, at the strip's left edge: Linux's trim_bios_range() made its page reserved.
    await strip.hover({ position: { x: 0, y: 20 } });
    const tip = page.getByTestId("strip-tooltip");
    await expect.poll(() => tip.innerText()).toMatch(/trim_bios_range/);
    expect(await tip.innerText()).toMatch(
      /frame 0x0 · PA 0x0\n\s*reserved: memblock \(step 3\): reserved: first 1 MiB/,
    );
    // The wheel zooms around the pointer; the buttons zoom around the middle.
    const range = () => page.getByTestId("strip-range").innerText();
    expect(await range()).toMatch(/^0x0 – 0x140000000 \(5 GiB/);
    for (let i = 0; i < 4; i++) await page.mouse.wheel(0, -200);
    await expect.poll(range).toMatch(/^0x0 – 0x[0-9a-f]+ \((1\.\d+|[2-9]\d*(\.\d+)?) GiB/);
    // "Go to" frames the PMM's metadata, placed by memblock at the top of the direct map's reach.
    await page.mouse.move(0, 0);
    await page.getByTestId("strip-goto").selectOption({ label: "buddy PMM metadata 0x13effb000" });
    await expect.poll(() => range()).toMatch(/^0x13dffb000 – 0x140ffb000 \(48 MiB/);
    await expect
      .poll(async () => Number(await page.getByTestId("legend-pmm-metadata").getAttribute("data-frames")))
      .toBe(4096);
    await page.getByTestId("strip-ram").click();
  });

  it("walks 0xffff888000001000 from CR3 (PML4E [273]) and a 1 GiB page of the direct map", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    await page.getByTestId("va-input").fill("0xffff888000001000");
    await page.getByTestId("walk-button").click();
    await expect.poll(() => page.getByTestId("walk-step-PML4E").innerText()).toMatch(/PML4E \[273\]/);
    // The first GiB holds the legacy hole below 1 MiB, so the direct map uses 4 KiB pages there.
    expect(await page.getByTestId("walk-result").innerText()).toMatch(/4 KiB page at PA 0x1000/);
    await page.getByTestId("va-input").fill("0xffff888040000000");
    await page.getByTestId("walk-button").click();
    await expect
      .poll(() => page.getByTestId("walk-result").innerText())
      .toMatch(/1 GiB page at PA 0x40000000/);
    expect(await page.getByTestId("walk-step-PDPTE").innerText()).toMatch(/PDPTE \[1\]/);
    expect(await page.getByTestId("walk-step-PDPTE").locator('[data-bit="PS"]').getAttribute("data-on")).toBe(
      "1",
    );
  });

  it("opens the table an entry points to, its bits decoded and large pages marked", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    await page.getByTestId("pt-breadcrumb").getByRole("button").first().click();
    await expect.poll(() => page.getByTestId("pt-table-name").innerText()).toMatch(/PML4 at/);
    await page.getByTestId("pt-entry-273").click();
    await expect.poll(() => page.getByTestId("pt-table-name").innerText()).toMatch(/PDPT at 0x/);
    const big = page.getByTestId("pt-entry-1");
    expect(await big.innerText()).toMatch(/0xffff888040000000/);
    expect(await big.getByTestId("leaf-size").innerText()).toBe("1 GiB page");
    const on = async (bit: string) => big.locator(`[data-bit="${bit}"]`).getAttribute("data-on");
    expect([await on("P"), await on("RW"), await on("PS"), await on("NX"), await on("US")]).toEqual([
      "1",
      "1",
      "1",
      "1",
      "0",
    ]);
    await page.getByTestId("pt-entry-0").click();
    await expect.poll(() => page.getByTestId("pt-table-name").innerText()).toMatch(/PD at 0x/);
  });

  it("replays the boot log: the strip follows the chosen step", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    const frames = async (o: string) =>
      Number(await page.getByTestId(`legend-${o}`).getAttribute("data-frames"));
    await page.getByTestId("strip-ram").click();
    for (let i = 0; i < 6; i++) await page.getByTestId("bootlog-prev").click();
    await expect.poll(() => page.getByTestId("bootlog-title").innerText()).toBe("[1/7] Firmware map");
    await expect.poll(() => frames("kernel-image")).toBe(0);
    expect(await frames("page-table")).toBe(0);
    expect(await page.getByTestId("bootlog-lines").innerText()).toMatch(/trim_bios_range/);
    await page.getByTestId("bootlog-next").click();
    await expect.poll(() => frames("kernel-image")).toBeGreaterThan(0);
    expect(await frames("pmm-metadata")).toBe(0);
    await page.getByTestId("bootlog-slider").fill("4");
    await expect.poll(() => page.getByTestId("bootlog-title").innerText()).toMatch(/\[4\/7\] PMM metadata/);
    await expect.poll(() => frames("pmm-metadata")).toBe(4096);
    expect(await page.getByTestId("bootlog-allocs").innerText()).toMatch(/direct-map page table/);
    await page.getByTestId("bootlog-slider").fill("7");
    await expect.poll(() => page.getByTestId("bootlog-title").innerText()).toMatch(/\[7\/7\] Summary/);
  });

  it("picks a frame from the strip (keyboard: Enter takes the middle one) and walks an address mapping it", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    await page.getByRole("slider", { name: /coloured by owner/ }).focus();
    await page.keyboard.press("Enter");
    await expect
      .poll(() => page.getByTestId("picked-frame").innerText())
      .toMatch(/Frame 0xa0000000: free .* Mapped at 0xffff8880a0000000/s);
    await expect
      .poll(() => page.getByTestId("walk-result").innerText())
      .toMatch(/2 MiB page at PA 0xa0000000/);
  });

  it("charts a compare run's results.json and shows errors clearly", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    const file = join(profile, "results.json");
    writeFileSync(file, `${JSON.stringify(resultsRows)}\n`);
    await page.getByTestId("compare-file").setInputFiles(file);
    await expect.poll(() => page.getByTestId("compare-bar").count()).toBe(4);
    await page.getByTestId("compare-metric").selectOption("perOp.memRefs");
    expect(await page.getByTestId("compare-chart").innerHTML()).toMatch(/bitmap \/ quickmap/);

    await page.getByTestId("source-paste").check();
    await page.getByTestId("map-text").fill("this is not a memory map");
    await page.getByTestId("boot-button").click();
    await expect.poll(() => page.getByTestId("error").innerText()).toMatch(/UNKNOWN_FORMAT/);
  });

  it("takes a screenshot of the booted explorer", async (tc) => {
    if (launchError) return toolFailed(tc, launchError);
    await page.getByTestId("source-preset").check();
    await page.getByRole("button", { name: "Dismiss the error" }).click();
    await page.getByTestId("va-input").fill("0xffff888040000000");
    await page.getByTestId("walk-button").click();
    await page.getByTestId("walk-step-PDPTE").getByRole("button").click();
    await expect.poll(() => page.getByTestId("pt-table-name").innerText()).toMatch(/PDPT at/);
    // Zoom with the wheel at the left edge down to the first ~32 MiB, then hover the kernel image.
    const strip = page.getByTestId("strip");
    await strip.hover({ position: { x: 0, y: 30 } });
    for (let i = 0; i < 15; i++) await page.mouse.wheel(0, -100);
    await expect.poll(() => page.getByTestId("strip-range").innerText()).toMatch(/MiB/);
    const image = strip.locator('rect[data-owner="kernel-image"]').first();
    await image.hover({ force: true });
    await expect
      .poll(() => page.getByTestId("strip-tooltip").innerText())
      .toMatch(/kernel image: .*0x1000000/);
    const path = join(shots, "explorer.png");
    await page.screenshot({ path, fullPage: true });
    console.log(`test/web/e2e.test.ts screenshot: ${path}`);
    expect(existsSync(path)).toBe(true);
    expect(errors).toEqual([]);
  });
});
