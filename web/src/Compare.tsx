/**
 * Charts of a compare run: load its results.json (one row per run: map, pmm, kmap, workload, cpus and
 * every counter), pick a counter, and read it as bars per PMM / kernel mapping. Rows are read
 * generically: `counters.*` and any numeric top-level field are metrics; every string field can filter.
 */
import { useMemo, useState } from "preact/hooks";

type Row = Record<string, unknown>;

const KMAP_COLOURS = ["#4a6fd6", "#e0523f", "#3a9e5a", "#e8a33b", "#b65fd0", "#3bb7c4", "#8a8f98"];
const KEYS = ["map", "levels", "pmm", "kmap", "workload", "cpus", "kind"];
/** Objects of numbers in a row whose fields are metrics (src/lab/compare.ts's ResultRow). */
const GROUPS = ["counters", "bootCounters", "perOp", "hostMs", "opCounts"];
/** Numeric top-level fields that describe the run rather than measure it. */
const NOT_METRICS = new Set(["index", "seed", "cpus", "levels", "hostBudget", "mem"]);

export function parseResults(text: string): Row[] {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new Error(`results.json is not JSON: ${(e as Error).message}`);
  }
  const obj = data as Record<string, unknown>;
  const rows = Array.isArray(data) ? data : (obj?.rows ?? obj?.results ?? obj?.runs);
  if (!Array.isArray(rows)) throw new Error("results.json: expected an array of rows (or {rows: [...]})");
  const ok = rows.filter(
    (r): r is Row => typeof r === "object" && r !== null && !Array.isArray(r) && !r.error,
  );
  if (ok.length === 0) throw new Error("results.json has no successful rows");
  return ok;
}

function metricOf(r: Row, m: string): number | null {
  const dot = m.indexOf(".");
  const v = dot > 0 ? (r[m.slice(0, dot)] as Record<string, unknown> | null)?.[m.slice(dot + 1)] : r[m];
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function metricsOf(rows: Row[]): string[] {
  const set = new Set<string>();
  for (const r of rows) {
    for (const g of GROUPS) {
      const o = r[g];
      if (o && typeof o === "object")
        for (const [k, v] of Object.entries(o)) if (typeof v === "number") set.add(`${g}.${k}`);
    }
    for (const [k, v] of Object.entries(r)) if (typeof v === "number" && !NOT_METRICS.has(k)) set.add(k);
  }
  return [...set].sort();
}

function fmt(n: number): string {
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

export function Compare(props: { onError: (e: unknown) => void }) {
  const [rows, setRows] = useState<Row[] | null>(null);
  const [name, setName] = useState("");
  const [metric, setMetric] = useState("");
  const [filters, setFilters] = useState<Record<string, string>>({});

  const load = async (f: File | undefined) => {
    if (!f) return;
    try {
      const r = parseResults(await f.text());
      const ms = metricsOf(r);
      setRows(r);
      setName(f.name);
      setMetric(ms.includes("counters.memReads") ? "counters.memReads" : (ms[0] ?? ""));
      setFilters({});
    } catch (e) {
      props.onError(e);
    }
  };

  const metrics = useMemo(() => (rows ? metricsOf(rows) : []), [rows]);
  const facets = useMemo(() => {
    const out: Record<string, string[]> = {};
    if (!rows) return out;
    for (const k of KEYS) {
      const vals = [
        ...new Set(
          rows
            .map((r) => r[k])
            .filter((v) => v !== undefined)
            .map(String),
        ),
      ];
      if (vals.length > 1) out[k] = vals;
    }
    return out;
  }, [rows]);

  const shown = (rows ?? []).filter((r) =>
    Object.entries(filters).every(([k, v]) => !v || String(r[k]) === v),
  );
  const bars = shown
    .map((r) => ({
      label: KEYS.filter(
        (k) => r[k] !== undefined && (k === "pmm" || k === "kmap" || (facets[k] && !filters[k])),
      )
        .map((k) => String(r[k]))
        .join(" / "),
      kmap: String(r.kmap ?? ""),
      value: metricOf(r, metric),
    }))
    .filter((b): b is { label: string; kmap: string; value: number } => b.value !== null);
  const kmaps = [...new Set(bars.map((b) => b.kmap))];
  const max = Math.max(1, ...bars.map((b) => b.value));
  const rowH = 22;
  const labelW = 260;
  const chartW = 760;

  return (
    <section class="panel" aria-labelledby="cmp-h">
      <h2 id="cmp-h">Compare runs</h2>
      <div class="choices">
        <label>
          <span>results.json of a compare run</span>
          <input
            type="file"
            accept=".json,application/json"
            data-testid="compare-file"
            onChange={(e) => load((e.target as HTMLInputElement).files?.[0])}
          />
        </label>
        {rows && (
          <label>
            <span>Counter</span>
            <select
              data-testid="compare-metric"
              value={metric}
              onChange={(e) => setMetric((e.target as HTMLSelectElement).value)}
            >
              {metrics.map((m) => (
                <option key={m} value={m}>
                  {m}
                </option>
              ))}
            </select>
          </label>
        )}
        {Object.entries(facets)
          .filter(([k]) => k !== "pmm" && k !== "kmap")
          .map(([k, vals]) => (
            <label key={k}>
              <span>{k}</span>
              <select
                data-testid={`compare-filter-${k}`}
                value={filters[k] ?? ""}
                onChange={(e) => setFilters({ ...filters, [k]: (e.target as HTMLSelectElement).value })}
              >
                <option value="">all</option>
                {vals.map((v) => (
                  <option key={v} value={v}>
                    {v}
                  </option>
                ))}
              </select>
            </label>
          ))}
      </div>
      {rows && (
        <>
          <p class="muted">
            {name}: {rows.length} rows, {bars.length} shown; bars coloured by kernel mapping
          </p>
          <svg
            class="chart"
            data-testid="compare-chart"
            role="img"
            aria-label={`${metric} per run`}
            viewBox={`0 0 ${labelW + chartW + 80} ${bars.length * rowH + 8}`}
            width="100%"
          >
            {bars.map((b, i) => {
              const w = (b.value / max) * chartW;
              return (
                <g key={`${b.label}-${i}`} transform={`translate(0 ${i * rowH + 4})`}>
                  <text x={labelW - 8} y={rowH / 2 + 4} text-anchor="end" class="chart-label">
                    {b.label}
                  </text>
                  <rect
                    x={labelW}
                    y={2}
                    width={Math.max(w, 1)}
                    height={rowH - 6}
                    fill={KMAP_COLOURS[kmaps.indexOf(b.kmap) % KMAP_COLOURS.length]}
                    data-testid="compare-bar"
                  >
                    <title>{`${b.label}: ${b.value}`}</title>
                  </rect>
                  <text x={labelW + w + 6} y={rowH / 2 + 4} class="chart-value">
                    {fmt(b.value)}
                  </text>
                </g>
              );
            })}
          </svg>
          <ul class="legend">
            {kmaps.map((k, i) => (
              <li key={k}>
                <span class="swatch" style={{ background: KMAP_COLOURS[i % KMAP_COLOURS.length] }} />
                {k || "(no kmap)"}
              </li>
            ))}
          </ul>
        </>
      )}
    </section>
  );
}
