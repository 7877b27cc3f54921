// Mutable globals (incl. __stack_pointer and the fuel counter), through the
// crvm_g:* exports the instrumentation adds.
import { SnapshotError } from "../errors.ts";
import type { GlobalValue } from "../snapshot/mod.ts";

function encodeNumber(v: number): string {
  return Object.is(v, -0) ? "-0" : String(v);
}

export function dumpGlobals(globals: Map<string, WebAssembly.Global>): [string, GlobalValue][] {
  return [...globals].map(([name, g]) => {
    const v = g.value as number | bigint;
    return [name, typeof v === "bigint" ? { type: "i64", value: v.toString() } : { type: "num", value: encodeNumber(v) }];
  });
}

export function restoreGlobals(globals: Map<string, WebAssembly.Global>, values: [string, GlobalValue][], what: string): void {
  if (values.length !== globals.size) throw new SnapshotError(`${what}: expected ${globals.size} globals, image has ${values.length}`);
  for (const [name, v] of values) {
    const g = globals.get(name);
    if (!g) throw new SnapshotError(`${what}: module has no global ${name}`);
    try {
      g.value = v.type === "i64" ? BigInt(v.value) : Number(v.value);
    } catch {
      throw new SnapshotError(`${what}: bad value for global ${name}`);
    }
  }
}
