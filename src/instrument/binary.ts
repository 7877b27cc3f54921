// A small reader for the WebAssembly binary format: just enough to validate a
// module for crvm *before* binaryen sees it (binaryen is slow to load and
// prints to stderr on bad input) and to trim its custom sections.
//
// The engine has already validated the bytes (`WebAssembly.validate`), so this
// reader trusts the structure and only has to know every instruction's
// immediates. An opcode it does not know (GC, stringref, stack switching, ...)
// is reported, not skipped: crvm cannot instrument what it cannot read.

/** A value type as crvm names it ("i32", "i64", "f32", "f64", "v128", "funcref", "externref", "ref"). */
export type ValType = string;

export interface FuncType {
  params: ValType[];
  results: ValType[];
}

export interface Limits {
  min: number;
  max: number | null;
  shared: boolean;
  is64: boolean;
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
  /** Function index (imports included). */
  func: number;
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
const utf8 = new TextDecoder("utf-8", { fatal: false });

class Reader {
  pos: number;
  constructor(readonly b: Uint8Array, pos = 0, readonly end = b.length) {
    this.pos = pos;
  }
  byte(): number {
    if (this.pos >= this.end) throw new RangeError("unexpected end of section");
    return this.b[this.pos++]!;
  }
  u32(): number {
    let r = 0;
    let shift = 0;
    for (;;) {
      const x = this.byte();
      r += (x & 0x7f) * 2 ** shift;
      if (!(x & 0x80)) return r;
      shift += 7;
    }
  }
  /** Signed LEB (any width) as a JS number; exact for the small values we need (type indices, valtypes). */
  sleb(): number {
    let r = 0;
    let shift = 0;
    let x: number;
    do {
      x = this.byte();
      r += (x & 0x7f) * 2 ** shift;
      shift += 7;
    } while (x & 0x80);
    return x & 0x40 ? r - 2 ** shift : r;
  }
  skipLeb(): void {
    while (this.byte() & 0x80);
  }
  skip(n: number): void {
    this.pos += n;
  }
  name(): string {
    const n = this.u32();
    const s = utf8.decode(this.b.subarray(this.pos, this.pos + n));
    this.pos += n;
    return s;
  }
  valType(): ValType {
    const t = this.sleb();
    switch (t) {
      case -1: return "i32";
      case -2: return "i64";
      case -3: return "f32";
      case -4: return "f64";
      case -5: return "v128";
      case -16: return "funcref";
      case -17: return "externref";
      case -28: // (ref ht)
      case -29: // (ref null ht)
        this.sleb();
        return "ref";
      default: return "ref";
    }
  }
  limits(): Limits {
    const flags = this.u32();
    const min = this.u32();
    const max = flags & 1 ? this.u32() : null;
    return { min, max, shared: (flags & 2) !== 0, is64: (flags & 4) !== 0 };
  }
}

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
          if (form !== 0x60) { s.types.push(null); s.finding ??= { op: "GC type definitions", what: "unknown", func: -1 }; break; }
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
        const body = concat([encodeName("name"), sub]);
        return concat([Uint8Array.of(0), leb(body.length), body]);
      }
      r.pos += size;
    }
  } catch {
    // a malformed name section is dropped
  }
  return null;
}

function leb(n: number): Uint8Array {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Uint8Array.from(out);
}

function encodeName(s: string): Uint8Array {
  const b = new TextEncoder().encode(s);
  return concat([leb(b.length), b]);
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) { out.set(p, off); off += p.length; }
  return out;
}

// ------------------------------------------------------------------ instructions

function constExpr(r: Reader, s: Summary): void {
  for (;;) {
    const op = r.byte();
    if (op === 0x0b) return;
    // i32/i64 add, sub, mul in a constant expression: the extended-const proposal
    if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d || op === 0x7e) s.features.add("extended-const");
    instr(r, op, s, -1);
  }
}

function scanBody(r: Reader, s: Summary, func: number): void {
  for (let n = r.u32(); n > 0; n--) { r.u32(); r.valType(); } // locals
  while (r.pos < r.end && !s.finding) instr(r, r.byte(), s, func);
}

function blockType(r: Reader): void {
  const t = r.sleb();
  if (t === -28 || t === -29) r.sleb();
}

function memarg(r: Reader): void {
  const align = r.u32();
  if (align & 0x40) r.u32(); // multi-memory: explicit memory index
  r.skipLeb();
}

const EH_OPS: Record<number, string> = {
  0x06: "try", 0x07: "catch", 0x08: "throw", 0x09: "rethrow", 0x0a: "throw_ref",
  0x18: "delegate", 0x19: "catch_all", 0x1f: "try_table",
};
const TABLE_MISC: Record<number, string> = {
  12: "table.init", 13: "elem.drop", 14: "table.copy", 15: "table.grow", 17: "table.fill",
};

/** Decodes one instruction's immediates (the opcode byte is already read); records the first refused one. */
function instr(r: Reader, op: number, s: Summary, func: number): void {
  const refuse = (name: string, what: Finding["what"]) => { s.finding ??= { op: name, what, func }; };
  if ((op >= 0x45 && op <= 0xc4) || op <= 0x01 || op === 0x05 || op === 0x0b || op === 0x0f ||
      op === 0x1a || op === 0x1b || op === 0xd1) return;
  if (EH_OPS[op]) return refuse(EH_OPS[op]!, "eh");
  switch (op) {
    case 0x02: case 0x03: case 0x04: return blockType(r);
    case 0x0c: case 0x0d: case 0x10: case 0x20: case 0x21: case 0x22: case 0x23: case 0x24:
    case 0x25: case 0x3f: case 0x40: case 0xd2:
      r.u32();
      return;
    case 0x0e: // br_table
      for (let n = r.u32(); n >= 0; n--) r.u32();
      return;
    case 0x11: r.u32(); r.u32(); return;
    // Asyncify cannot instrument tail calls (binaryen: "tail calls not yet supported")
    case 0x12: return refuse("return_call", "unknown");
    case 0x13: return refuse("return_call_indirect", "unknown");
    case 0x14: case 0x15: return refuse("call_ref", "unknown");
    case 0xd4: case 0xd5: case 0xd6: return refuse("typed function references", "unknown");
    case 0x1c: for (let n = r.u32(); n > 0; n--) r.valType(); return;
    case 0x26: return refuse("table.set", "table");
    case 0x41: case 0x42: r.skipLeb(); return;
    case 0x43: r.skip(4); return;
    case 0x44: r.skip(8); return;
    case 0xd0: r.sleb(); return;
    case 0xfc: return miscOp(r, r.u32(), refuse);
    case 0xfd: return simdOp(r, r.u32(), s);
    case 0xfe: return atomicOp(r, r.u32(), s);
  }
  if (op >= 0x28 && op <= 0x3e) return memarg(r);
  return refuse(`opcode 0x${op.toString(16)}`, "unknown");
}

function miscOp(r: Reader, sub: number, refuse: (name: string, what: Finding["what"]) => void): void {
  if (TABLE_MISC[sub]) return refuse(TABLE_MISC[sub]!, "table");
  if (sub <= 7) return; // saturating truncations
  switch (sub) {
    case 8: case 10: r.u32(); r.u32(); return; // memory.init, memory.copy
    case 9: case 11: case 16: r.u32(); return; // data.drop, memory.fill, table.size
  }
  return refuse(`opcode 0xfc ${sub}`, "unknown");
}

function simdOp(r: Reader, sub: number, s: Summary): void {
  s.features.add("simd");
  if (sub <= 0x0b || sub === 0x5c || sub === 0x5d) return memarg(r); // loads, store, load*_zero
  if (sub === 0x0c || sub === 0x0d) return r.skip(16); // v128.const, i8x16.shuffle
  if (sub >= 0x15 && sub <= 0x22) return r.skip(1); // extract/replace lane
  if (sub >= 0x54 && sub <= 0x5b) { memarg(r); r.skip(1); return; } // load/store lane
  if (sub >= 0x100 && sub <= 0x113) s.features.add("relaxed-simd");
  // every other SIMD opcode has no immediates
}

function atomicOp(r: Reader, sub: number, s: Summary): void {
  s.features.add("atomics");
  if (sub === 0x03) return r.skip(1); // atomic.fence
  memarg(r);
}
