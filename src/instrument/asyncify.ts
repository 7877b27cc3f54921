// Asyncify and what crvm does around it:
//   - call_indirect sites whose possible targets can never yield go through a small helper left out of
//     Asyncify (wrapIndirect before the pass, unwrapIndirect after it);
//   - the pass itself with `asyncify-imports` = every import crvm may freeze a task in and
//     `asyncify-onlylist` = functions that can be on the stack at a yield;
//   - a fast/slow split of every instrumented function (splitFastSlow).
import { canYieldSet } from "./callgraph.ts";
import type { CallGraph } from "./callgraph.ts";
import { freshFunctionName } from "./ir.ts";
import type { Expr, FuncRef, Ir, Module, Type } from "./ir.ts";

/** The exports the Asyncify pass adds; the runtime drives capture through them. */
export const ASYNCIFY_EXPORTS: readonly string[] = [
  "asyncify_start_unwind", "asyncify_stop_unwind", "asyncify_start_rewind", "asyncify_stop_rewind", "asyncify_get_state",
];
/**
 * Every import from these modules is asyncified, so a task can be frozen at any such call; imports from
 * other modules are stubs (ENOSYS) and never yield.
 */
export const ASYNC_MODULES: readonly string[] = ["wasi_snapshot_preview1", "wasix_32v1", "crvm"];
const REWINDING = 2;
const NORMAL = 0;

export interface AsyncifyStats {
  asyncImports: number;
  onlylist: number;
  ciWrapped: number;
  ciKept: number;
  split: number;
  folded: number;
  dispatch: number;
  retargeted: number;
}

/**
 * Runs Asyncify on `m`. `asyncNames` are the internal names of the imports a
 * task may be frozen in, `asyncImports` the same as "module.base" (the pass's
 * syntax), `fuelFuncs` the functions that contain a fuel check.
 * Returns the names of the ciWrap helpers (for unwrapIndirect).
 */
export function runAsyncify(
  ir: Ir, m: Module, cg: CallGraph, asyncNames: Set<string>, asyncImports: string[], fuelFuncs: Set<string>, stats: AsyncifyStats,
): Map<string, { table: string; params: Type; results: Type }> {
  const B = ir.B;
  const seeds = new Set(fuelFuncs);
  for (const f of cg.funcs.values()) for (const c of f.importCalls) if (asyncNames.has(c)) seeds.add(f.name);
  const canYield = canYieldSet(cg, seeds);
  const onlylist = [...canYield];
  stats.onlylist = onlylist.length;
  stats.asyncImports = asyncImports.length;
  const helpers = wrapIndirect(ir, m, cg, canYield, stats);
  B.setPassArgument("asyncify-onlylist", onlylist.join(","));
  B.setPassArgument("asyncify-imports", asyncImports.join(","));
  // Asyncify's own clean-up runs at the current optimize level; never at 0 (16x slower code, FINDINGS.md).
  B.setOptimizeLevel(2);
  try {
    m.runPasses(["asyncify"]);
  } finally {
    B.clearPassArguments();
  }
  return helpers;
}

// Replace call_indirect sites (in functions that will be instrumented) whose possible targets can never
// yield by a call to a per-signature helper that asyncify does not instrument (not in the only-list).
function wrapIndirect(ir: Ir, m: Module, cg: CallGraph, canYield: Set<string>, stats: AsyncifyStats) {
  const B = ir.B;
  const helpers = new Map<string, { table: string; params: Type; results: Type }>();
  const byKey = new Map<string, string>();
  const helperFor = (params: Type, results: Type, table: string) => {
    const key = `${params}:${results}:${table}`;
    let name = byKey.get(key);
    if (name) return name;
    name = freshFunctionName(m, `__crvm_ci${byKey.size}`);
    const ps = B.expandType(params);
    const args = ps.map((ty, i) => m.local.get(i, ty));
    m.addFunction(name, B.createType([...ps, B.i32]), results, [],
      m.call_indirect(table, m.local.get(ps.length, B.i32), args, params, results));
    byKey.set(key, name);
    helpers.set(name, { table, params, results });
    return name;
  };
  for (const name of canYield) {
    const f = cg.funcs.get(name);
    if (!f || f.nIndirect === 0) continue;
    const sites: Array<[Expr, (e: Expr) => void]> = [];
    ir.walk(B.Function.getBody(f.ref), (e, id, rep) => { if (id === B.CallIndirectId) sites.push([e, rep]); },
      (n) => B.Function.setBody(f.ref, n));
    for (const [e, rep] of sites) {
      const params = B.CallIndirect.getParams(e), results = B.CallIndirect.getResults(e);
      const targets = cg.bySig.get(`${params}:${results}`) ?? [];
      if (targets.some((t) => canYield.has(t))) { stats.ciKept++; continue; }
      const h = helperFor(params, results, B.CallIndirect.getTable(e));
      rep(m.call(h, [...B.CallIndirect.getOperands(e), B.CallIndirect.getTarget(e)], results));
      stats.ciWrapped++;
    }
  }
  return helpers;
}

// Undo wrapIndirect after asyncify: call $__crvm_ciN(args..., idx) -> call_indirect (the helpers are not
// instrumented, so the result is the same as inlining them).
export function unwrapIndirect(ir: Ir, m: Module, helpers: Map<string, { table: string; params: Type; results: Type }>): void {
  const B = ir.B;
  if (!helpers.size) return;
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const fref = m.getFunctionByIndex(i);
    const fi = B.getFunctionInfo(fref);
    if (fi.module || helpers.has(fi.name)) continue;
    const sites: Array<[Expr, (e: Expr) => void]> = [];
    ir.walk(fi.body, (e, id, rep) => { if (id === B.CallId && helpers.has(B.Call.getTarget(e))) sites.push([e, rep]); },
      (x) => B.Function.setBody(fref, x));
    for (const [e, rep] of sites) {
      const h = helpers.get(B.Call.getTarget(e))!;
      const ops = B.Call.getOperands(e);
      rep(m.call_indirect(h.table, ops[ops.length - 1]!, ops.slice(0, -1), h.params, h.results));
    }
  }
  for (const n of helpers.keys()) m.removeFunction(n);
}

/** The Asyncify state global: read it from the exported asyncify_get_state. */
export function stateGlobal(ir: Ir, m: Module): string {
  const B = ir.B;
  let body = B.getFunctionInfo(m.getFunction(exportedFunction(ir, m, "asyncify_get_state") ?? "asyncify_get_state")).body;
  while (B.getExpressionId(body) === B.BlockId) body = B.Block.getChildAt(body, 0);
  return B.GlobalGet.getName(body);
}

function exportedFunction(ir: Ir, m: Module, name: string): string | null {
  for (let i = 0; i < m.getNumExports(); i++) {
    const ex = ir.B.getExportInfo(m.getExportByIndex(i));
    if (ex.name === name && ex.kind === ir.B.ExternalFunction) return ex.value;
  }
  return null;
}

// After asyncify: give every instrumented function f a copy f$crvm_rw (the full asyncify code) and turn f
// itself into a "never rewinds" fast path: all `state == normal` guards fold to true and all `state ==
// rewinding` tests to false (what binaryen's ModAsyncify<neverRewind> does), keeping only the unwind checks
// after calls and the local-saving epilogue. Both copies come from the same asyncified body, so their
// saved-frame layout and call indices are identical. A frame that was resumed keeps running in the $rw
// copy until it returns; new calls take the fast path.
// The rewind dispatch (`if (state == rewinding) return f$crvm_rw(args)`) is only kept in functions
// reachable from outside the direct call graph (exports, table); direct calls inside $rw copies are
// retargeted to g$rw while rewinding.
/** Returns the names of the $rw copies. */
export function splitFastSlow(ir: Ir, m: Module, cg: CallGraph, skip: Set<string>, stats: AsyncifyStats): Set<string> {
  const B = ir.B;
  const S = stateGlobal(ir, m);
  const isState = (e: Expr) => e && B.getExpressionId(e) === B.GlobalGetId && B.GlobalGet.getName(e) === S;
  const constOf = (e: Expr) => (e && B.getExpressionId(e) === B.ConstId && B.getExpressionType(e) === B.i32) ? B.Const.getValueI32(e) : null;
  const keepDispatch = new Set(cg.tableFuncs);
  for (let i = 0; i < m.getNumExports(); i++) {
    const ex = B.getExportInfo(m.getExportByIndex(i));
    if (ex.kind === B.ExternalFunction) keepDispatch.add(ex.value);
  }
  const split = new Map<string, string>();
  const fns: FuncRef[] = [];
  for (let i = 0; i < m.getNumFunctions(); i++) fns.push(m.getFunctionByIndex(i));
  for (const fref of fns) {
    const fi = B.getFunctionInfo(fref);
    if (fi.module || skip.has(fi.name)) continue;
    const reps: Array<[(e: Expr) => void, number]> = [];
    let uses = 0;
    ir.walk(fi.body, (e, id, rep) => {
      if (id === B.GlobalGetId) { if (B.GlobalGet.getName(e) === S) uses++; return; }
      if (id === B.BinaryId) {
        const op = B.Binary.getOp(e), l = B.Binary.getLeft(e), r = B.Binary.getRight(e);
        if (op === B.EqInt32 || op === B.NeInt32) {
          const c = isState(l) ? constOf(r) : isState(r) ? constOf(l) : null;
          if (c === REWINDING) reps.push([rep, op === B.EqInt32 ? 0 : 1]);
          else if (c === NORMAL) reps.push([rep, op === B.EqInt32 ? 1 : 0]);
        }
      } else if (id === B.UnaryId) {
        if (B.Unary.getOp(e) === B.EqZInt32 && isState(B.Unary.getValue(e))) reps.push([rep, 1]);
      } else if (id === B.SelectId) {
        if (isState(B.Select.getCondition(e))) reps.push([(x) => B.Select.setCondition(e, x), 0]);
      }
    }, (x) => B.Function.setBody(fref, x));
    if (!uses) continue;
    const rw = freshFunctionName(m, fi.name + "$crvm_rw");
    m.addFunction(rw, fi.params, fi.results, fi.vars, m.copyExpression(fi.body));
    for (const [rep, v] of reps) rep(m.i32.const(v));
    stats.folded += reps.length;
    split.set(fi.name, rw);
    stats.split++;
    if (!keepDispatch.has(fi.name)) continue;
    const ps = B.expandType(fi.params);
    const call = m.call(rw, ps.map((t, i) => m.local.get(i, t)), fi.results);
    const dispatch = m.if(m.i32.eq(m.global.get(S, B.i32), m.i32.const(REWINDING)),
      fi.results === B.none ? m.block(null, [call, m.return()], B.unreachable) : m.return(call));
    const body = B.Function.getBody(fref);
    const bt = B.getExpressionType(body);
    B.Function.setBody(fref, m.block(null, [dispatch, body], bt === B.unreachable ? B.auto : bt));
    stats.dispatch++;
  }
  for (const rw of split.values()) {
    const fref = m.getFunction(rw);
    const sites: Array<[Expr, (e: Expr) => void]> = [];
    ir.walk(B.Function.getBody(fref), (e, id, rep) => {
      if (id === B.CallId && split.has(B.Call.getTarget(e)) && !keepDispatch.has(B.Call.getTarget(e))) sites.push([e, rep]);
    }, (x) => B.Function.setBody(fref, x));
    for (const [e, rep] of sites) {
      const target = B.Call.getTarget(e), ty = B.getExpressionType(e);
      if (ty === B.unreachable) continue;
      const sets: Expr[] = [];
      const gets: Array<() => Expr> = [];
      for (const op of B.Call.getOperands(e)) {
        const t = B.getExpressionType(op);
        const id = B.getExpressionId(op);
        if (id === B.LocalGetId || id === B.ConstId) { gets.push(() => m.copyExpression(op)); continue; }
        const v = B._BinaryenFunctionAddVar(fref, t);
        sets.push(m.local.set(v, op));
        gets.push(() => m.local.get(v, t));
      }
      const sel = m.if(m.i32.eq(m.global.get(S, B.i32), m.i32.const(REWINDING)),
        m.call(split.get(target)!, gets.map((g) => g()), ty), m.call(target, gets.map((g) => g()), ty));
      rep(sets.length ? m.block(null, [...sets, sel], ty) : sel);
      stats.retargeted++;
    }
  }
  // the slow copies must stay out of line: inlining one would copy the whole rewind path into its caller
  B.setPassArgument("no-inline", "*$crvm_rw");
  try {
    m.runPasses(["no-inline"]);
  } finally {
    B.clearPassArguments();
  }
  return new Set(split.values());
}

/** Functions that reference crvm/asyncify state (fuel, asyncify globals) or call the yield import. */
export function changedFunctions(ir: Ir, m: Module, globals: Set<string>, yieldFn: string, skip: Set<string>): string[] {
  const B = ir.B;
  const out: string[] = [];
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const fi = B.getFunctionInfo(m.getFunctionByIndex(i));
    if (fi.module || skip.has(fi.name)) continue;
    let hit = false;
    ir.walk(fi.body, (e, id) => {
      if (hit) return false;
      if ((id === B.GlobalGetId && globals.has(B.GlobalGet.getName(e))) || (id === B.GlobalSetId && globals.has(B.GlobalSet.getName(e)))) hit = true;
      else if (id === B.CallId && B.Call.getTarget(e) === yieldFn) hit = true;
    });
    if (hit) out.push(fi.name);
  }
  return out;
}
