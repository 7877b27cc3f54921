// Linear memory: dumped page by page straight from the frozen task's memory
// (no full copy), zero pages elided, pages content-addressed so identical
// pages are written once; restored into a memory grown once to its size.
import { SnapshotError } from "../errors.ts";
import { type Hashing, isZeroPage, type MemoryRecord, PAGE_SIZE, type SnapshotWriter } from "../snapshot/mod.ts";

export function dumpMemory(memory: WebAssembly.Memory, writer: SnapshotWriter, hashing: Hashing): MemoryRecord {
  const bytes = new Uint8Array(memory.buffer);
  const pages = bytes.length / PAGE_SIZE;
  const map: [number, string][] = [];
  for (let p = 0; p < pages; p++) {
    const page = bytes.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE);
    if (isZeroPage(page)) continue;
    const id = hashing.pageId(page);
    writer.page(id, page);
    map.push([p, id]);
  }
  return { pages, map };
}

/**
 * Fills a freshly instantiated memory with the image's pages. The fresh
 * memory holds the module's data segments, so its initial pages are zeroed
 * first: a page absent from the image must read as zero.
 */
export function restoreMemory(memory: WebAssembly.Memory, rec: MemoryRecord, pages: Map<string, Uint8Array>, what: string): void {
  const have = memory.buffer.byteLength / PAGE_SIZE;
  if (!Number.isInteger(rec.pages) || rec.pages < have || rec.pages > 65536) {
    throw new SnapshotError(`${what}: memory of ${rec.pages} pages cannot hold the module's ${have} initial pages`);
  }
  if (rec.pages > have) {
    try {
      memory.grow(rec.pages - have);
    } catch {
      throw new SnapshotError(`${what}: cannot grow memory to ${rec.pages} pages`);
    }
  }
  const bytes = new Uint8Array(memory.buffer);
  bytes.fill(0, 0, have * PAGE_SIZE);
  for (const [index, id] of rec.map) {
    const page = pages.get(id);
    if (!page) throw new SnapshotError(`${what}: page ${index} refers to missing page ${id}`);
    if (!Number.isInteger(index) || index < 0 || index >= rec.pages) throw new SnapshotError(`${what}: page index ${index} is outside the memory`);
    bytes.set(page, index * PAGE_SIZE);
  }
}
