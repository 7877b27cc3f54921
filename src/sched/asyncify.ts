// Driving binaryen's Asyncify from the host: unwind a task's call stack into
// bytes at a yield point, and rewind it later (in the same instance or in a
// fresh one after a restore).
//
// Asyncify needs its data buffer inside linear memory. We *borrow* guest
// memory (FINDINGS.md): save the bytes of the region, let Asyncify use it,
// copy the frames out and put the bytes back before any guest code runs. Only
// Asyncify's own epilogue/prologue code runs while the region is borrowed,
// and it touches nothing but the buffer, so the guest never sees the loan.

export const enum AsyncifyState {
  Normal = 0,
  Unwinding = 1,
  Rewinding = 2,
}

export interface AsyncifyExports {
  asyncify_start_unwind(ptr: number): void;
  asyncify_stop_unwind(): void;
  asyncify_start_rewind(ptr: number): void;
  asyncify_stop_rewind(): void;
  asyncify_get_state(): number;
}

/** Where the borrowed buffer starts: {current, end} header, then frames. */
const SCRATCH = 0;
const HEADER = 8;
/** Smallest region lent for an unwind; the stack needs at most this much unless it was seen deeper. */
const MIN_LOAN = 4 << 20;
/** Lend this many times the largest stack seen so far, so a deeper stack still fits. */
const GROWTH = 8;

/**
 * Unwind/rewind for one instance.
 *
 * @example
 * const a = new AsyncifyDriver(exports, () => memory);
 * a.startUnwind();            // inside an import
 * // ... the import returns, _start returns
 * const frames = a.finishUnwind();
 * a.startRewind(frames);      // then call _start again
 */
export class AsyncifyDriver {
  #largest = 0;
  /**
   * `scratch` holds the bytes lent to Asyncify. A VM passes one to all its
   * tasks: a loan lasts from an unwind (or rewind) start to its end, during
   * which no other task runs, so one buffer serves them all.
   */
  constructor(
    private readonly ex: AsyncifyExports,
    private readonly memory: () => WebAssembly.Memory,
    private readonly scratch: { saved: Uint8Array } = { saved: new Uint8Array(0) },
  ) {}

  get state(): AsyncifyState {
    return this.ex.asyncify_get_state();
  }

  #lend(len: number): Uint8Array {
    const mem = new Uint8Array(this.memory().buffer);
    if (this.scratch.saved.length < len) this.scratch.saved = new Uint8Array(Math.max(len, this.scratch.saved.length * 2));
    this.scratch.saved.set(mem.subarray(SCRATCH, SCRATCH + len));
    return mem;
  }
  #giveBack(len: number): void {
    new Uint8Array(this.memory().buffer).set(this.scratch.saved.subarray(0, len), SCRATCH);
  }

  /** Begins unwinding; call from inside an Asyncify import, which must then return. */
  startUnwind(): void {
    const size = this.memory().buffer.byteLength;
    const loan = Math.min(size - SCRATCH, Math.max(MIN_LOAN, GROWTH * (this.#largest + HEADER)));
    const mem = this.#lend(loan);
    const dv = new DataView(mem.buffer);
    dv.setUint32(SCRATCH, SCRATCH + HEADER, true);
    dv.setUint32(SCRATCH + 4, SCRATCH + loan, true);
    this.ex.asyncify_start_unwind(SCRATCH);
  }

  /** After the export returned while unwinding: the frames, with guest memory as it was. */
  finishUnwind(): Uint8Array {
    this.ex.asyncify_stop_unwind();
    const mem = new Uint8Array(this.memory().buffer);
    const end = new DataView(mem.buffer).getUint32(SCRATCH, true);
    const frames = mem.slice(SCRATCH + HEADER, end);
    this.#giveBack(end - SCRATCH);
    if (frames.length > this.#largest) this.#largest = frames.length;
    return frames;
  }

  /** Lays out `frames` and starts rewinding; then call the export again. */
  startRewind(frames: Uint8Array): void {
    const len = HEADER + frames.length;
    const mem = this.#lend(len);
    mem.set(frames, SCRATCH + HEADER);
    const dv = new DataView(mem.buffer);
    dv.setUint32(SCRATCH, SCRATCH + len, true);
    dv.setUint32(SCRATCH + 4, SCRATCH + len, true);
    this.#loanLen = len;
    if (frames.length > this.#largest) this.#largest = frames.length;
    this.ex.asyncify_start_rewind(SCRATCH);
  }
  #loanLen = 0;

  /** Called by the import the rewind arrived at: ends the rewind and returns the borrowed bytes. */
  finishRewind(): void {
    this.ex.asyncify_stop_rewind();
    this.#giveBack(this.#loanLen);
  }
}
