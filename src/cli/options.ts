// Parsing of option values shared by the commands.
import { UsageError } from "../errors.ts";

import type { DirSpec } from "../api/machine.ts";

export type { DirSpec };

/** `--dir HOST[::GUEST]` as in wasmtime's CLI: GUEST defaults to HOST. */
export function parseDir(spec: string): DirSpec {
  const i = spec.indexOf("::");
  const host = i < 0 ? spec : spec.slice(0, i);
  const guest = i < 0 ? spec : spec.slice(i + 2);
  if (host === "" || guest === "") throw new UsageError(`--dir "${spec}": expected HOST or HOST::GUEST`);
  return { host, guest };
}

/** `--env K=V`. */
export function parseEnv(spec: string): string {
  const i = spec.indexOf("=");
  if (i <= 0) throw new UsageError(`--env "${spec}": expected NAME=VALUE`);
  return spec;
}

export function parseCount(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag} "${value}": expected a non-negative whole number`);
  return Number(value);
}

/** `--max-memory SIZE` (bytes, or with K, M, G): in 64 KiB pages, at least one, at most wasm32's 4 GiB. */
export function parseMemorySize(spec: string): number {
  const m = /^(\d+)([KMG]?)i?B?$/i.exec(spec.trim());
  if (!m) throw new UsageError(`--max-memory "${spec}": expected a size like 65536, 64M or 2G`);
  const unit = { "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase() as "" | "K" | "M" | "G"];
  const pages = Math.floor((Number(m[1]) * unit) / 65536);
  if (pages < 1 || pages > 65536) throw new UsageError(`--max-memory "${spec}": must be between 64K and 4G`);
  return pages;
}

export const collect = <T>(parse: (s: string) => T) => (value: string, prev: T[] = []) => [...prev, parse(value)];

export interface CheckpointSpec {
  afterMs?: number;
  afterYields?: number;
  file?: string;
  leaveRunning: boolean;
  /** Write an incremental image against this one. */
  parent?: string;
  compress: boolean;
}

/** Checks the --checkpoint-* flags go together. */
export function checkpointSpec(o: {
  checkpointAfter?: string;
  checkpointAfterYields?: string;
  checkpointFile?: string;
  leaveRunning?: boolean;
  parent?: string;
  compress?: boolean;
}): CheckpointSpec {
  const spec: CheckpointSpec = { leaveRunning: !!o.leaveRunning, compress: !!o.compress };
  if (o.checkpointAfter !== undefined) spec.afterMs = parseCount("--checkpoint-after", o.checkpointAfter);
  if (o.checkpointAfterYields !== undefined) spec.afterYields = parseCount("--checkpoint-after-yields", o.checkpointAfterYields);
  const when = spec.afterMs !== undefined || spec.afterYields !== undefined;
  if (when && !o.checkpointFile) throw new UsageError("--checkpoint-after needs --checkpoint-file PATH");
  if (!when && o.checkpointFile) throw new UsageError("--checkpoint-file needs --checkpoint-after MS");
  if (!when && spec.leaveRunning) throw new UsageError("--leave-running needs --checkpoint-after MS");
  if (!when && (o.parent !== undefined || o.compress)) throw new UsageError("--parent and --compress need --checkpoint-after MS");
  if (o.checkpointFile) spec.file = o.checkpointFile;
  if (o.parent !== undefined) spec.parent = o.parent;
  return spec;
}
