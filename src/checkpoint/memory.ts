// Linear memory: dumped page by page straight from the frozen task's memory
// (no full copy), zero pages elided, pages content-addressed so identical
// pages are written once; restored into a memory grown once to its size.
import { SnapshotError } from "../errors.ts";
import { type Hashing, type MemoryRecord, PAGE_SIZE, type SnapshotWriter } from "../snapshot/mod.ts";

/**
 * Writes the non-zero pages of `memory` and returns its page map. The scan
 * and the hashing run in place over the guest's memory (wasm SIMD, see
 * `Hashing.scanMemory`); the writer gets views of the guest's pages, valid
 * until the guest runs again.
 */
export function dumpMemory(memory: WebAssembly.Memory, writer: SnapshotWriter, hashing: Hashing): MemoryRecord {
  const bytes = new Uint8Array(memory.buffer);
  const scan = hashing.scanMemory(memory);
  const map: [number, string][] = [];
  // Each page is hashed just before the writer copies it, so the copy reads it from cache.
  for (let p = scan.nextNonZero(0); p < scan.pages; p = scan.nextNonZero(p + 1)) {
    const id = scan.pageId(p);
    writer.page(id, bytes.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE));
    map.push([p, id]);
  }
  return { pages: scan.pages, map };
}

/** What `restoreMemory` may assume about the memory it fills. */
export interface RestoreTarget {
  /**
   * Pages below this index may hold data (the module's data segments, just
   * written by instantiation); every page from it on is zero. Default: the
   * memory's current size (a fresh memory holds nothing but its data
   * segments, which lie within its initial pages).
   */
  dirtyPages?: number;
}

/**
 * Fills a freshly instantiated memory with the image's pages: grows it once
 * to the image's size, zeroes the pages that may hold data segments but are
 * not in the image (a page absent from the image must read as zero), and
 * copies the image's pages in.
 */
export function restoreMemory(memory: WebAssembly.Memory, rec: MemoryRecord, pages: Map<string, Uint8Array>, what: string, target: RestoreTarget = {}): void {
  const have = memory.buffer.byteLength / PAGE_SIZE;
  if (!Number.isInteger(rec.pages) || rec.pages < have || rec.pages > 65536) {
    throw new SnapshotError(`${what}: memory of ${rec.pages} pages cannot hold the module's ${have} initial pages`);
  }
  const views: Uint8Array[] = [];
  for (const [index, id] of rec.map) {
    const page = pages.get(id);
    if (!page) throw new SnapshotError(`${what}: page ${index} refers to missing page ${id}`);
    if (!Number.isInteger(index) || index < 0 || index >= rec.pages) throw new SnapshotError(`${what}: page index ${index} is outside the memory`);
    views.push(page);
  }
  if (rec.pages > have) {
    try {
      memory.grow(rec.pages - have);
    } catch {
      throw new SnapshotError(`${what}: cannot grow memory to ${rec.pages} pages`);
    }
  }
  const bytes = new Uint8Array(memory.buffer);
  const dirty = Math.min(target.dirtyPages ?? have, rec.pages);
  if (dirty > 0) {
    // Zero only the dirty pages the image does not overwrite anyway.
    const covered = new Uint8Array(dirty);
    for (const [index] of rec.map) if (index < dirty) covered[index] = 1;
    let p = 0;
    while (p < dirty) {
      if (covered[p]) {
        p++;
        continue;
      }
      let q = p + 1;
      while (q < dirty && !covered[q]) q++;
      bytes.fill(0, p * PAGE_SIZE, q * PAGE_SIZE);
      p = q;
    }
  }
  for (let i = 0; i < views.length; i++) bytes.set(views[i]!, rec.map[i]![0] * PAGE_SIZE);
}
