/** pagelab explorer: boot a map, then explore its frames, page tables, boot log and compare runs. */
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { ApiError, api, bytes, type FrameInfo, type Options, OWNER_LABELS, type Summary } from "./api.ts";
import { type BootChoice, BootForm } from "./BootForm.tsx";
import { BootLog } from "./BootLog.tsx";
import { Compare } from "./Compare.tsx";
import { PageTables } from "./PageTables.tsx";
import { Strip } from "./Strip.tsx";
import "./style.css";

function message(e: unknown): string {
  if (e instanceof ApiError) return `[${e.code}] ${e.message}`;
  return e instanceof Error ? e.message : String(e);
}

function Facts(props: { s: Summary }) {
  const { s } = props;
  const facts: [string, string][] = [
    ["RAM", bytes(s.ramBytes)],
    ["free after boot", `${s.freePagesAfterBoot.toLocaleString("en")} frames`],
    ["page tables", `${s.pageTablePages} pages`],
    ["PMM metadata", bytes(s.metadataBytes)],
    ["kernel at", s.kernelPhys],
    ["CR3", s.cr3],
    [
      "memory refs",
      `${s.counters.memReads?.toLocaleString("en")} R + ${s.counters.memWrites?.toLocaleString("en")} W`,
    ],
    ["boot", `${s.serverMs.boot} ms`],
  ];
  return (
    <dl class="facts" data-testid="summary">
      {facts.map(([k, v]) => (
        <div key={k}>
          <dt>{k}</dt>
          <dd class="mono">{v}</dd>
        </div>
      ))}
    </dl>
  );
}

function App() {
  const [options, setOptions] = useState<Options | null>(null);
  const [summary, setSummary] = useState<Summary | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [step, setStep] = useState(1);
  const [va, setVa] = useState("");
  const [picked, setPicked] = useState<FrameInfo | null>(null);

  useEffect(() => {
    api
      .options()
      .then(setOptions)
      .catch((e) => setError(message(e)));
  }, []);

  const onError = (e: unknown) => setError(message(e));

  const boot = (c: BootChoice) => {
    setBusy(true);
    setError(null);
    api
      .boot(c)
      .then((s) => {
        setSummary(s);
        setStep(s.bootSteps.length);
        setPicked(null);
        setVa("");
      })
      .catch(onError)
      .finally(() => setBusy(false));
  };

  const pickFrame = (f: FrameInfo) => {
    setPicked(f);
    if (f.mappedAt.length > 0) setVa(f.mappedAt[0]);
  };

  return (
    <>
      <header class="top">
        <h1>pagelab explorer</h1>
        <p class="muted">
          Boot a simulated x86-64 kernel from a firmware map; see who owns every frame, walk its page tables,
          replay its boot.
        </p>
      </header>
      <main>
        <section class="panel" aria-labelledby="boot-h">
          <h2 id="boot-h">Boot</h2>
          {options ? <BootForm options={options} busy={busy} onBoot={boot} /> : <p>Loading options…</p>}
          <div role="status" aria-live="polite" data-testid="status" class="status">
            {busy
              ? "Booting…"
              : summary
                ? `Booted ${summary.map}: ${summary.pmm} PMM, ${summary.kmap} kernel mapping, ${summary.levels}-level paging`
                : "Not booted yet"}
          </div>
          {error && (
            <div role="alert" class="error" data-testid="error">
              {error}{" "}
              <button
                type="button"
                class="link"
                onClick={() => setError(null)}
                aria-label="Dismiss the error"
              >
                dismiss
              </button>
            </div>
          )}
          {summary && <Facts s={summary} />}
        </section>
        {summary && (
          <>
            <Strip summary={summary} step={step} onError={onError} onPickFrame={pickFrame} />
            {picked && (
              <section class="panel picked" aria-label="Chosen frame" data-testid="picked-frame">
                <b>
                  Frame <span class="mono">{picked.pa}</span>
                </b>
                : {OWNER_LABELS[picked.owner]} — {picked.note}.{" "}
                {picked.mappedAt.length > 0 ? (
                  <>
                    Mapped at{" "}
                    {picked.mappedAt.map((v) => (
                      <button key={v} type="button" class="link mono" onClick={() => setVa(v)}>
                        {v}
                      </button>
                    ))}
                  </>
                ) : (
                  <span class="muted">not mapped by the direct map or the kernel image</span>
                )}
              </section>
            )}
            <BootLog summary={summary} step={step} onStep={setStep} />
            <PageTables summary={summary} va={va} onVa={setVa} onError={onError} />
          </>
        )}
        <Compare onError={onError} />
      </main>
    </>
  );
}

render(<App />, document.getElementById("app")!);
