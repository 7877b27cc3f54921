// Fuel checks, inserted before Asyncify (own IR walk):
//   - every loop header, as a *trampoline*: the loop branches out to a yield call placed outside its body
//     and re-enters the header, so Asyncify leaves the loop body unguarded;
//   - function entries only where needed to break call cycles (recursive SCCs of call sites not inside a
//     loop, "scc2"), plus an entry check where a check-free prefix would exceed ENTRY_BUDGET static
//     instructions (latency.ts);
//   - counter "hybrid": a local copy of the fuel global in functions with tight loops, written back before
//     calls and returns; the global elsewhere.
// A check is `fuel -= 1; if (fuel < 0) crvm.yield(-1)`.
import { canYieldSet } from "./callgraph.ts";
import type { CallGraph, FuncInfo } from "./callgraph.ts";
import type { Expr, Ir, Module, Type } from "./ir.ts";
import { budgetedEntries } from "./latency.ts";

/** The argument of crvm.yield for a fuel yield. */
export const FUEL_TAG = -1;
/** Initial value: a module run without a host that refills is not interrupted for 2^31 checks. */
export const FUEL_INITIAL = 0x7fffffff;

export interface FuelNames {
  /** Internal name of the i32 fuel global. */
  global: string;
  /** Internal name of the crvm.yield import. */
  yieldFn: string;
}

export interface FuelStats {
  loops: number;
  entries: number;
  budgetEntries: number;
  localFuncs: number;
  syncedCalls: number;
}

/**
 * Inserts the checks; returns the functions that contain one. `onFunc` is
 * called after each instrumented function (for progress).
 */
export function insertFuelChecks(
  ir: Ir, m: Module, cg: CallGraph, names: FuelNames, stats: FuelStats,
  onFunc: (done: number, total: number) => void = () => {},
): Set<string> {
  const extra = budgetedEntries(ir, cg);
  stats.budgetEntries = extra.size;
  const needsEntry = (f: FuncInfo) => cg.recursiveUnchecked.has(f.name) || extra.has(f.name);
  const fuelFuncs = new Set<string>();
  for (const f of cg.funcs.values()) if (f.loops > 0 || needsEntry(f)) fuelFuncs.add(f.name);
  // functions whose call may change the fuel global (contain a check, or reach one)
  const fuelUsers = canYieldSet(cg, fuelFuncs);
  let done = 0;
  onFunc(0, fuelFuncs.size);
  for (const f of cg.funcs.values()) {
    if (!fuelFuncs.has(f.name)) continue;
    insertFuel(ir, m, f, { entry: needsEntry(f), cg, fuelUsers, names, stats });
    onFunc(++done, fuelFuncs.size);
  }
  return fuelFuncs;
}

interface Ctx {
  entry: boolean;
  cg: CallGraph;
  fuelUsers: Set<string>;
  names: FuelNames;
  stats: FuelStats;
}

function insertFuel(ir: Ir, m: Module, f: FuncInfo, { entry, cg, fuelUsers, names, stats }: Ctx): void {
  const B = ir.B;
  const mayTouchFuel = (e: Expr, id: number): boolean => {
    if (id === B.CallId) return fuelUsers.has(B.Call.getTarget(e));
    if (id === B.CallIndirectId) {
      const sig = `${B.CallIndirect.getParams(e)}:${B.CallIndirect.getResults(e)}`;
      return (cg.bySig.get(sig) ?? []).some((n) => fuelUsers.has(n));
    }
    return false;
  };
  // "hybrid": cache the counter in a local only if some loop of f is "tight" (its body calls no function
  // that uses fuel), i.e. where the per-iteration saving beats the sync cost around calls and at exits.
  const touchesFuel = (root: Expr) => {
    let t = false;
    ir.walk(root, (x, id) => {
      if (t) return false;
      t = mayTouchFuel(x, id);
    });
    return t;
  };
  const fref = f.ref;
  let useLocal = false;
  if (f.loops > 0) {
    ir.walk(B.Function.getBody(fref), (e, id) => {
      if (useLocal) return false;
      if (id === B.LoopId && !touchesFuel(B.Loop.getBody(e))) useLocal = true;
    });
  }
  const addVar = (type: Type) => B._BinaryenFunctionAddVar(fref, type);
  const lf = useLocal ? addVar(B.i32) : -1;
  if (useLocal) stats.localFuncs++;
  const tmps = new Map<Type, number>();
  const tmp = (type: Type) => {
    let v = tmps.get(type);
    if (v === undefined) tmps.set(type, (v = addVar(type)));
    return v;
  };

  const G = names.global;
  const gget = () => m.global.get(G, B.i32);
  const writeBack = () => m.global.set(G, m.local.get(lf, B.i32));
  const reload = () => m.local.set(lf, gget());
  // condition that is true when we must yield, after the decrement (pre)
  const cond = (): { pre: Expr[]; c: Expr } => {
    if (useLocal) return { pre: [], c: m.i32.lt_s(m.local.tee(lf, m.i32.sub(m.local.get(lf, B.i32), m.i32.const(1)), B.i32), m.i32.const(0)) };
    return { pre: [m.global.set(G, m.i32.sub(gget(), m.i32.const(1)))], c: m.i32.lt_s(gget(), m.i32.const(0)) };
  };
  const yieldCall = () => useLocal
    ? m.block(null, [writeBack(), m.call(names.yieldFn, [m.i32.const(FUEL_TAG)], B.none), reload()], B.none)
    : m.call(names.yieldFn, [m.i32.const(FUEL_TAG)], B.none);
  const inlineCheck = () => { const { pre, c } = cond(); return m.block(null, [...pre, m.if(c, yieldCall())], B.none); };

  // collect nodes
  const loops: Expr[] = [];
  const calls: Array<[Expr, number, (e: Expr) => void]> = [];
  const rets: Array<[Expr, (e: Expr) => void]> = [];
  ir.walk(B.Function.getBody(fref), (e, id, rep) => {
    if (id === B.LoopId) loops.push(e);
    else if (useLocal && (id === B.CallId || id === B.CallIndirectId)) calls.push([e, id, rep]);
    else if (useLocal && id === B.ReturnId) rets.push([e, rep]);
  }, (n) => B.Function.setBody(fref, n));

  // 1. local counter: sync the global around calls that can touch fuel, and before returns
  if (useLocal) {
    for (const [e, id, rep] of calls) {
      if (!mayTouchFuel(e, id)) continue;
      const ty = B.getExpressionType(e);
      if (ty === B.unreachable) continue;
      stats.syncedCalls++;
      if (ty === B.none) rep(m.block(null, [writeBack(), e, reload()], B.none));
      else { const tv = tmp(ty); rep(m.block(null, [writeBack(), m.local.set(tv, e), reload(), m.local.get(tv, ty)], ty)); }
    }
    for (const [e, rep] of rets) {
      const v = B.Return.getValue(e);
      if (v) {
        const ty = B.getExpressionType(v);
        if (ty === B.unreachable) continue;
        const tv = tmp(ty);
        B.Return.setValue(e, m.block(null, [m.local.set(tv, v), writeBack(), m.local.get(tv, ty)], ty));
      } else rep(m.block(null, [writeBack(), e], B.unreachable));
    }
  }
  // 2. loops: (loop $o (block $in (block $y (loop $L [br_if $y cond] body) (br $in)) yield (br $o)))
  //    The yield sits outside the original loop, so Asyncify's guards stay out of the loop body; after
  //    the yield the header check runs again (hence the host rule: refill to at least 1).
  let n = 0;
  for (const lp of loops) {
    const body = B.Loop.getBody(lp);
    const lty = B.getExpressionType(lp);
    const name = B.Loop.getName(lp);
    const id = `${f.name}$crvm${n++}`;
    const Ly = "y" + id, Lo = "o" + id, Lin = "i" + id;
    const { pre, c } = cond();
    const inner = m.loop(name, m.block(null, [...pre, m.br(Ly, c), body], B.auto));
    let outerBody: Expr;
    if (lty === B.unreachable) {
      outerBody = m.block(null, [m.block(Ly, [inner], B.none), yieldCall(), m.br(Lo)], B.unreachable);
    } else if (lty === B.none) {
      outerBody = m.block(Lin, [m.block(Ly, [inner, m.br(Lin)], B.none), yieldCall(), m.br(Lo)], B.none);
    } else {
      outerBody = m.block(Lin, [m.block(Ly, [m.br(Lin, 0, inner)], B.none), yieldCall(), m.br(Lo)], lty);
    }
    B.Loop.setName(lp, Lo);
    B.Loop.setBody(lp, outerBody);
    stats.loops++;
  }
  // 3. function entry: local init, entry check, exit write-back
  let body = B.Function.getBody(fref);
  const pre: Expr[] = [];
  if (useLocal) pre.push(reload());
  if (entry) { pre.push(inlineCheck()); stats.entries++; }
  const fty = f.results;
  const bty = B.getExpressionType(body);
  if (!useLocal || bty === B.unreachable) body = m.block(null, [...pre, body], B.auto);
  else if (fty === B.none) body = m.block(null, [...pre, body, writeBack()], B.none);
  else { const tv = tmp(fty); body = m.block(null, [...pre, m.local.set(tv, body), writeBack(), m.local.get(tv, fty)], fty); }
  B.Function.setBody(fref, body);
}
