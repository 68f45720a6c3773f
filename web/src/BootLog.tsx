/** The boot, step by step: a slider over the steps; the memory strip follows the chosen step. */
import { bytes, type Summary } from "./api.ts";

export function BootLog(props: { summary: Summary; step: number; onStep: (n: number) => void }) {
  const { summary, step } = props;
  const n = summary.bootSteps.length;
  const s = summary.bootSteps[step - 1];
  const counters = Object.entries(s.counters).filter(([, v]) => v !== 0);
  return (
    <section class="panel" aria-labelledby="log-h">
      <h2 id="log-h">Boot log</h2>
      <div class="stepper">
        <button
          type="button"
          aria-label="Previous step"
          data-testid="bootlog-prev"
          disabled={step <= 1}
          onClick={() => props.onStep(step - 1)}
        >
          ◀
        </button>
        <input
          type="range"
          min={1}
          max={n}
          value={step}
          aria-label="Boot step"
          aria-valuetext={`step ${step} of ${n}: ${s.title}`}
          data-testid="bootlog-slider"
          onInput={(e) => props.onStep(Number((e.target as HTMLInputElement).value))}
        />
        <button
          type="button"
          aria-label="Next step"
          data-testid="bootlog-next"
          disabled={step >= n}
          onClick={() => props.onStep(step + 1)}
        >
          ▶
        </button>
        <b data-testid="bootlog-title">
          [{s.step}/{n}] {s.title}
        </b>
      </div>
      <ol class="steps-overview" aria-label="Steps">
        {summary.bootSteps.map((b) => (
          <li key={b.step}>
            <button
              type="button"
              class={b.step === step ? "link current" : "link"}
              aria-current={b.step === step ? "step" : undefined}
              onClick={() => props.onStep(b.step)}
            >
              {b.step}. {b.title}
            </button>
          </li>
        ))}
      </ol>
      <pre class="log" data-testid="bootlog-lines">
        {s.log.join("\n")}
      </pre>
      {s.allocated.length > 0 && (
        <table class="allocs" data-testid="bootlog-allocs">
          <caption>memblock allocations in this step</caption>
          <thead>
            <tr>
              <th scope="col">physical address</th>
              <th scope="col">size</th>
              <th scope="col">what</th>
            </tr>
          </thead>
          <tbody>
            {s.allocated.map((a) => (
              <tr key={`${a.pa}-${a.what}`}>
                <td class="mono">{a.pa}</td>
                <td>{bytes(a.bytes)}</td>
                <td>{a.what}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {counters.length > 0 && (
        <p class="counters mono" data-testid="bootlog-counters">
          {counters.map(([k, v]) => `${k}=${v.toLocaleString("en")}`).join("  ")}
        </p>
      )}
    </section>
  );
}
