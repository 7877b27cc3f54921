// Byte layout of an image (see docs/snapshot-format.md):
//   header:  "CRVMSNAP" | u32 version | u32 flags
//   records: u16 kind | u16 flags | u32 length | payload | u32 crc32
//   trailer: a record of kind TRAILER; nothing may follow it.
// Little-endian throughout. Records are written front to back and objects
// come before the records that refer to them, so an image can be streamed.

export const MAGIC = new TextEncoder().encode("CRVMSNAP");
export const HEADER_SIZE = 16;
export const RECORD_HEADER = 8;

/** Record kinds: fixed numbers, never reused. */
export const enum Kind {
  Meta = 1,
  Module = 2,
  Page = 3,
  Blob = 4,
  Vm = 5,
  Trailer = 15,
}

export const KIND_NAMES: Record<number, string> = {
  1: "META",
  2: "MODULE",
  3: "PAGE",
  4: "BLOB",
  5: "VM",
  15: "TRAILER",
};

/** Largest record payload accepted (a module or a blob); pages are 64 KiB. */
export const MAX_RECORD = 1 << 30;
