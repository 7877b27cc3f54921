// Whole-module call graph for crvm instrumentation decisions.
//  - direct calls: exact edges
//  - call_indirect: edges to every function in any table element segment with the same signature
//    (params+results). This is sound for a closed module whose table is not exported/imported and is
//    not modified at run time (table.set/table.grow): validate.ts refuses every other module. If the
//    table escaped anyway, fall back to "all defined functions with that signature".
import type { Expr, FuncRef, Ir, Module, Type } from "./ir.ts";

export interface FuncInfo {
  name: string;
  ref: FuncRef;
  sig: string;
  params: Type;
  results: Type;
  loops: number;
  /** Static size (number of expressions). */
  size: number;
  calls: Set<string>;
  importCalls: Set<string>;
  indirectSigs: Set<string>;
  nIndirect: number;
  /** Call targets of call sites outside of any loop ("unchecked": no loop-header check before them). */
  outCalls: Set<string>;
  outSigs: Set<string>;
  /** Possible callees (direct + signature-resolved indirect). */
  succ: string[];
  outSucc: string[];
}

export interface CallGraph {
  funcs: Map<string, FuncInfo>;
  imports: Map<string, { module: string; base: string }>;
  bySig: Map<string, string[]>;
  tableFuncs: Set<string>;
  recursive: Set<string>;
  /** Functions that need an entry check to break call cycles (rule "scc2"). */
  recursiveUnchecked: Set<string>;
  callers: Map<string, string[]>;
}

export const sigKey = (params: Type, results: Type): string => `${params}:${results}`;

export function analyze(ir: Ir, m: Module): CallGraph {
  const B = ir.B;
  const funcs = new Map<string, FuncInfo>();
  const imports = new Map<string, { module: string; base: string }>();
  const bodies = new Map<string, Expr>();
  for (let i = 0; i < m.getNumFunctions(); i++) {
    const ref = m.getFunctionByIndex(i);
    const fi = B.getFunctionInfo(ref);
    if (fi.module) { imports.set(fi.name, { module: fi.module, base: fi.base ?? "" }); continue; }
    bodies.set(fi.name, fi.body);
    funcs.set(fi.name, {
      name: fi.name, ref, sig: sigKey(fi.params, fi.results), params: fi.params, results: fi.results,
      loops: 0, size: 0, calls: new Set(), importCalls: new Set(), indirectSigs: new Set(), nIndirect: 0,
      outCalls: new Set(), outSigs: new Set(), succ: [], outSucc: [],
    });
  }
  // Table contents.
  const tableFuncs = new Set<string>();
  for (let i = 0; i < m.getNumElementSegments(); i++) {
    for (const n of B.getElementSegmentInfo(m.getElementSegmentByIndex(i)).data) tableFuncs.add(n);
  }
  let tableEscapes = false;
  for (let i = 0; i < m.getNumTables(); i++) if (B.getTableInfo(m.getTableByIndex(i)).module) tableEscapes = true;
  for (let i = 0; i < m.getNumExports(); i++) {
    if (B.getExportInfo(m.getExportByIndex(i)).kind === B.ExternalTable) tableEscapes = true;
  }
  for (const f of funcs.values()) {
    const stack: Array<[Expr, boolean]> = [[bodies.get(f.name)!, false]];
    while (stack.length) {
      const [e, inLoop] = stack.pop()!;
      const id = B.getExpressionId(e);
      f.size++;
      if (id === B.LoopId) f.loops++;
      else if (id === B.CallId) {
        const t = B.Call.getTarget(e);
        if (imports.has(t)) f.importCalls.add(t);
        else { f.calls.add(t); if (!inLoop) f.outCalls.add(t); }
      } else if (id === B.CallIndirectId) {
        f.nIndirect++;
        const sig = sigKey(B.CallIndirect.getParams(e), B.CallIndirect.getResults(e));
        f.indirectSigs.add(sig);
        if (!inLoop) f.outSigs.add(sig);
      } else if (id === B.TableSetId || id === B.TableGrowId) tableEscapes = true;
      const il = inLoop || id === B.LoopId;
      for (const c of ir.children(e)) stack.push([c, il]);
    }
  }
  // Possible targets per signature.
  const bySig = new Map<string, string[]>();
  for (const f of funcs.values()) {
    if (!tableEscapes && !tableFuncs.has(f.name)) continue;
    let list = bySig.get(f.sig);
    if (!list) bySig.set(f.sig, (list = []));
    list.push(f.name);
  }
  const resolve = (calls: Set<string>, sigs: Set<string>): string[] => {
    const out = new Set(calls);
    for (const s of sigs) for (const t of bySig.get(s) ?? []) out.add(t);
    return [...out];
  };
  for (const f of funcs.values()) {
    f.succ = resolve(f.calls, f.indirectSigs);
    f.outSucc = resolve(f.outCalls, f.outSigs);
  }
  const sccOf = tarjan([...funcs.keys()], (n) => funcs.get(n)!.succ);
  const recursive = new Set<string>();
  for (const f of funcs.values()) {
    if (sccOf.get(f.name)!.size > 1 || f.succ.includes(f.name)) recursive.add(f.name);
  }
  // Entry checks are only needed to break cycles made of call sites that are not inside a loop
  // (a call inside a loop is always preceded, in the same activation, by that loop's header check).
  // needEntry = functions in a non-trivial SCC of the graph restricted to such "unchecked" edges,
  // restricted to edges inside the same full SCC.
  const outSccSucc = new Map<string, string[]>();
  for (const f of funcs.values()) {
    const mine = sccOf.get(f.name)!.id;
    outSccSucc.set(f.name, f.outSucc.filter((t) => sccOf.get(t)!.id === mine));
  }
  const sccOut = tarjan([...funcs.keys()], (n) => outSccSucc.get(n)!);
  const recursiveUnchecked = new Set<string>();
  for (const f of funcs.values()) {
    if (sccOut.get(f.name)!.size > 1 || f.outSucc.includes(f.name)) recursiveUnchecked.add(f.name);
  }
  const callers = new Map<string, string[]>([...funcs.keys()].map((k) => [k, []]));
  for (const f of funcs.values()) for (const t of f.succ) callers.get(t)!.push(f.name);
  return { funcs, imports, bySig, tableFuncs, recursive, recursiveUnchecked, callers };
}

/** Iterative Tarjan: the strongly connected component (id, size) of every node. */
function tarjan(nodes: string[], succOf: (n: string) => string[]): Map<string, { id: number; size: number }> {
  let index = 0;
  let nScc = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const st: string[] = [];
  const sccOf = new Map<string, { id: number; size: number }>();
  const enter = (v: string) => { idx.set(v, index); low.set(v, index); index++; st.push(v); onStack.add(v); };
  for (const root of nodes) {
    if (idx.has(root)) continue;
    const work: Array<[string, number]> = [[root, 0]];
    enter(root);
    while (work.length) {
      const top = work[work.length - 1]!;
      const [v, i] = top;
      const s = succOf(v);
      if (i < s.length) {
        top[1]++;
        const w = s[i]!;
        if (!idx.has(w)) { enter(w); work.push([w, 0]); }
        else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      } else {
        work.pop();
        if (work.length) { const p = work[work.length - 1]![0]; low.set(p, Math.min(low.get(p)!, low.get(v)!)); }
        if (low.get(v) === idx.get(v)) {
          const comp: string[] = [];
          let w: string;
          do { w = st.pop()!; onStack.delete(w); comp.push(w); } while (w !== v);
          for (const c of comp) sccOf.set(c, { id: nScc, size: comp.length });
          nScc++;
        }
      }
    }
  }
  return sccOf;
}

/**
 * Functions that can be on the stack when an asyncified import is called: backwards closure from
 * the seeds (functions that directly call an async import or contain a fuel check).
 */
export function canYieldSet(cg: CallGraph, seeds: Iterable<string>): Set<string> {
  const out = new Set(seeds);
  const q = [...out];
  while (q.length) {
    const f = q.pop()!;
    for (const c of cg.callers.get(f) ?? []) if (!out.has(c)) { out.add(c); q.push(c); }
  }
  return out;
}
