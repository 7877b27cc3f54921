// Walking the pages of a machine that keeps running. There is no write
// barrier: a page's id is its content hash, computed when it is read. A step
// runs in one event-loop turn, in which no guest code runs, so the id and the
// bytes a step hands out belong together; between steps the guest runs and
// may change pages already walked (the next pre-copy round, or the final
// image, sends them again).
import type { Machine } from "../../api/machine.ts";
import { type Hashing, PAGE_SIZE } from "../../snapshot/mod.ts";

/**
 * @example
 * const cursor = new PageCursor(machine, hashing);
 * while (cursor.step(1024, (id, page) => (ids.add(id), true))) await nextTurn();
 */
export class PageCursor {
  readonly #memories: WebAssembly.Memory[];
  #task = 0;
  #page = 0;

  constructor(machine: Machine, private readonly hashing: Hashing) {
    // A task forked later is walked by the next round (or is in the final image).
    this.#memories = [...machine.vm.tasks.values()].filter((t) => t.status !== "exited").map((t) => t.memory);
  }

  /**
   * Looks at up to `budget` more pages, calling `take` with the id and the
   * bytes (a view of guest memory, valid only in this turn) of each non-zero
   * one; `take` returns false to stop early. Returns false once every page
   * has been looked at.
   */
  step(budget: number, take: (id: string, page: Uint8Array) => boolean): boolean {
    while (this.#task < this.#memories.length) {
      const memory = this.#memories[this.#task]!;
      // A new scanner each step: the memory may have grown since the last.
      const scan = this.hashing.scanMemory(memory);
      const bytes = new Uint8Array(memory.buffer);
      const start = this.#page;
      const end = Math.min(scan.pages, start + budget);
      let p = scan.nextNonZero(start);
      for (; p < end; p = scan.nextNonZero(p + 1)) {
        this.#page = p + 1;
        if (!take(scan.pageId(p), bytes.subarray(p * PAGE_SIZE, (p + 1) * PAGE_SIZE))) return true;
      }
      // Every page before p is zero or walked (the zero scan may have run past `end`).
      this.#page = p;
      budget -= p - start;
      if (this.#page < scan.pages) return true;
      this.#task++;
      this.#page = 0;
      if (budget <= 0) return this.#task < this.#memories.length;
    }
    return false;
  }
}

/** A timer turn: lets the VM's run loop (and the guest) go on. */
export const nextTurn = () => new Promise<void>((r) => setTimeout(r, 0));
