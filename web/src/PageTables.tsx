/**
 * The page-table explorer: walk any virtual address from CR3 (each entry's bits decoded, the leaf's
 * page size marked), and browse the tree table by table: click an entry to open the table it points to.
 */
import { useEffect, useState } from "preact/hooks";
import { api, type Summary, type Table, type TableEntry, type Walk } from "./api.ts";

const BITS = ["P", "RW", "US", "PWT", "PCD", "A", "D", "PS", "G", "PAT", "NX"] as const;
const BIT_TITLES: Record<string, string> = {
  P: "present",
  RW: "writable",
  US: "user accessible",
  PWT: "page write-through",
  PCD: "page cache disable",
  A: "accessed",
  D: "dirty",
  PS: "page size (large page)",
  G: "global",
  PAT: "page attribute table",
  NX: "no execute (XD)",
  PK: "protection key",
};
const SIZE_NAMES: Record<string, string> = { "4K": "4 KiB page", "2M": "2 MiB page", "1G": "1 GiB page" };
const SDM = ["", "PTE", "PDE", "PDPTE", "PML4E", "PML5E"];
const TABLE_NAMES = ["", "PT", "PD", "PDPT", "PML4", "PML5"];

function Bits(props: { bits: Record<string, boolean | number> }) {
  return (
    <span class="bits">
      {BITS.map((b) => (
        <span
          key={b}
          class={props.bits[b] ? "bit on" : "bit"}
          title={BIT_TITLES[b]}
          data-bit={b}
          data-on={props.bits[b] ? "1" : "0"}
        >
          {b}
        </span>
      ))}
      <span class={props.bits.PK ? "bit on" : "bit"} title={BIT_TITLES.PK} data-bit="PK">
        PK{String(props.bits.PK ?? 0)}
      </span>
    </span>
  );
}

function flagsToBits(flags: string, level: number): Record<string, boolean | number> {
  const set = new Set(flags.split(" "));
  const pk = [...set].find((f) => /^PK\d+$/.test(f));
  const bits: Record<string, boolean | number> = {};
  for (const b of BITS) bits[b] = set.has(b) && !(b === "PS" && level === 1);
  bits.PK = pk ? Number(pk.slice(2)) : 0;
  return bits;
}

interface Crumb {
  pa: string;
  level: number;
  base: string;
  label: string;
}

export function PageTables(props: {
  summary: Summary;
  va: string;
  onVa: (va: string) => void;
  onError: (e: unknown) => void;
}) {
  const { summary } = props;
  const [input, setInput] = useState(props.va);
  const [walk, setWalk] = useState<Walk | null>(null);
  const [path, setPath] = useState<Crumb[]>([]);
  const [table, setTable] = useState<Table | null>(null);
  const [showEmpty, setShowEmpty] = useState(false);

  const root: Crumb = { pa: summary.cr3, level: summary.levels, base: "0x0", label: `CR3 ${summary.cr3}` };

  useEffect(() => {
    setWalk(null);
    setPath([root]);
  }, [summary.session]);

  useEffect(() => {
    setInput(props.va);
    if (props.va) doWalk(props.va);
  }, [props.va, summary.session]);

  useEffect(() => {
    const top = path[path.length - 1];
    if (!top) return;
    api.table(summary.session, top.pa, top.level, top.base).then(setTable).catch(props.onError);
  }, [path, summary.session]);

  const doWalk = (va: string) => {
    api
      .walk(summary.session, va)
      .then(setWalk)
      .catch((e) => {
        setWalk(null);
        props.onError(e);
      });
  };

  const openFromWalk = (upTo: number) => {
    if (!walk) return;
    // Rebuild the breadcrumb from the walk: each step's table, with the base VA it covers.
    const crumbs: Crumb[] = [root];
    for (let i = 1; i <= upTo; i++) {
      const s = walk.steps[i];
      crumbs.push({
        pa: s.tablePa,
        level: s.level,
        base: baseOf(walk.va, s.level, summary.levels),
        label: `${TABLE_NAMES[s.level]} ${s.tablePa}`,
      });
    }
    setPath(crumbs);
  };

  const openEntry = (e: TableEntry) => {
    if (!table || !e.present || e.leaf || e.recursive || table.level === 1) return;
    const level = table.level - 1;
    setPath([
      ...path,
      { pa: e.target!, level, base: e.va, label: `${TABLE_NAMES[level]} ${e.target} [${e.index}]` },
    ]);
  };

  const entries = table ? table.entries.filter((e) => showEmpty || e.present) : [];

  return (
    <section class="panel" aria-labelledby="pt-h">
      <h2 id="pt-h">Page tables</h2>
      <form
        class="walk-form"
        aria-label="Walk a virtual address"
        onSubmit={(e) => {
          e.preventDefault();
          props.onVa(input.trim());
          doWalk(input.trim());
        }}
      >
        <label>
          <span>Virtual address</span>
          <input
            class="mono"
            data-testid="va-input"
            value={input}
            spellcheck={false}
            onInput={(e) => setInput((e.target as HTMLInputElement).value)}
            placeholder={String(summary.layout.directMap)}
          />
        </label>
        <button type="submit" data-testid="walk-button">
          Walk
        </button>
        <span class="muted">
          direct map {String(summary.layout.directMap)} · kernel {String(summary.layout.kernelImage)}
        </span>
      </form>
      {walk && (
        <div class="walk" data-testid="walk">
          <p>
            <span class="mono">{walk.va}</span> from CR3 <span class="mono">{walk.cr3}</span>:{" "}
            {walk.pa ? (
              <b data-testid="walk-result">
                {SIZE_NAMES[walk.pageSize ?? ""] ?? walk.pageSize} at PA <span class="mono">{walk.pa}</span>
              </b>
            ) : (
              <b class="fault" data-testid="walk-result">
                page fault ({walk.fault?.bits.join(", ")})
              </b>
            )}
          </p>
          <ol class="walk-steps">
            {walk.steps.map((s, i) => (
              <li key={s.level} data-testid={`walk-step-${s.entry}`}>
                <button
                  type="button"
                  class="link"
                  onClick={() => openFromWalk(i)}
                  title="Open this table below"
                >
                  {s.entry} [{s.index}]
                </button>
                <span class="mono muted"> @ {s.entryPa} </span>
                <span class="mono">{s.raw}</span> <Bits bits={flagsToBits(s.flags, s.level)} />
                <div class="meaning">{s.meaning}</div>
              </li>
            ))}
          </ol>
        </div>
      )}
      <nav class="crumbs" aria-label="Table path" data-testid="pt-breadcrumb">
        {path.map((c, i) => (
          <span key={`${c.pa}-${i}`}>
            {i > 0 && " › "}
            <button type="button" class="link" onClick={() => setPath(path.slice(0, i + 1))}>
              {c.label}
            </button>
          </span>
        ))}
      </nav>
      {table && (
        <div class="table-box">
          <p>
            <b data-testid="pt-table-name">
              {TABLE_NAMES[table.level]} at <span class="mono">{table.pa}</span>
            </b>{" "}
            <span class="muted">
              covering {table.base}…, {table.present} of 512 entries present ({SDM[table.level]}s)
            </span>{" "}
            <label class="inline">
              <input type="checkbox" checked={showEmpty} onChange={() => setShowEmpty(!showEmpty)} /> show
              empty entries
            </label>
          </p>
          <table class="entries" data-testid="pt-table" aria-label={`${TABLE_NAMES[table.level]} entries`}>
            <thead>
              <tr>
                <th scope="col">#</th>
                <th scope="col">virtual address</th>
                <th scope="col">raw</th>
                <th scope="col">bits</th>
                <th scope="col">points to</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => {
                const opens = e.present && !e.leaf && !e.recursive && table.level > 1;
                return (
                  <tr
                    key={e.index}
                    data-testid={`pt-entry-${e.index}`}
                    class={opens ? "opens" : e.present ? "" : "empty"}
                    onClick={() => openEntry(e)}
                    tabIndex={opens ? 0 : undefined}
                    onKeyDown={(k) => k.key === "Enter" && openEntry(e)}
                    aria-label={opens ? `Open the table of entry ${e.index}` : undefined}
                  >
                    <td class="mono">{e.index}</td>
                    <td class="mono">{e.va}</td>
                    <td class="mono">{e.raw}</td>
                    <td>
                      <Bits bits={e.bits} />
                    </td>
                    <td>
                      {!e.present ? (
                        <span class="muted">not present</span>
                      ) : e.recursive ? (
                        <span>recursive: this table itself</span>
                      ) : e.leaf ? (
                        <span>
                          <span class={`badge size-${e.size}`} data-testid="leaf-size">
                            {SIZE_NAMES[e.size ?? ""]}
                          </span>{" "}
                          <span class="mono">{e.target}</span>
                        </span>
                      ) : (
                        <span>
                          {TABLE_NAMES[table.level - 1]} <span class="mono">{e.target}</span> ›
                        </span>
                      )}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The first VA covered by the level-`level` table on the walk of `va`. */
function baseOf(va: string, level: number, levels: number): string {
  const v = BigInt(va);
  const bits = BigInt(12 + 9 * level);
  const vaBits = BigInt(levels === 5 ? 57 : 48);
  if (level >= levels) return "0x0";
  const mask = (1n << vaBits) - 1n;
  const low = ((v & mask) >> bits) << bits;
  let out = low;
  if ((low >> (vaBits - 1n)) & 1n) out |= ((1n << 64n) - 1n) ^ mask;
  return `0x${out.toString(16)}`;
}
