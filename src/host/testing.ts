// What tests need from the machine besides a Host: a Host whose output is
// kept in memory, fresh temporary directories (and removing them), and the
// text of output bytes. Only tests import this file.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { createHost } from "./create.ts";
import type { Host } from "./types.ts";

/**
 * A host whose stdout and stderr go to memory and whose stdin is empty.
 *
 * @example
 * const { host, text } = capturingHost();
 * await (await Machine.create("hello.wasm", { host })).run();
 * text(); // what the guest printed
 */
export function capturingHost(): { host: Host; text: () => string } {
  const chunks: Uint8Array[] = [];
  const host: Host = {
    ...createHost(),
    stdio: { write: (_fd, data) => void chunks.push(data.slice()), read: () => Promise.resolve(null), isTerminal: () => false },
  };
  return { host, text: () => textOf(chunks) };
}

/** A new empty directory under the system's temporary directory. */
export function tempDir(prefix = "crvm-test-"): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Removes a file or a directory tree, if it is there. */
export function removeTree(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

/** The UTF-8 text of chunks (a character split across two chunks stays whole). */
export function textOf(chunks: Iterable<Uint8Array>): string {
  const d = new TextDecoder();
  let s = "";
  for (const c of chunks) s += d.decode(c, { stream: true });
  return s + d.decode();
}

/** Bytes of a string in UTF-8. */
export const byteLength = (s: string): number => new TextEncoder().encode(s).length;

export function toBase64(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
