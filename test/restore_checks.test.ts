// What restore checks before anything runs, and where a checkpoint can land.
import * as fs from "node:fs";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { crvm, guest, readTree, RUNTIMES, startCrvm, tmpDir } from "./helpers.ts";

/** The META and VM records of `crvm inspect --json` output. */
function vmOf(json: string): { meta: { monotonicNs: string }; vm: { tasks: { pending: Record<string, unknown> & { call: string } }[] } } {
  const records = JSON.parse(json).records as { kind: string; meta?: unknown; vm?: unknown }[];
  return { meta: records.find((r) => r.kind === "META")!.meta as never, vm: records.find((r) => r.kind === "VM")!.vm as never };
}

async function filesImage(at: number): Promise<{ data: string; image: string; first: Buffer }> {
  const data = tmpDir();
  const image = path.join(tmpDir(), "f.snap");
  const r = await crvm("node", ["run", "--checkpoint-after-yields", String(at), "--checkpoint-file", image, "--dir", `${data}::/data`, "--tmpfs", "/tmp", guest("files")]);
  expect(r.code, r.stderr).toBe(0);
  return { data, image, first: r.stdout };
}

describe("restore checks", () => {
  it("refuses a snapshot whose open host file is missing, and runs nothing", async () => {
    const { data, image } = await filesImage(60);
    fs.rmSync(path.join(data, "log.txt"));
    const r = await crvm("node", ["restore", image]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/log\.txt.*is missing/);
    expect(r.stdout.length).toBe(0);
  });

  it("refuses a snapshot whose open host file changed size", async () => {
    const { data, image } = await filesImage(60);
    fs.appendFileSync(path.join(data, "log.txt"), "tampered\n");
    const r = await crvm("node", ["restore", image]);
    expect(r.stderr).toMatch(/changed size/);
    expect(r.code).not.toBe(0);
    expect(r.stdout.length).toBe(0);
  });

  it("restores into a copy of the directory given with --dir", async () => {
    const plainDir = tmpDir();
    const plain = await crvm("node", ["run", "--dir", `${plainDir}::/data`, "--tmpfs", "/tmp", guest("files")]);
    const { data, image, first } = await filesImage(60);
    const copy = tmpDir();
    fs.cpSync(data, copy, { recursive: true });
    fs.rmSync(data, { recursive: true });
    const r = await crvm("node", ["restore", "--dir", `${copy}::/data`, image]);
    expect(r.code, r.stderr).toBe(0);
    expect(Buffer.concat([first, r.stdout]).toString()).toBe(plain.stdout.toString());
    expect(readTree(copy)).toEqual(readTree(plainDir));
  });

  it("refuses a truncated snapshot", async () => {
    const { image } = await filesImage(30);
    const bytes = fs.readFileSync(image);
    fs.writeFileSync(image, bytes.subarray(0, bytes.length - 10));
    const r = await crvm("node", ["restore", image]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/truncated|incomplete/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("reports a snapshot that cannot be written and leaves what was there", async () => {
    const dir = tmpDir();
    const target = path.join(dir, "taken");
    fs.mkdirSync(target);
    fs.writeFileSync(path.join(target, "keep"), "previous");
    const r = await crvm("node", ["run", "--checkpoint-after-yields", "3", "--checkpoint-file", target, guest("ticker"), "10"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Cannot write snapshot/);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(fs.readdirSync(dir)).toEqual(["taken"]);
    expect(fs.readFileSync(path.join(target, "keep"), "utf8")).toBe("previous");
  });
});

describe("where checkpoints land", () => {
  it("freezes a pure compute loop at a fuel check, not only at syscalls", async () => {
    const image = path.join(tmpDir(), "c.snap");
    const r = await crvm("node", ["run", "--checkpoint-after-yields", "12", "--checkpoint-file", image, guest("compute"), "0.2"]);
    expect(r.code, r.stderr).toBe(0);
    const info = vmOf((await crvm("node", ["inspect", "--json", image])).stdout.toString());
    expect(info.vm.tasks[0].pending.call).toBe("crvm.yield");
    const plain = await crvm("node", ["run", guest("compute"), "0.2"]);
    const rest = await crvm("bun", ["restore", image]);
    expect(Buffer.concat([r.stdout, rest.stdout]).toString()).toBe(plain.stdout.toString());
    expect(rest.code).toBe(0);
  });

  it("checkpoints a pipeline while pipes hold bytes and tasks are blocked, and restores it on Deno", async () => {
    const image = path.join(tmpDir(), "p.snap");
    const r = await crvm("node", ["run", "--checkpoint-after-yields", "2000", "--checkpoint-file", image, guest("sieve"), "300"]);
    expect(r.code, r.stderr).toBe(0);
    const records = JSON.parse((await crvm("node", ["inspect", "--json", image])).stdout.toString()).records;
    const vm = records.find((x: { kind: string }) => x.kind === "VM").vm;
    expect(vm.tasks.length).toBeGreaterThan(10);
    expect(vm.pipes.some((p: { data: number | null }) => p.data !== null)).toBe(true);
    expect(vm.tasks.some((t: { pending: { fds?: unknown[] } }) => (t.pending.fds?.length ?? 0) > 0)).toBe(true);
    const plain = await crvm("node", ["run", guest("sieve"), "300"]);
    const rest = await crvm("deno", ["restore", image]);
    expect(rest.code, rest.stderr).toBe(0);
    expect(Buffer.concat([r.stdout, rest.stdout]).toString()).toBe(plain.stdout.toString());
  });

  it("freezes a task blocked in a sleep and keeps only the time that was left", async () => {
    const image = path.join(tmpDir(), "s.snap");
    // The ticker spends nearly all its time asleep, so the timer almost always finds it blocked.
    const r = await crvm("node", ["run", "--checkpoint-after", "100", "--checkpoint-file", image, guest("ticker"), "60"]);
    expect(r.code, r.stderr).toBe(0);
    const info = vmOf((await crvm("node", ["inspect", "--json", image])).stdout.toString());
    const pending = info.vm.tasks[0].pending;
    expect(pending.call).toBe("wasi_snapshot_preview1.poll_oneoff");
    if (pending.untilNs !== undefined) {
      // Blocked: the deadline is on the virtual clock, at most one tick (5 ms) after the checkpoint.
      const left = BigInt(pending.untilNs) - BigInt(info.meta.monotonicNs);
      expect(left).toBeLessThanOrEqual(5_000_000n);
      expect(pending.state).toHaveLength(1);
    } else {
      expect(pending.freeze).toBe(true);
    }
  });
});

describe("restore --frozen", () => {
  for (const rt of RUNTIMES) {
    it(`rebuilds every task and runs nothing until SIGCONT, on ${rt}`, async () => {
      const image = path.join(tmpDir(), "f.snap");
      const plain = await crvm("node", ["run", guest("forktree")]);
      const a = await crvm("node", ["run", "--checkpoint-after-yields", "40", "--checkpoint-file", image, guest("forktree")]);
      expect(a.code, a.stderr).toBe(0);
      const p = startCrvm(rt, ["restore", "--frozen", image]);
      const deadline = Date.now() + 20_000;
      while (!/send SIGCONT to process (\d+)/.test(p.stderr()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const pid = Number(/send SIGCONT to process (\d+)/.exec(p.stderr())![1]);
      expect(p.stderr()).toMatch(/^crvm: restored \d+ tasks, frozen;/);
      await new Promise((r) => setTimeout(r, 300));
      expect(p.stdout()).toBe(""); // frozen: nothing ran
      process.kill(pid, "SIGCONT");
      expect(await p.done).toBe(0);
      expect(a.stdout.toString() + p.stdout()).toBe(plain.stdout.toString());
    }, 60_000);
  }
});
