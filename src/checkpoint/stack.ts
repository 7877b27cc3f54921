// The unwound call stack of a suspended task and the call it is suspended
// in (with what it waits for and its saved state).
import { SnapshotError } from "../errors.ts";
import type { Pending } from "../sched/task.ts";
import type { CallState } from "../wasi/context.ts";
import type { PendingRecord } from "../snapshot/mod.ts";

/** `ready`: the task may run at once (its wait is over, or it was stopped between two calls): it is recorded as yielded. */
export function dumpPending(p: Pending, ready = false): PendingRecord {
  const rec: PendingRecord = { call: p.call };
  if (p.wait.untilNs !== undefined) rec.untilNs = p.wait.untilNs.toString();
  if (p.wait.fds?.length) rec.fds = p.wait.fds;
  if (p.wait.yield || ready) rec.yield = true;
  if (p.wait.freeze) rec.freeze = true;
  if (p.wait.join !== undefined) rec.join = p.wait.join;
  if (p.state !== undefined) rec.state = p.state;
  return rec;
}

export function restorePending(rec: PendingRecord, what: string): Pending {
  if (typeof rec?.call !== "string") throw new SnapshotError(`${what}: bad pending call`);
  const p: Pending = { call: rec.call, wait: {}, state: rec.state as CallState | undefined };
  if (rec.untilNs !== undefined) p.wait.untilNs = BigInt(rec.untilNs);
  if (rec.fds) p.wait.fds = rec.fds;
  if (rec.yield) p.wait.yield = true;
  if (rec.freeze) p.wait.freeze = true;
  if (rec.join !== undefined) p.wait.join = rec.join;
  return p;
}
