// Static bound on guest work between two fuel checks, on the ORIGINAL module; used to add entry
// checks where the "scc2" placement alone would leave too long a check-free stretch.
//
// Facts used (wasm structured control flow): inside one activation an instruction can only run twice by
// branching back to a loop label, i.e. by passing that loop's header check. So between two checks an
// activation runs each of its instructions at most once, and a call made in that window runs its callee
// only up to the callee's first check:
//   P(g) = work from g's entry to g's first check or return
//        = 1 if g has an entry check, else size(g outside loops) + sum over call sites outside loops of P(callee)
//          (max over the signature-compatible targets for call_indirect). Acyclic by construction of "scc2".
//   R(g) = work of one activation of g between two checks (any window): size(g) + sum over ALL its call
//          sites of P(callee) (every instruction at most once, every call at most once).
// A window can also span the epilogues of several frames returning without passing a check, so the true
// bound is R_max x (stack depth of such frames). Capping P at the budget (by adding an entry check where
// it would exceed it) is what keeps R small for call-heavy code without loops.
import type { CallGraph } from "./callgraph.ts";
import type { Expr, Ir } from "./ir.ts";

/** Static size budget: an entry check is added where a check-free prefix P(g) would exceed it. */
export const ENTRY_BUDGET = 20_000;

/**
 * Functions that need an entry check beyond `cg.recursiveUnchecked` so that
 * every P(g) stays within `budget`.
 */
export function budgetedEntries(ir: Ir, cg: CallGraph, budget = ENTRY_BUDGET): Set<string> {
  const B = ir.B;
  // per function: size outside loops, targets of each call site outside loops
  const info = new Map<string, { outSize: number; outSites: string[][]; entry: boolean }>();
  for (const f of cg.funcs.values()) {
    let outSize = 0;
    const outSites: string[][] = [];
    const stack: Array<[Expr, boolean]> = [[B.Function.getBody(f.ref), false]];
    while (stack.length) {
      const [e, inLoop] = stack.pop()!;
      const id = B.getExpressionId(e);
      if (!inLoop) {
        outSize++;
        if (id === B.CallId) {
          const t = B.Call.getTarget(e);
          if (!cg.imports.has(t)) outSites.push([t]);
        } else if (id === B.CallIndirectId) {
          const sig = `${B.CallIndirect.getParams(e)}:${B.CallIndirect.getResults(e)}`;
          outSites.push(cg.bySig.get(sig) ?? []);
        }
      }
      const il = inLoop || id === B.LoopId;
      for (const c of ir.children(e)) stack.push([c, il]);
    }
    info.set(f.name, { outSize, outSites, entry: cg.recursiveUnchecked.has(f.name) });
  }

  // P for every function, bottom-up with an explicit stack (call chains can be deeper than the JS stack).
  const P = new Map<string, number>();
  const budgeted = new Set<string>();
  const onPath = new Set<string>();
  for (const root of info.keys()) {
    if (P.has(root)) continue;
    const work = [root];
    while (work.length) {
      const name = work[work.length - 1]!;
      if (P.has(name)) { work.pop(); continue; }
      const i = info.get(name)!;
      if (i.entry) { P.set(name, 1); work.pop(); continue; }
      const pending = i.outSites.flat().filter((t) => !P.has(t));
      if (pending.length) {
        if (onPath.has(name)) throw new Error(`latency: unchecked call cycle through ${name}`);
        onPath.add(name);
        work.push(...pending);
        continue;
      }
      onPath.delete(name);
      let w = i.outSize;
      for (const ts of i.outSites) w += ts.reduce((a, t) => Math.max(a, P.get(t)!), 0);
      if (w > budget) { i.entry = true; budgeted.add(name); w = 1; }
      P.set(name, w);
      work.pop();
    }
  }
  return budgeted;
}
