// WebAssembly text -> binary through jco (wasm-tools compiled to wasm). jco is
// large: it is loaded only when a .wat is actually given.
import { ModuleError } from "../errors.ts";

/**
 * Converts WebAssembly text to a binary module. A syntax error is a
 * `ModuleError` naming `name`, the position and jco's message.
 *
 * @example
 * const wasm = await watToWasm('(module (func (export "_start")))', "t.wat");
 */
export async function watToWasm(text: string, name: string): Promise<Uint8Array> {
  const { parse } = await import("@bytecodealliance/jco");
  try {
    return await parse(text);
  } catch (e) {
    throw new ModuleError(`${name} is not valid WebAssembly text: ${jcoMessage(e)}`);
  }
}

/**
 * jco reports wasm-tools' error as its Rust debug form, e.g.
 * `Error { kind: Wast(Error { inner: ErrorInner { text: Some(Text { line: 2, col: 3, ... }), ...,
 * kind: Custom("unknown operator or unexpected token") } }) }`; keep the position and the message.
 */
export function jcoMessage(e: unknown): string {
  const raw = e instanceof Error ? e.message : String(e);
  const pos = /\bline: (\d+), col: (\d+)/.exec(raw);
  const msg = /kind: Custom\("((?:[^"\\]|\\.)*)"\)/.exec(raw)?.[1]?.replace(/\\(.)/g, "$1");
  if (msg) return pos ? `line ${+pos[1]! + 1}, column ${+pos[2]! + 1}: ${msg}` : msg;
  const line = (raw.split("\n", 1)[0] ?? "").trim() || "parse error";
  return line.length > 300 ? line.slice(0, 300) + "…" : line;
}

/** True when `bytes` looks like WebAssembly text: no NUL bytes, and the first token is `(` or a `;;` comment. */
export function looksLikeWat(bytes: Uint8Array): boolean {
  const head = bytes.subarray(0, 4096);
  if (head.includes(0)) return false;
  const t = new TextDecoder().decode(head).replace(/^\uFEFF/, "").trimStart();
  return t.startsWith("(") || t.startsWith(";;");
}
