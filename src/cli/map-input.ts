/** The map-input option every command that takes a map shares: `--format`, and `-` for standard input. */
import { Option } from "@commander-js/extra-typings";
import { FORMATS } from "../firmware/detect.ts";

/** `--format <format>`: read the map (file or `-`) in this format instead of detecting it. */
export function mapFormatOption() {
  return new Option(
    "--format <format>",
    "format of the map file (or '-', standard input) instead of detecting it",
  ).choices(FORMATS);
}
