// A small reader for the WebAssembly binary format: just enough to validate a
// module for crvm *before* binaryen sees it (binaryen is slow to load and
// prints to stderr on bad input) and to trim its custom sections.
//
// It trusts the structure (the engine validates the same bytes; a truncated
// module throws RangeError here and gets the engine's message instead) and
// only has to know every instruction's immediates (opcodes.ts). An opcode it
// does not know (GC, stringref, stack switching, ...) is reported, not
// skipped: crvm cannot instrument what it cannot read.
import { constExpr, scanBody } from "./opcodes.ts";
import { Reader } from "./reader.ts";
import type { Limits, ValType } from "./reader.ts";
import { concatBytes } from "../bytes.ts";

export type { Limits, ValType } from "./reader.ts";

export interface FuncType {
  params: ValType[];
  results: ValType[];
}

export type ExternKind = "func" | "table" | "memory" | "global" | "tag";

export interface Import {
  module: string;
  name: string;
  kind: ExternKind;
  /** func: its type index. */
  type: number;
  /** memory: its limits. */
  limits: Limits | null;
}

export interface Export {
  name: string;
  kind: ExternKind;
  index: number;
}

/** The first instruction that crvm refuses, with where it was found. */
export interface Finding {
  /** A short name: "table.set", "try", "opcode 0xfb 0x01", ... */
  op: string;
  /** "table" (mutates the table), "eh" (exception handling) or "unknown". */
  what: "table" | "eh" | "unknown";
  /** Function index (imports included); -1 outside functions. */
  func: number;
  /** Where it is when not in a function ("a constant expression", "the type section"). */
  where?: string;
}

export interface Summary {
  types: Array<FuncType | null>; // null: a non-function (GC) type
  imports: Import[];
  memories: Limits[]; // defined (not imported) memories
  tables: number; // defined tables
  globals: Array<{ type: ValType; mutable: boolean }>; // defined globals
  exports: Export[];
  funcTypes: number[]; // type index of every function, imports first
  hasTags: boolean;
  /** Features the code uses beyond the MVP that binaryen must be told about. */
  features: Set<"simd" | "relaxed-simd" | "atomics" | "extended-const">;
  finding: Finding | null;
  /** Function names from the name section, for messages only. */
  funcNames: Map<number, string>;
  globalNames: Map<number, string>;
}

const KINDS: ExternKind[] = ["func", "table", "memory", "global", "tag"];

/** Section boundaries, in file order. `name` is set for custom sections. */
export interface Section {
  id: number;
  start: number; // first byte of the section header (the id)
  bodyStart: number;
  end: number;
  name: string | null;
}

export function sections(bytes: Uint8Array): Section[] {
  const out: Section[] = [];
  const r = new Reader(bytes, 8);
  while (r.pos < bytes.length) {
    const start = r.pos;
    const id = r.byte();
    const size = r.u32();
    const bodyStart = r.pos;
    const end = bodyStart + size;
    let name: string | null = null;
    if (id === 0) name = new Reader(bytes, bodyStart, end).name();
    out.push({ id, start, bodyStart, end, name });
    r.pos = end;
  }
  return out;
}

/** Reads everything crvm checks before instrumenting. Throws RangeError on truncated input. */
export function summarize(bytes: Uint8Array): Summary {
  const s: Summary = {
    types: [], imports: [], memories: [], tables: 0, globals: [], exports: [], funcTypes: [],
    hasTags: false, features: new Set(), finding: null, funcNames: new Map(), globalNames: new Map(),
  };
  let importedFuncs = 0;
  for (const sec of sections(bytes)) {
    const r = new Reader(bytes, sec.bodyStart, sec.end);
    switch (sec.id) {
      case 0:
        if (sec.name === "name") readNames(bytes, sec, s);
        break;
      case 1: // type
        for (let n = r.u32(); n > 0; n--) {
          const form = r.byte();
          if (form !== 0x60) { s.types.push(null); s.finding ??= { op: "GC type definitions", what: "unknown", func: -1, where: "the type section" }; break; }
          const params = Array.from({ length: r.u32() }, () => r.valType());
          const results = Array.from({ length: r.u32() }, () => r.valType());
          s.types.push({ params, results });
        }
        break;
      case 2: // import
        for (let n = r.u32(); n > 0; n--) {
          const module = r.name();
          const name = r.name();
          const kind = KINDS[r.byte()] ?? "tag";
          let type = -1;
          let limits: Limits | null = null;
          if (kind === "func") { type = r.u32(); s.funcTypes.push(type); importedFuncs++; }
          else if (kind === "table") { r.valType(); r.limits(); }
          else if (kind === "memory") limits = r.limits();
          else if (kind === "global") { r.valType(); r.byte(); }
          else { r.byte(); r.u32(); }
          s.imports.push({ module, name, kind, type, limits });
        }
        break;
      case 3: // function
        for (let n = r.u32(); n > 0; n--) s.funcTypes.push(r.u32());
        break;
      case 4: // table
        s.tables = r.u32();
        break;
      case 5: // memory
        for (let n = r.u32(); n > 0; n--) s.memories.push(r.limits());
        break;
      case 6: // global
        for (let n = r.u32(); n > 0; n--) {
          const type = r.valType();
          const mutable = r.byte() === 1;
          s.globals.push({ type, mutable });
          constExpr(r, s);
        }
        break;
      case 7: // export
        for (let n = r.u32(); n > 0; n--) {
          const name = r.name();
          const kind = KINDS[r.byte()] ?? "tag";
          s.exports.push({ name, kind, index: r.u32() });
        }
        break;
      case 13: // tag
        s.hasTags = true;
        break;
      case 10: // code
        for (let n = r.u32(), i = 0; i < n; i++) {
          const size = r.u32();
          const end = r.pos + size;
          if (!s.finding) scanBody(new Reader(bytes, r.pos, end), s, importedFuncs + i);
          r.pos = end;
        }
        break;
    }
  }
  return s;
}

function readNames(bytes: Uint8Array, sec: Section, s: Summary): void {
  try {
    const r = new Reader(bytes, sec.bodyStart, sec.end);
    r.name();
    while (r.pos < sec.end) {
      const id = r.byte();
      const size = r.u32();
      const end = r.pos + size;
      if (id === 1 || id === 7) {
        const map = id === 1 ? s.funcNames : s.globalNames;
        for (let n = r.u32(); n > 0; n--) { const i = r.u32(); map.set(i, r.name()); }
      }
      r.pos = end;
    }
  } catch {
    // names are only for messages; a malformed name section is ignored (as engines do)
  }
}

/**
 * The module without custom sections, except `target_features` (binaryen
 * reads the enabled features from it) and a name section reduced to global
 * names (they become the `crvm_g:<name>` export names). Function names are
 * dropped on purpose: Asyncify's only-list is a comma-separated list of names,
 * and C++/Go/Rust names can contain commas, brackets and `@`; by-index names
 * cannot. Debug info would be wrong after the transform anyway.
 */
export function trimCustomSections(bytes: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [bytes.subarray(0, 8)];
  for (const sec of sections(bytes)) {
    if (sec.id !== 0 || sec.name === "target_features") parts.push(bytes.subarray(sec.start, sec.end));
    else if (sec.name === "name") {
      const g = globalNamesOnly(bytes, sec);
      if (g) parts.push(g);
    }
  }
  let len = 0;
  for (const p of parts) len += p.length;
  const out = new Uint8Array(len);
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

function globalNamesOnly(bytes: Uint8Array, sec: Section): Uint8Array | null {
  try {
    const r = new Reader(bytes, sec.bodyStart, sec.end);
    r.name();
    while (r.pos < sec.end) {
      const at = r.pos;
      const id = r.byte();
      const size = r.u32();
      if (id === 7) {
        const sub = bytes.subarray(at, r.pos + size);
        const body = concatBytes([encodeName("name"), sub]);
        return concatBytes([Uint8Array.of(0), leb(body.length), body]);
      }
      r.pos += size;
    }
  } catch {
    // a malformed name section is dropped
  }
  return null;
}

/** Unsigned LEB128, as the binary format writes sizes, counts and indices. */
export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function leb(n: number): Uint8Array {
  return Uint8Array.from(uleb(n));
}

function encodeName(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  return concatBytes([leb(b.length), b]);
}
