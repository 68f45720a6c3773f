/** The firmware floor's public API: parse, sanitize, account and emit firmware memory maps. */
export * from "./detect.ts";
export * from "./dmesg.ts";
export * from "./e820-bin.ts";
export * from "./e820-types.ts";
export * from "./emit.ts";
export * from "./frames.ts";
export * from "./iomem.ts";
export * from "./limine.ts";
export * from "./load.ts";
export * from "./memblock.ts";
export * from "./multiboot2.ts";
export * from "./own-json.ts";
export * from "./presets.ts";
export * from "./sanitize.ts";
export * from "./sysfs.ts";
export * from "./types.ts";
export * from "./uefi.ts";
