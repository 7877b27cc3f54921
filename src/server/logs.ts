// A container's log: what its tasks write to stdout and stderr, in order,
// kept up to a size cap (the oldest bytes go first). Offsets count every
// byte ever logged, so a reader can continue where it stopped, and a
// container that moved to another host continues the numbering.

/** Default cap of a container's log. */
export const DEFAULT_LOG_CAP = 8 * 1024 * 1024;

/**
 * @example
 * const log = new LogBuffer(1 << 20);
 * log.append(bytes);
 * const { start, data } = log.read(0);   // start > 0 once the cap dropped old bytes
 * for await (const c of log.follow(0)) ...  // until close()
 */
export class LogBuffer {
  #chunks: Uint8Array[] = [];
  #bytes = 0;
  #start: number;
  #closed = false;
  #waiters = new Set<() => void>();

  /** `start`: the offset of the first byte (non-zero for a log continued from elsewhere). */
  constructor(readonly cap = DEFAULT_LOG_CAP, start = 0) {
    this.#start = start;
  }

  /** Offset of the oldest byte still kept. */
  get start(): number {
    return this.#start;
  }

  /** Offset just past the newest byte. */
  get end(): number {
    return this.#start + this.#bytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  append(data: Uint8Array): void {
    if (this.#closed || data.length === 0) return;
    this.#chunks.push(data.slice());
    this.#bytes += data.length;
    while (this.#bytes > this.cap && this.#chunks.length > 0) {
      const first = this.#chunks[0]!;
      const drop = Math.min(first.length, this.#bytes - this.cap);
      if (drop === first.length) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(drop);
      this.#bytes -= drop;
      this.#start += drop;
    }
    this.#wake();
  }

  /** Bytes from offset `from` (clamped to what is kept) to the end. */
  read(from = 0): { start: number; data: Uint8Array } {
    const start = Math.max(from, this.#start);
    const out = new Uint8Array(Math.max(0, this.end - start));
    let pos = this.#start, o = 0;
    for (const c of this.#chunks) {
      const skip = Math.max(0, start - pos);
      if (skip < c.length) {
        out.set(c.subarray(skip), o);
        o += c.length - skip;
      }
      pos += c.length;
    }
    return { start, data: out };
  }

  /** No more output (the container exited, was deleted or moved): followers end. */
  close(): void {
    this.#closed = true;
    this.#wake();
  }

  /** Everything from `from`, then new output as it comes, until `close()` or the signal aborts. */
  async *follow(from = 0, signal?: AbortSignal): AsyncGenerator<Uint8Array> {
    let next = from;
    for (;;) {
      const { start, data } = this.read(next);
      if (data.length > 0) yield data;
      next = start + data.length;
      if (this.#closed || signal?.aborted) return;
      // One listener and one waiter per wait, both gone once it ends: a long follow must not pile
      // up abort listeners on the signal, nor an aborted one stay in the waiters.
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#waiters.delete(done);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        this.#waiters.add(done);
        signal?.addEventListener("abort", done);
      });
    }
  }

  #wake(): void {
    for (const f of [...this.#waiters]) f();
  }
}
