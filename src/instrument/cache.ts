// On-disk cache of instrumented modules, keyed by what determines the output:
// the source's sha256, the pass version and the binaryen version.
//
// Entry (`<cacheDir>/modules/<key>.crvmmod`):
//   "crvmmod\0" | u32 LE format | u32 LE JSON length | JSON metadata | wasm
// The JSON holds the InstrumentedModule fields (minus name, source, cached, transformMs) and the wasm's
// length and sha256. A reader checks all of it; anything that does not check out is a miss, never an
// error, and the entry is rewritten. (Writes are atomic, so a crash leaves no half entry; a damaged disk
// or a hand-edited file still can.)
import type { HostFs } from "../host/types.ts";
import type { FuncImport, MemoryDesc } from "./transform.ts";

/**
 * The binaryen release the transform is written against (the npm package has no
 * run-time version; `cache_test.ts` checks this against node_modules).
 */
export const BINARYEN_VERSION = "132.0.0";
const MAGIC = new TextEncoder().encode("crvmmod\0");
const FORMAT = 1;
const HEAD = MAGIC.length + 8;

export interface CacheMeta {
  sourceHash: string;
  wasmHash: string;
  wasmLength: number;
  passVersion: number;
  binaryen: string;
  globals: string[];
  memory: MemoryDesc;
  imports: FuncImport[];
}

/** Lower-case hex sha256, with WebCrypto (a global on Node 20, Deno and Bun). */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const d = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  let s = "";
  for (const b of d) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Path of the entry for a source hash. */
export function cachePath(cacheDir: string, sourceHash: string, passVersion: number): string {
  const dir = cacheDir.replace(/\/+$/, "") || "/";
  return `${dir === "/" ? "" : dir}/modules/${sourceHash}-p${passVersion}-b${BINARYEN_VERSION}.crvmmod`;
}

export function encodeEntry(meta: CacheMeta, wasm: Uint8Array): Uint8Array[] {
  const json = new TextEncoder().encode(JSON.stringify(meta));
  const head = new Uint8Array(HEAD + json.length);
  head.set(MAGIC, 0);
  const dv = new DataView(head.buffer);
  dv.setUint32(MAGIC.length, FORMAT, true);
  dv.setUint32(MAGIC.length + 4, json.length, true);
  head.set(json, HEAD);
  return [head, wasm];
}

/** The entry's metadata and wasm, or null when it is not a complete, matching entry. */
export async function decodeEntry(
  bytes: Uint8Array, want: { sourceHash: string; passVersion: number },
): Promise<{ meta: CacheMeta; wasm: Uint8Array } | null> {
  if (bytes.length < HEAD || !MAGIC.every((b, i) => bytes[i] === b)) return null;
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(MAGIC.length, true) !== FORMAT) return null;
  const jsonLen = dv.getUint32(MAGIC.length + 4, true);
  if (HEAD + jsonLen > bytes.length) return null;
  let meta: unknown;
  try {
    meta = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(HEAD, HEAD + jsonLen)));
  } catch {
    return null;
  }
  if (!isMeta(meta)) return null;
  if (meta.sourceHash !== want.sourceHash || meta.passVersion !== want.passVersion || meta.binaryen !== BINARYEN_VERSION) return null;
  const wasm = bytes.subarray(HEAD + jsonLen);
  if (wasm.length !== meta.wasmLength) return null;
  if ((await sha256Hex(wasm)) !== meta.wasmHash) return null;
  return { meta, wasm };
}

/** Reads the entry if it is there and intact. */
export async function readCache(
  fs: HostFs, path: string, want: { sourceHash: string; passVersion: number },
): Promise<{ meta: CacheMeta; wasm: Uint8Array } | null> {
  let bytes: Uint8Array;
  try {
    if (!fs.exists(path)) return null;
    bytes = fs.readFile(path);
  } catch {
    return null;
  }
  return decodeEntry(bytes, want);
}

/**
 * Writes the entry atomically (temporary file + rename), so concurrent writers of the same entry are
 * safe. A failure (read-only or full disk) is not an error: the cache only saves time.
 */
export function writeCache(fs: HostFs, path: string, meta: CacheMeta, wasm: Uint8Array): boolean {
  try {
    fs.mkdirp(path.slice(0, path.lastIndexOf("/")) || "/");
    fs.writeFileAtomic(path, encodeEntry(meta, wasm));
    return true;
  } catch {
    return false;
  }
}

const isStr = (x: unknown): x is string => typeof x === "string";
const isStrArr = (x: unknown): x is string[] => Array.isArray(x) && x.every(isStr);
const isNat = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
const isObj = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);

function isMeta(x: unknown): x is CacheMeta {
  if (!isObj(x)) return false;
  const mem = x.memory;
  if (!isObj(mem)) return false;
  const imp = mem.import;
  if (imp !== null && !(isObj(imp) && isStr(imp.module) && isStr(imp.name))) return false;
  if (!(mem.exportName === null || isStr(mem.exportName))) return false;
  if (!isNat(mem.initialPages) || !(mem.maximumPages === null || isNat(mem.maximumPages))) return false;
  return isStr(x.sourceHash) && isStr(x.wasmHash) && isNat(x.wasmLength) && isNat(x.passVersion) &&
    isStr(x.binaryen) && isStrArr(x.globals) && Array.isArray(x.imports) &&
    x.imports.every((i) => isObj(i) && isStr(i.module) && isStr(i.name) && isStrArr(i.params) && isStrArr(i.results));
}
