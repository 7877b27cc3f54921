// Small binaryen.js IR helpers: generic child enumeration with setters (so
// nodes can be replaced in their parent) and a pre-order walker. binaryen is
// passed in (it is loaded lazily), and the tables built from it live in the
// returned object, not in module state.
import type binaryen from "binaryen";
import { ModuleError } from "../errors.ts";

export type Expr = number;
export type FuncRef = number;
export type Type = number;
export type Module = binaryen.Module;

/** binaryen.js's expression wrapper classes and raw C API entry points we use (not in its typings). */
interface Extras {
  Loop: { getName(e: Expr): string; setName(e: Expr, n: string): void; getBody(e: Expr): Expr; setBody(e: Expr, b: Expr): void };
  Block: { getChildAt(e: Expr, i: number): Expr };
  Call: { getTarget(e: Expr): string; getOperands(e: Expr): Expr[] };
  CallIndirect: {
    getTarget(e: Expr): Expr;
    getOperands(e: Expr): Expr[];
    getTable(e: Expr): string;
    getParams(e: Expr): Type;
    getResults(e: Expr): Type;
  };
  Function: { getBody(f: FuncRef): Expr; setBody(f: FuncRef, b: Expr): void };
  Return: { getValue(e: Expr): Expr; setValue(e: Expr, v: Expr): void };
  GlobalGet: { getName(e: Expr): string };
  GlobalSet: { getName(e: Expr): string };
  Binary: { getOp(e: Expr): number; getLeft(e: Expr): Expr; getRight(e: Expr): Expr };
  Unary: { getOp(e: Expr): number; getValue(e: Expr): Expr };
  Select: { getCondition(e: Expr): Expr; setCondition(e: Expr, c: Expr): void };
  Const: { getValueI32(e: Expr): number };
  _BinaryenFunctionAddVar(f: FuncRef, type: Type): number;
}
export type Binaryen = typeof binaryen & Extras;

/** Puts a new expression in place of the visited one. */
export type Replace = (e: Expr) => void;
/** Return false to skip the children of `e`. */
export type Visit = (e: Expr, id: number, replace: Replace) => boolean | void;

export interface Ir {
  B: Binaryen;
  /** Pre-order walk; `rootReplace` is what `replace` does for the root. */
  walk(root: Expr, visit: Visit, rootReplace?: Replace): void;
  /** Children of an expression, in evaluation order. */
  children(e: Expr): Expr[];
}

// [field, array setter suffix?]; order = wasm evaluation order (matters only for cost estimates).
const SLOTS: Record<string, Array<[string, string?]>> = {
  Block: [["children", "ChildAt"]], If: [["condition"], ["ifTrue"], ["ifFalse"]], Loop: [["body"]],
  Break: [["value"], ["condition"]], Switch: [["value"], ["condition"]],
  Call: [["operands", "OperandAt"]], CallIndirect: [["operands", "OperandAt"], ["target"]],
  LocalSet: [["value"]], GlobalSet: [["value"]], Load: [["ptr"]], Store: [["ptr"], ["value"]],
  Unary: [["value"]], Binary: [["left"], ["right"]], Select: [["ifTrue"], ["ifFalse"], ["condition"]],
  Drop: [["value"]], Return: [["value"]], MemoryGrow: [["delta"]],
  AtomicRMW: [["ptr"], ["value"]], AtomicCmpxchg: [["ptr"], ["expected"], ["replacement"]],
  AtomicWait: [["ptr"], ["expected"], ["timeout"]], AtomicNotify: [["ptr"], ["notifyCount"]],
  SIMDExtract: [["vec"]], SIMDReplace: [["vec"], ["value"]], SIMDShuffle: [["left"], ["right"]],
  SIMDTernary: [["a"], ["b"], ["c"]], SIMDShift: [["vec"], ["shift"]], SIMDLoad: [["ptr"]],
  SIMDLoadStoreLane: [["ptr"], ["vec"]], MemoryInit: [["dest"], ["offset"], ["size"]],
  MemoryCopy: [["dest"], ["source"], ["size"]], MemoryFill: [["dest"], ["value"], ["size"]],
  RefIsNull: [["value"]], TableGet: [["index"]], TupleMake: [["operands", "OperandAt"]], TupleExtract: [["tuple"]],
  Nop: [], Unreachable: [], LocalGet: [], GlobalGet: [], Const: [], MemorySize: [], AtomicFence: [],
  DataDrop: [], RefNull: [], RefFunc: [], TableSize: [], Pop: [],
};

interface Slot {
  arr: boolean;
  get: (e: Expr) => Expr | Expr[];
  set: (e: Expr, a: Expr | number, b?: Expr) => void;
}

const cap = (s: string) => s[0]!.toUpperCase() + s.slice(1);

/** Builds the walker for this binaryen instance. */
export function makeIr(B: Binaryen): Ir {
  const api = B as unknown as Record<string, Record<string, unknown> | number | undefined>;
  const table = new Map<number, { name: string; slots: Slot[] }>();
  for (const [k, slots] of Object.entries(SLOTS)) {
    const cls = api[k] as Record<string, (...a: number[]) => unknown> | undefined;
    const id = api[k + "Id"];
    if (typeof id !== "number") continue;
    table.set(id, {
      name: k,
      slots: slots.map(([f, arr]) => ({
        arr: !!arr,
        get: cls?.["get" + cap(f)] as Slot["get"],
        set: (arr ? cls?.["set" + arr] : cls?.["set" + cap(f)]) as Slot["set"],
      })),
    });
  }
  const unhandled = (id: number): never => {
    // validate.ts refuses these before binaryen runs; this is the backstop
    throw new ModuleError(`crvm cannot instrument expression kind ${kindName(B, id)}`);
  };

  const noRootReplace: Replace = () => {
    throw new Error("walk: replacing the root needs a rootReplace");
  };

  function walk(root: Expr, visit: Visit, rootReplace: Replace = noRootReplace): void {
    const stack: Array<[Expr, Replace]> = [[root, rootReplace]];
    while (stack.length) {
      const [e, rep] = stack.pop()!;
      if (!e) continue;
      const id = B.getExpressionId(e);
      const k = table.get(id) ?? unhandled(id);
      if (visit(e, id, rep) === false) continue;
      for (let s = k.slots.length - 1; s >= 0; s--) {
        const sl = k.slots[s]!;
        if (sl.arr) {
          const kids = sl.get(e) as Expr[];
          for (let i = kids.length - 1; i >= 0; i--) stack.push([kids[i]!, (n) => sl.set(e, i, n)]);
        } else {
          const c = sl.get(e) as Expr;
          if (c) stack.push([c, (n) => sl.set(e, n)]);
        }
      }
    }
  }

  function children(e: Expr): Expr[] {
    const id = B.getExpressionId(e);
    const k = table.get(id) ?? unhandled(id);
    const out: Expr[] = [];
    for (const sl of k.slots) {
      if (sl.arr) out.push(...(sl.get(e) as Expr[]));
      else {
        const c = sl.get(e) as Expr;
        if (c) out.push(c);
      }
    }
    return out;
  }

  return { B, walk, children };
}

/** The name of an expression id, from binaryen's `_Binaryen<Kind>Id()` entry points. */
function kindName(B: Binaryen, id: number): string {
  for (const [k, v] of Object.entries(B as unknown as Record<string, unknown>)) {
    const m = /^_Binaryen(\w+)Id$/.exec(k);
    if (m && typeof v === "function" && (v as () => number)() === id) return m[1]!;
  }
  return `#${id}`;
}

/** `name`, or `name` with a numeric suffix, that is not a function of `m` yet. */
export function freshFunctionName(m: Module, name: string): string {
  let n = name;
  for (let i = 1; m.getFunction(n); i++) n = `${name}${i}`;
  return n;
}
