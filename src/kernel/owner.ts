/**
 * Who owns a range of frames the PMM was not given: typed records that the boot's checks, the audit
 * and the explorer's memory strip read (instead of parsing the boot log's prose).
 */

/** What a frame not on the PMM's free lists is used for. */
export type OwnerKind = "kernel-image" | "page-table" | "pmm-metadata" | "reserved" | "allocated";

/** Frames [start, end) owned by `kind` from boot step `step` on; `why` is the boot log's phrase. */
export interface OwnedRange {
  kind: OwnerKind;
  start: number;
  end: number;
  step: number;
  why: string;
}
