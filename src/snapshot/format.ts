// Byte layout of an image (docs/snapshot-format.md is the specification):
//   header:  "CRVMSNAP" | u32 version | u32 flags (0)
//   records: u16 kind | u16 flags (0) | u32 length | payload | u32 crc32
//   trailer: a record of kind TRAILER; nothing may follow it.
// Little-endian throughout. Records are written front to back and objects
// come before the records that refer to them, so an image can be streamed.

export const MAGIC = new TextEncoder().encode("CRVMSNAP");
export const HEADER_SIZE = 16;
export const RECORD_HEADER = 8;
export const CRC_SIZE = 4;
export const PAGE_ID_SIZE = 16;
export const DIGEST_SIZE = 16;
export const TRAILER_SIZE = 4 + 8 + DIGEST_SIZE;
/** First bytes of a gzip stream: a compressed image starts with them instead of MAGIC. */
export const GZIP_MAGIC = [0x1f, 0x8b];

/** Record kinds: fixed numbers, never reused. A changed shape gets a new number. */
export const Kind = {
  Meta: 1,
  Module: 2,
  Page: 3,
  Blob: 4,
  Vm: 5,
  ModuleRef: 6,
  Trailer: 15,
} as const;
export type KindNumber = (typeof Kind)[keyof typeof Kind];

export const KIND_NAMES: Record<number, string> = {
  1: "META",
  2: "MODULE",
  3: "PAGE",
  4: "BLOB",
  5: "VM",
  6: "MODULE_REF",
  15: "TRAILER",
};

/** Limits a decoder enforces before allocating anything. */
export const LIMITS = {
  /** Largest payload of any record (a module or a blob). */
  record: 1 << 30,
  /** Largest JSON payload (META, VM, a module's header). */
  json: 64 << 20,
  /** Most records in one image. */
  records: 1 << 24,
  /** Most pages of one memory (4 GiB of 64 KiB pages, wasm32's limit). */
  memoryPages: 65536,
  /** Most tasks in one VM record. */
  tasks: 100_000,
  /** Highest fd number of a task. */
  fds: 1 << 20,
  /** Deepest nesting of arrays and objects in a JSON record (the VM record itself is level 1). */
  jsonDepth: 32,
} as const;
