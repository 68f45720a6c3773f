/** The firmware floor's public API: parse, sanitize, account and emit firmware memory maps. */
export * from "./e820-types.ts";
export * from "./frames.ts";
export * from "./load.ts";
export * from "./presets.ts";
export * from "./sanitize.ts";
export * from "./types.ts";
