/** Choose a map (preset, paste or upload), a PMM, a kernel-mapping strategy and the paging levels; boot. */
import { useState } from "preact/hooks";
import type { Options } from "./api.ts";

export interface BootChoice {
  map?: string;
  mapBase64?: string;
  mapName?: string;
  /** "auto" or a map format name; only for pasted or uploaded maps. */
  format?: string;
  pmm: string;
  kmap: string;
  levels: number;
}

type Source = "preset" | "paste" | "upload";

async function fileToBase64(f: File): Promise<string> {
  const buf = new Uint8Array(await f.arrayBuffer());
  let s = "";
  for (let i = 0; i < buf.length; i += 0x8000) s += String.fromCharCode(...buf.subarray(i, i + 0x8000));
  return btoa(s);
}

export function BootForm(props: { options: Options; busy: boolean; onBoot: (c: BootChoice) => void }) {
  const { options } = props;
  const [source, setSource] = useState<Source>("preset");
  const [preset, setPreset] = useState(options.presets[0] ?? "qemu:4G");
  const [text, setText] = useState("");
  const [file, setFile] = useState<File | null>(null);
  const [format, setFormat] = useState("auto");
  const formats = options.formats ?? ["auto"];
  const [pmm, setPmm] = useState("buddy");
  const [kmap, setKmap] = useState("direct");
  const [levels, setLevels] = useState(4);

  const submit = async (e: Event) => {
    e.preventDefault();
    const base = { pmm, kmap, levels };
    if (source === "preset") props.onBoot({ ...base, map: preset });
    else if (source === "paste") props.onBoot({ ...base, map: text, format });
    else if (file) props.onBoot({ ...base, mapBase64: await fileToBase64(file), mapName: file.name, format });
    else props.onBoot({ ...base, mapBase64: "", mapName: "", format });
  };

  return (
    <form class="boot-form" onSubmit={submit} aria-label="Boot a machine">
      <fieldset class="sources">
        <legend>Firmware map</legend>
        {(["preset", "paste", "upload"] as const).map((s) => (
          <label key={s} class="radio">
            <input
              type="radio"
              name="source"
              value={s}
              checked={source === s}
              data-testid={`source-${s}`}
              onChange={() => setSource(s)}
            />
            {s === "preset" ? "Preset" : s === "paste" ? "Paste" : "Upload"}
          </label>
        ))}
        {source === "preset" && (
          <label>
            <span>Preset</span>
            <select
              data-testid="map-preset"
              value={preset}
              onChange={(e) => setPreset((e.target as HTMLSelectElement).value)}
            >
              {options.presets.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
          </label>
        )}
        {source === "paste" && (
          <label class="paste">
            <span>Map text (dmesg e820 lines, /proc/iomem, Limine, memmap rows...)</span>
            <textarea
              data-testid="map-text"
              rows={6}
              value={text}
              placeholder="BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable"
              onInput={(e) => setText((e.target as HTMLTextAreaElement).value)}
            />
          </label>
        )}
        {source === "upload" && (
          <label>
            <span>Map file</span>
            <input
              type="file"
              data-testid="map-file"
              onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)}
            />
          </label>
        )}
        {source !== "preset" && (
          <label>
            <span>Format</span>
            <select
              data-testid="map-format"
              value={format}
              title="auto detects the format; choose one when detection guesses wrong"
              onChange={(e) => setFormat((e.target as HTMLSelectElement).value)}
            >
              {formats.map((f) => (
                <option key={f} value={f}>
                  {f === "auto" ? "auto (detect)" : f}
                </option>
              ))}
            </select>
          </label>
        )}
      </fieldset>
      <div class="choices">
        <label>
          <span>PMM</span>
          <select
            data-testid="pmm-select"
            value={pmm}
            onChange={(e) => setPmm((e.target as HTMLSelectElement).value)}
          >
            {options.pmms.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Kernel mapping</span>
          <select
            data-testid="kmap-select"
            value={kmap}
            onChange={(e) => setKmap((e.target as HTMLSelectElement).value)}
          >
            {options.kmaps.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>Paging levels</span>
          <select
            data-testid="levels-select"
            value={String(levels)}
            onChange={(e) => setLevels(Number((e.target as HTMLSelectElement).value))}
          >
            {options.levels.map((l) => (
              <option key={l} value={String(l)}>
                {l}
              </option>
            ))}
          </select>
        </label>
        <button type="submit" class="primary" data-testid="boot-button" disabled={props.busy}>
          {props.busy ? "Booting…" : "Boot"}
        </button>
      </div>
    </form>
  );
}
