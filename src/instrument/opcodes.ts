// Instruction decoding: skips every instruction's immediates and records the first one crvm refuses
// (table mutation, exception handling, anything it does not know), plus the features the code uses.
import type { Finding, Summary } from "./binary.ts";
import type { Reader } from "./reader.ts";

export function constExpr(r: Reader, s: Summary): void {
  for (;;) {
    const op = r.byte();
    if (op === 0x0b) return;
    // i32/i64 add, sub, mul in a constant expression: the extended-const proposal
    if (op === 0x6a || op === 0x6b || op === 0x6c || op === 0x7c || op === 0x7d || op === 0x7e) s.features.add("extended-const");
    instr(r, op, s, -1);
  }
}

export function scanBody(r: Reader, s: Summary, func: number): void {
  for (let n = r.u32(); n > 0; n--) { r.u32(); r.valType(); } // locals
  // Nesting depth as a self-check: a body decoded right ends with its own `end` on its last byte.
  let depth = 0;
  while (r.pos < r.end && !s.finding) {
    const op = r.byte();
    if (op >= 0x02 && op <= 0x04) depth++;
    else if (op === 0x0b) depth--;
    instr(r, op, s, func);
  }
  if (!s.finding && (depth !== -1 || r.pos !== r.end)) s.finding = { op: "code crvm could not decode", what: "unknown", func };
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
