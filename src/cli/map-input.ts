/** The map-input option every command that takes a map shares: `--format`, and `-` for standard input. */
import { Option } from "@commander-js/extra-typings";
import { FORMATS } from "../firmware/detect.ts";

/** `--format <format>` (`--map-format` where `--format` names an output format, as in `pt dump`): read the map (file or `-`) in this format instead of detecting it. */
export function mapFormatOption<F extends string = "--format">(flag: F = "--format" as F) {
  return new Option(
    `${flag} <format>` as `${F} <format>`,
    "format of the map file (or '-', standard input) instead of detecting it",
  ).choices(FORMATS);
}
