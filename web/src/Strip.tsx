/**
 * The physical memory map as a zoomable strip: every frame coloured by its owner as of the chosen boot
 * step. The server aggregates frames into at most one item per pixel; an item holding several owners is
 * drawn as stacked bands (each owner at least a sliver tall, so one page table among a million free
 * frames still shows). Wheel or buttons zoom, hovering tells the owner and the sanitizer's decisions,
 * clicking a frame walks a virtual address that maps it.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import {
  api,
  bytes,
  type FrameInfo,
  hex,
  OWNER_COLOURS,
  OWNER_LABELS,
  type StripItem,
  type Summary,
} from "./api.ts";

const W = 1000;
const H = 56;
const MIN_FRAMES = 64;

export interface View {
  from: number;
  to: number;
}

function clampView(v: View, span: number): View {
  let width = Math.max(MIN_FRAMES, Math.min(span, Math.round(v.to - v.from)));
  width = Math.min(width, span);
  const from = Math.max(0, Math.min(span - width, Math.round(v.from)));
  return { from, to: from + width };
}

function bands(parts: [number, number][], total: number): { owner: number; y: number; h: number }[] {
  const min = 0.14;
  const raw = parts.map(([o, n]) => ({ owner: o, share: Math.max(n / total, min) }));
  const sum = raw.reduce((s, r) => s + r.share, 0);
  let y = 0;
  return raw.map((r) => {
    const h = (r.share / sum) * H;
    const b = { owner: r.owner, y, h };
    y += h;
    return b;
  });
}

export function Strip(props: {
  summary: Summary;
  step: number;
  onError: (e: unknown) => void;
  onPickFrame: (f: FrameInfo) => void;
}) {
  const { summary, step } = props;
  const owners = summary.strip.owners;
  const span = summary.strip.spanEnd;
  const [view, setView] = useState<View>({ from: 0, to: summary.strip.ramTop });
  const [items, setItems] = useState<StripItem[]>([]);
  const [hover, setHover] = useState<{ x: number; pfn: number; item: StripItem | null } | null>(null);
  const [detail, setDetail] = useState<FrameInfo | null>(null);
  const svgRef = useRef<SVGSVGElement>(null);
  const hoverTimer = useRef<number | undefined>(undefined);

  useEffect(() => setView({ from: 0, to: summary.strip.ramTop }), [summary.session]);

  useEffect(() => {
    let live = true;
    api
      .frames(summary.session, step, view.from, view.to, W)
      .then((r) => live && setItems(r.items))
      .catch(props.onError);
    return () => {
      live = false;
    };
  }, [summary.session, step, view.from, view.to]);

  // Places worth a look: the kernel image and what memblock allocated, step by step.
  const places = useMemo(() => {
    const k = Number.parseInt(summary.kernelPhys, 16) / 4096;
    const out = [{ label: `kernel image ${summary.kernelPhys}`, from: k, to: k + 512 }];
    for (const st of summary.bootSteps)
      for (const a of st.allocated) {
        const from = Math.floor(Number.parseInt(a.pa, 16) / 4096);
        const label = `${a.what.replace(/^reserved: /, "").slice(0, 48)} ${a.pa}`;
        if (!out.some((p) => p.label === label))
          out.push({ label, from, to: from + Math.ceil(a.bytes / 4096) });
      }
    return out;
  }, [summary.session]);

  const totals = useMemo(() => {
    const t: Record<string, number> = {};
    for (const it of items) for (const [o, n] of it.parts) t[owners[o]] = (t[owners[o]] ?? 0) + n;
    return t;
  }, [items]);

  const frames = view.to - view.from;
  const xOf = (pfn: number) => ((pfn - view.from) / frames) * W;
  const pfnAt = (clientX: number): { x: number; pfn: number } => {
    const r = svgRef.current!.getBoundingClientRect();
    const x = Math.max(0, Math.min(r.width, clientX - r.left));
    return { x, pfn: Math.min(view.to - 1, Math.floor(view.from + (x / r.width) * frames)) };
  };
  const itemAt = (pfn: number) => items.find((it) => pfn >= it.s && pfn < it.e) ?? null;

  const zoom = (factor: number, centre = view.from + frames / 2) => {
    const w = frames * factor;
    const left = (centre - view.from) / frames;
    setView(clampView({ from: centre - w * left, to: centre - w * left + w }, span));
  };
  const pan = (dir: number) =>
    setView(clampView({ from: view.from + dir * frames * 0.5, to: view.to + dir * frames * 0.5 }, span));

  const onWheel = (e: WheelEvent) => {
    e.preventDefault();
    const { pfn } = pfnAt(e.clientX);
    zoom(e.deltaY > 0 ? 1.4 : 1 / 1.4, pfn);
  };
  useEffect(() => {
    const el = svgRef.current;
    if (!el) return;
    el.addEventListener("wheel", onWheel, { passive: false });
    return () => el.removeEventListener("wheel", onWheel);
  });

  const onMove = (e: MouseEvent) => {
    const { x, pfn } = pfnAt(e.clientX);
    setHover({ x, pfn, item: itemAt(pfn) });
    window.clearTimeout(hoverTimer.current);
    hoverTimer.current = window.setTimeout(() => {
      api
        .frame(summary.session, step, pfn)
        .then(setDetail)
        .catch(() => setDetail(null));
    }, 60);
  };
  const onLeave = () => {
    window.clearTimeout(hoverTimer.current);
    setHover(null);
    setDetail(null);
  };
  const onClick = (e: MouseEvent) => {
    const { pfn } = pfnAt(e.clientX);
    api.frame(summary.session, step, pfn).then(props.onPickFrame).catch(props.onError);
  };

  const onKey = (e: KeyboardEvent) => {
    if (e.key === "ArrowLeft") pan(-1);
    else if (e.key === "ArrowRight") pan(1);
    else if (e.key === "+" || e.key === "=") zoom(1 / 2);
    else if (e.key === "-") zoom(2);
    else if (e.key === "Enter") {
      const pfn = Math.floor(view.from + frames / 2);
      api.frame(summary.session, step, pfn).then(props.onPickFrame).catch(props.onError);
    } else return;
    e.preventDefault();
  };

  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => view.from + Math.round(frames * f));
  const shown = detail && hover && detail.pfn === hover.pfn ? detail : null;

  return (
    <section class="panel" aria-labelledby="strip-h">
      <div class="panel-head">
        <h2 id="strip-h">Physical memory</h2>
        <div class="toolbar" role="toolbar" aria-label="Zoom the memory strip">
          <button type="button" onClick={() => pan(-1)} aria-label="Pan left" data-testid="strip-left">
            ◀
          </button>
          <button type="button" onClick={() => zoom(1 / 2)} aria-label="Zoom in" data-testid="strip-zoom-in">
            +
          </button>
          <button type="button" onClick={() => zoom(2)} aria-label="Zoom out" data-testid="strip-zoom-out">
            −
          </button>
          <button type="button" onClick={() => pan(1)} aria-label="Pan right" data-testid="strip-right">
            ▶
          </button>
          <select
            aria-label="Go to"
            data-testid="strip-goto"
            value=""
            onChange={(e) => {
              const [a, b] = (e.target as HTMLSelectElement).value.split(":").map(Number);
              // Show the target with as much again on each side.
              if (b > a) setView(clampView({ from: a - (b - a), to: b + (b - a) }, span));
            }}
          >
            <option value="">Go to…</option>
            {places.map((p) => (
              <option key={p.label} value={`${p.from}:${p.to}`}>
                {p.label}
              </option>
            ))}
          </select>
          <button
            type="button"
            onClick={() => setView({ from: 0, to: summary.strip.ramTop })}
            data-testid="strip-ram"
          >
            RAM
          </button>
          <button type="button" onClick={() => setView({ from: 0, to: span })} data-testid="strip-all">
            Whole map
          </button>
        </div>
      </div>
      <p class="muted" data-testid="strip-range">
        {hex(view.from * 4096)} – {hex(view.to * 4096)} ({bytes(frames * 4096)}, {frames.toLocaleString("en")}{" "}
        frames) as of step {step}
      </p>
      <div class="strip-wrap">
        <div
          class="strip-focus"
          role="slider"
          aria-roledescription="memory strip"
          aria-valuemin={0}
          aria-valuemax={span}
          aria-valuenow={view.from}
          aria-valuetext={`${hex(view.from * 4096)} to ${hex(view.to * 4096)}`}
          aria-label={`Frames ${hex(view.from * 4096)} to ${hex(view.to * 4096)} coloured by owner (arrows pan, + and - zoom, Enter picks the middle frame)`}
          tabIndex={0}
          onMouseMove={onMove}
          onMouseLeave={onLeave}
          onClick={onClick}
          onKeyDown={onKey}
        >
          <svg
            ref={svgRef}
            class="strip"
            viewBox={`0 0 ${W} ${H}`}
            preserveAspectRatio="none"
            aria-hidden="true"
            data-testid="strip"
          >
            {[
              ...items.filter((it) => it.parts.length === 1),
              ...items.filter((it) => it.parts.length > 1),
            ].map((it) => {
              const x = xOf(it.s);
              // A mixed item is drawn at least 3 units wide (on top of its neighbours) so that a few page
              // tables or the kernel image stay visible at any zoom.
              const w = Math.max(xOf(it.e) - x, it.parts.length > 1 ? 3 : 0.6);
              const total = it.e - it.s;
              if (it.parts.length === 1) {
                const o = owners[it.parts[0][0]];
                return (
                  <rect
                    key={it.s}
                    x={x}
                    y={0}
                    width={w}
                    height={H}
                    fill={OWNER_COLOURS[o]}
                    data-owner={o}
                    data-s={it.s}
                  />
                );
              }
              return (
                <g key={it.s} data-owner="mixed">
                  {bands(it.parts, total).map((b) => (
                    <rect
                      key={b.owner}
                      x={x}
                      y={b.y}
                      width={w}
                      height={b.h}
                      fill={OWNER_COLOURS[owners[b.owner]]}
                      data-owner={owners[b.owner]}
                    />
                  ))}
                </g>
              );
            })}
          </svg>
        </div>
        {hover && (
          <div
            class="tooltip"
            role="tooltip"
            data-testid="strip-tooltip"
            style={{
              left: `${Math.min(hover.x, (svgRef.current?.getBoundingClientRect().width ?? 600) - 320)}px`,
            }}
          >
            <div class="mono">
              frame {hex(hover.pfn)} · PA {hex(hover.pfn * 4096)}
            </div>
            {shown ? (
              <>
                <div>
                  <b>{OWNER_LABELS[shown.owner]}</b>: {shown.note}
                </div>
                <div class="muted mono">
                  run {hex(shown.run.start * 4096)}–{hex(shown.run.end * 4096)} (
                  {bytes((shown.run.end - shown.run.start) * 4096)})
                </div>
                <div class="muted">
                  map entry:{" "}
                  {shown.entry
                    ? `${shown.entry.type} ${hex(shown.entry.start * 4096)}–${hex(shown.entry.end * 4096)}`
                    : "none (hole)"}
                </div>
                {shown.changes.length > 0 ? (
                  <ul class="changes" data-testid="tooltip-changes">
                    {shown.changes.map((c) => (
                      <li key={c.message}>
                        <span class="tag">{c.kind}</span> {c.message}
                      </li>
                    ))}
                  </ul>
                ) : (
                  <div class="muted">sanitizer: no change touches this entry</div>
                )}
              </>
            ) : (
              hover.item && (
                <div>
                  {hover.item.parts
                    .map(([o, n]) => `${OWNER_LABELS[owners[o]]} ${n.toLocaleString("en")}`)
                    .join(" · ")}
                </div>
              )
            )}
          </div>
        )}
      </div>
      <div class="axis mono" aria-hidden="true">
        {ticks.map((t) => (
          <span key={t}>{hex(t * 4096)}</span>
        ))}
      </div>
      <ul class="legend" aria-label="Owners in view">
        {owners.map((o) => (
          <li key={o} data-testid={`legend-${o}`} data-frames={totals[o] ?? 0}>
            <span class="swatch" style={{ background: OWNER_COLOURS[o] }} />
            {OWNER_LABELS[o]} <span class="muted">{(totals[o] ?? 0).toLocaleString("en")}</span>
          </li>
        ))}
      </ul>
    </section>
  );
}
