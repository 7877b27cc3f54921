// The process model on every runtime: fork trees, exec, spawn, signals,
// wait-any, pipes, and a fork bomb held by --max-tasks.
import { describe, expect, it } from "vitest";
import { crvm, guest, GUESTS, RUNTIMES } from "./helpers.ts";

describe("process calls", () => {
  for (const rt of RUNTIMES) {
    it(`run forktree, procs, forkbomb and tasks on ${rt}`, async () => {
      const runs: [string[], RegExp][] = [
        [[guest("forktree"), "5"], /sum of leaf codes 122 \(expected 122\), 32 lines/],
        [["--dir", `${GUESTS}::/bin`, guest("procs")], /wait-any: 12 children/],
        [["--max-tasks", "12", guest("forkbomb"), "6"], /held by the task limit/],
        [["--max-tasks", "600", guest("tasks"), "hold", "500"], /500 children alive/],
        [[guest("tasks"), "pingpong", "2000"], /2000 round trips/],
      ];
      for (const [args, want] of runs) {
        const r = await crvm(rt, ["run", ...args]);
        expect(r.stderr, args.join(" ")).toBe("");
        expect(r.code, args.join(" ")).toBe(0);
        expect(r.stdout.toString()).toMatch(want);
        expect(r.stdout.toString()).toMatch(/: ok\n$/);
      }
    });
  }

  it("without a small limit the fork bomb sees no refusal (its own check fails, exit 1)", async () => {
    const r = await crvm("node", ["run", guest("forkbomb"), "4"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no fork was refused/);
  });

  it("refuses a bad --max-tasks", async () => {
    const r = await crvm("node", ["run", "--max-tasks", "many", guest("hello")]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/--max-tasks/);
  });
});
