// Pooled guest memories for restore. A memory the engine allocates fresh is
// filled by page faults: restoring into one costs about 7× a plain copy
// (FINDINGS.md, "Costs to beat"), restoring into an already-touched one about
// 1.1×. Neither V8 nor JSC reuses a freed wasm memory's pages, and an instance
// of a module that *defines* its memory always gets a fresh one, so the pool
// gives such a module an import instead: it rewrites the binary so that its
// one memory is imported ("crvm:pool" "memory", same limits, same index 0),
// compiles that variant once, and instantiates it with a memory it keeps.
//
// The pool belongs to its caller (a benchmark, a daemon): nothing here is
// shared between pools.
import { uleb } from "../instrument/binary.ts";
import { CrvmError } from "../errors.ts";
import type { InstrumentedModule } from "../instrument/mod.ts";
import { Hashing, PAGE_SIZE } from "../snapshot/mod.ts";

/** Where the rewritten module imports its memory from. */
export const POOL_IMPORT = { module: "crvm:pool", name: "memory" } as const;

/** A module whose memory is imported: its bytes, where from, and the memory's limits. */
export interface MemoryImportingModule {
  wasm: Uint8Array<ArrayBuffer>;
  import: { module: string; name: string };
  minPages: number;
  maxPages: number | null;
}

/** A memory handed out by `MemoryPool.lease`, with the module to instantiate over it. */
export interface MemoryLease {
  /** Instantiate this (it imports its memory) instead of the module's own compilation. */
  compiled: WebAssembly.Module;
  /** The import to put `memory` under. */
  import: { module: string; name: string };
  memory: WebAssembly.Memory;
  /** Pages that instantiation may write (data segments); every page from here on is zero. */
  dirtyPages: number;
  /** Whether the memory came from the pool (touched before) rather than fresh from the engine. */
  reused: boolean;
}

export interface PoolStats {
  leased: number;
  reused: number;
  created: number;
  released: number;
  /** Pages zeroed by `release` (the ones it found non-zero). */
  pagesZeroed: number;
  idle: number;
  idleBytes: number;
}

interface Idle {
  memory: WebAssembly.Memory;
  maxPages: number | null;
}

/**
 * Keeps zeroed, already-touched wasm memories for restores in one process.
 *
 * @example
 * const pool = await MemoryPool.create();
 * const vm = await restoreVm(image, { host, load, dirs, name, memories: pool });
 * // ... the VM runs, exits or is dropped; none of its instances runs again
 * // (tasks it forked later have memories of their own, not the pool's):
 * for (const t of vm.tasks.values()) if (pool.leased(t.memory)) pool.release(t.memory);
 */
export class MemoryPool {
  readonly #hashing: Hashing;
  readonly #maxIdleBytes: number;
  readonly #variants = new Map<string, Promise<{ compiled: WebAssembly.Module; info: MemoryImportingModule }>>();
  readonly #idle: Idle[] = [];
  readonly #leased = new WeakMap<WebAssembly.Memory, number | null>();
  readonly stats: PoolStats = { leased: 0, reused: 0, created: 0, released: 0, pagesZeroed: 0, idle: 0, idleBytes: 0 };

  private constructor(hashing: Hashing, maxIdleBytes: number) {
    this.#hashing = hashing;
    this.#maxIdleBytes = maxIdleBytes;
  }

  /** `maxIdleBytes`: memories kept beyond this are dropped on release (default 8 GiB). */
  static async create(opts: { maxIdleBytes?: number } = {}): Promise<MemoryPool> {
    return new MemoryPool(await Hashing.create(), opts.maxIdleBytes ?? 8 * 2 ** 30);
  }

  /** Compiles (once per module) the variant that imports its memory. Call before `lease`. */
  async prepare(module: InstrumentedModule): Promise<void> {
    if (this.#variants.has(module.wasmHash)) return void (await this.#variants.get(module.wasmHash));
    const p = (async () => {
      const info = importingMemory(module.wasm);
      return { compiled: await WebAssembly.compile(info.wasm), info };
    })();
    this.#variants.set(module.wasmHash, p);
    try {
      await p;
    } catch (e) {
      this.#variants.delete(module.wasmHash);
      throw e;
    }
  }

  /**
   * A zeroed memory of at most `pages` pages (exactly `pages` when the pool
   * has one) for an instance of `module`, which `prepare` must have seen.
   * The caller grows it to `pages` (restoreMemory does). `capPages` (a
   * VM's memory limit) lowers the memory's maximum as Task does for an
   * imported memory.
   */
  async lease(module: InstrumentedModule, pages: number, capPages?: number): Promise<MemoryLease> {
    const v = this.#variants.get(module.wasmHash);
    if (!v) throw new CrvmError(`Memory pool: module ${module.name} was not prepared`);
    const { compiled, info: declared } = await v;
    const maxPages = declared.maxPages === null ? capPages ?? null : capPages === undefined ? declared.maxPages : Math.min(capPages, declared.maxPages);
    const info = { ...declared, maxPages };
    if (pages < info.minPages) throw new CrvmError(`Memory pool: ${pages} pages is below module ${module.name}'s minimum of ${info.minPages}`);
    // An image larger than the maximum gets a memory of the maximum: restoreMemory's grow then fails as it would without a pool.
    if (maxPages !== null) pages = Math.min(pages, maxPages);
    this.stats.leased++;
    // The largest idle memory that fits: it must not be larger than the image (memories do not
    // shrink), must reach the module's minimum, and must carry the maximum the import declares.
    let best = -1;
    for (let i = 0; i < this.#idle.length; i++) {
      const m = this.#idle[i]!;
      const size = m.memory.buffer.byteLength / PAGE_SIZE;
      if (size > pages || size < info.minPages || m.maxPages !== info.maxPages) continue;
      if (best < 0 || size > this.#idle[best]!.memory.buffer.byteLength / PAGE_SIZE) best = i;
    }
    let memory: WebAssembly.Memory;
    let reused = false;
    if (best >= 0) {
      memory = this.#idle.splice(best, 1)[0]!.memory;
      this.stats.idleBytes -= memory.buffer.byteLength;
      this.stats.reused++;
      reused = true;
    } else {
      memory = new WebAssembly.Memory({ initial: pages, ...(info.maxPages !== null ? { maximum: info.maxPages } : {}) });
      this.stats.created++;
    }
    this.stats.idle = this.#idle.length;
    this.#leased.set(memory, info.maxPages);
    return { compiled, import: info.import, memory, dirtyPages: info.minPages, reused };
  }

  /** Whether `memory` is out on lease from this pool. */
  leased(memory: WebAssembly.Memory): boolean {
    return this.#leased.has(memory);
  }

  /**
   * Takes back a leased memory once nothing will run on it again, zeroes the
   * pages that are not zero (found with the SIMD scan) and keeps it, unless
   * the pool already holds `maxIdleBytes`.
   */
  release(memory: WebAssembly.Memory): void {
    if (!this.#leased.has(memory)) throw new CrvmError("Memory pool: release of a memory this pool did not lease");
    const maxPages = this.#leased.get(memory)!;
    this.#leased.delete(memory);
    this.stats.released++;
    this.#zero(memory);
    if (this.stats.idleBytes + memory.buffer.byteLength > this.#maxIdleBytes) return;
    this.#idle.push({ memory, maxPages });
    this.stats.idleBytes += memory.buffer.byteLength;
    this.stats.idle = this.#idle.length;
  }

  /**
   * Creates `count` memories of `pages` pages for `module` and touches
   * every page, so that later leases find them ready (page faults paid now,
   * off the restore path).
   */
  async reserve(module: InstrumentedModule, pages: number, count = 1): Promise<void> {
    await this.prepare(module);
    const { info } = await this.#variants.get(module.wasmHash)!;
    for (let i = 0; i < count; i++) {
      const memory = new WebAssembly.Memory({ initial: pages, ...(info.maxPages !== null ? { maximum: info.maxPages } : {}) });
      // Writing a zero into every 4 KiB makes the kernel map a page there now, not at restore.
      const bytes = new Uint8Array(memory.buffer);
      for (let at = 0; at < bytes.length; at += 4096) bytes[at] = 0;
      this.stats.created++;
      this.#idle.push({ memory, maxPages: info.maxPages });
      this.stats.idleBytes += memory.buffer.byteLength;
    }
    this.stats.idle = this.#idle.length;
  }

  #zero(memory: WebAssembly.Memory): void {
    const bytes = new Uint8Array(memory.buffer);
    const scan = this.#hashing.scanMemory(memory);
    for (let p = scan.nextNonZero(0); p < scan.pages;) {
      let q = p + 1;
      while (q < scan.pages && scan.nextNonZero(q) === q) q++;
      bytes.fill(0, p * PAGE_SIZE, q * PAGE_SIZE);
      this.stats.pagesZeroed += q - p;
      p = scan.nextNonZero(q);
    }
  }
}

// ---------------------------------------------------------------- binary rewrite

const readU32 = (b: Uint8Array, at: number): [number, number] => {
  let v = 0;
  let shift = 0;
  for (;;) {
    const byte = b[at++];
    if (byte === undefined) throw new CrvmError("Memory pool: truncated module");
    v += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) return [v, at];
  }
};

const skipLimits = (b: Uint8Array, at: number): number => {
  const flags = b[at]!;
  at = readU32(b, at + 1)[1];
  return flags & 1 ? readU32(b, at)[1] : at;
};


/**
 * The module with its memory imported rather than defined (memory index 0
 * either way; function, global and data indices do not move). A module
 * that imports its memory already is returned as it is. Refuses shared and
 * 64-bit memories and modules with more than one memory.
 */
export function importingMemory(wasm: Uint8Array): MemoryImportingModule {
  const sections: { id: number; body: Uint8Array }[] = [];
  for (let at = 8; at < wasm.length;) {
    const id = wasm[at]!;
    const [size, start] = readU32(wasm, at + 1);
    sections.push({ id, body: wasm.subarray(start, start + size) });
    at = start + size;
  }
  const limits = (b: Uint8Array, at: number): { minPages: number; maxPages: number | null; end: number } => {
    const flags = b[at]!;
    if (flags !== 0 && flags !== 1) throw new CrvmError(`Memory pool: memory with limit flags ${flags} (shared or 64-bit) is not supported`);
    const [min, a] = readU32(b, at + 1);
    if (flags === 0) return { minPages: min, maxPages: null, end: a };
    const [max, e] = readU32(b, a);
    return { minPages: min, maxPages: max, end: e };
  };
  // An imported memory: use it as it is.
  const imports = sections.find((s) => s.id === 2);
  if (imports) {
    const b = imports.body;
    let [count, at] = readU32(b, 0);
    for (; count > 0; count--) {
      const [ml, a] = readU32(b, at);
      const mod = new TextDecoder().decode(b.subarray(a, a + ml));
      const [nl, c] = readU32(b, a + ml);
      const name = new TextDecoder().decode(b.subarray(c, c + nl));
      const kind = b[c + nl]!;
      at = c + nl + 1;
      if (kind === 0x00) at = readU32(b, at)[1]; // function: type index
      else if (kind === 0x01) at = skipLimits(b, at + 1); // table: reference type, limits
      else if (kind === 0x02) {
        const l = limits(b, at);
        return { wasm: new Uint8Array(wasm), import: { module: mod, name }, minPages: l.minPages, maxPages: l.maxPages };
      } else if (kind === 0x03) at += 2; // global: value type, mutability
      else if (kind === 0x04) at = readU32(b, at + 1)[1]; // tag: attribute, type index
      else throw new CrvmError(`Memory pool: unknown import kind ${kind}`);
    }
  }
  const mem = sections.find((s) => s.id === 5);
  if (!mem) throw new CrvmError("Memory pool: the module has no memory");
  const [n, at] = readU32(mem.body, 0);
  if (n !== 1) throw new CrvmError(`Memory pool: the module defines ${n} memories`);
  const l = limits(mem.body, at);
  const enc = new TextEncoder();
  const entry = [
    ...uleb(POOL_IMPORT.module.length), ...enc.encode(POOL_IMPORT.module),
    ...uleb(POOL_IMPORT.name.length), ...enc.encode(POOL_IMPORT.name),
    0x02, ...mem.body.subarray(at, l.end),
  ];
  let importBody: number[];
  if (imports) {
    const [count, a] = readU32(imports.body, 0);
    importBody = [...uleb(count + 1), ...imports.body.subarray(a), ...entry];
  } else {
    importBody = [1, ...entry];
  }
  // Sections are copied as they are (the code section can be megabytes: no spreading into arrays).
  const parts: Uint8Array[] = [wasm.subarray(0, 8)];
  const importSection = new Uint8Array([2, ...uleb(importBody.length), ...importBody]);
  let placed = false;
  for (const s of sections) {
    if (s.id === 5) continue;
    if (!placed && s.id !== 0 && s.id !== 1) {
      parts.push(importSection);
      placed = true;
      if (s.id === 2) continue;
    }
    parts.push(new Uint8Array([s.id, ...uleb(s.body.length)]), s.body);
  }
  if (!placed) parts.push(importSection);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return { wasm: out, import: { ...POOL_IMPORT }, minPages: l.minPages, maxPages: l.maxPages };
}
