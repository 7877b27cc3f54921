// --max-memory: a module's defined memory gets a maximum of at most the
// limit, so `memory.grow` past it fails inside the guest (malloc returns
// NULL) instead of taking the host's memory. Applied to the instrumented
// bytes just before compiling; the snapshot's module hashes are those of the
// unpatched module, so images do not depend on the limit.
import { ModuleError } from "../errors.ts";
import { sections, uleb as leb } from "./binary.ts";
import { Reader } from "./reader.ts";

const MEMORY_SECTION = 5;

/**
 * The module with every defined memory's maximum lowered to `maxPages`.
 *
 * @example
 * const limited = limitMemory(module.wasm, 256, "app.wasm"); // at most 16 MiB
 */
export function limitMemory(wasm: Uint8Array, maxPages: number, name: string): Uint8Array {
  const sec = sections(wasm).find((s) => s.id === MEMORY_SECTION);
  if (!sec) return wasm;
  const r = new Reader(wasm, sec.bodyStart, sec.end);
  const count = r.u32();
  const body: number[] = [...leb(count)];
  for (let i = 0; i < count; i++) {
    const lim = r.limits();
    if (lim.shared || lim.is64) return wasm; // refused by validation anyway
    if (lim.min > maxPages) {
      throw new ModuleError(`Cannot run "${name}": it needs ${lim.min} pages of memory at start, more than --max-memory allows (${maxPages})`);
    }
    body.push(0x01, ...leb(lim.min), ...leb(Math.min(lim.max ?? maxPages, maxPages)));
  }
  const section = [MEMORY_SECTION, ...leb(body.length), ...body];
  const out = new Uint8Array(wasm.length - (sec.end - sec.start) + section.length);
  out.set(wasm.subarray(0, sec.start));
  out.set(section, sec.start);
  out.set(wasm.subarray(sec.end), sec.start + section.length);
  return out;
}
