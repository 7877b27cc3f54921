// The equality proof of checkpoint/restore (CRIU's ZDTM idea): for every
// guest, a plain run and runs checkpointed at many points and restored —
// once, repeatedly, on another runtime — give byte-identical stdout, the
// same exit code and identical files. Checkpoint points are chosen by yield
// count (deterministic), so no assertion depends on timing.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { crvm, guest, GUESTS, readTree, type Result, type Runtime, tmpDir } from "./helpers.ts";

interface GuestCase {
  name: string;
  args: string[];
  /** Needs a host dir at /data and an in-memory dir at /tmp. */
  dirs?: boolean;
  /** More flags for `crvm run`. */
  flags?: string[];
}

const CASES: GuestCase[] = [
  { name: "hello", args: ["x", "exit=7"] },
  { name: "compute", args: ["0.1"] },
  { name: "files", args: [], dirs: true },
  { name: "ticker", args: ["60"] },
  { name: "sqlite", args: [], dirs: true },
  { name: "forktree", args: ["4"] },
  { name: "sieve", args: ["300"] },
  { name: "procs", args: [], flags: ["--dir", `${GUESTS}::/bin`] },
  { name: "forkbomb", args: ["6"], flags: ["--max-tasks", "16"] },
  // Guests that take checkpoints themselves write their images into /tmp (in memory, part of the VM's own state).
  // ckpt_external: some yield points land while its checkpoint(2) streams into a pipe; the rest of that image is kept.
  { name: "ckpt_external", args: ["/tmp/ext.img"], dirs: true },
  { name: "ckpt_self", args: ["/tmp/self.img", "twice"], dirs: true },
  { name: "ckpt_group", args: ["/tmp/group.img"], dirs: true },
  { name: "ckpt_rules", args: ["/tmp"], dirs: true },
  { name: "freeze_chaos", args: ["7", "4", "400"] },
];

interface Run {
  stdout: Buffer;
  code: number;
  files: Record<string, string>;
}

/** Guests may print to stderr; crvm itself must not complain. */
async function ok(p: Promise<Result>): Promise<Result> {
  const r = await p;
  expect(r.stderr).not.toMatch(/^crvm: /m);
  return r;
}

function dirArgs(c: GuestCase, data: string): string[] {
  return [...(c.dirs ? ["--dir", `${data}::/data`, "--tmpfs", "/tmp"] : []), ...(c.flags ?? [])];
}

function stats(r: Result): { yields: number } {
  const m = /^crvm-stats: (.*)$/m.exec(r.stderr);
  if (!m) throw new Error(`no stats in: ${r.stderr}`);
  return JSON.parse(m[1]!);
}

for (const c of CASES) {
  describe(`checkpoint/restore of ${c.name}`, () => {
    let plain: Run;
    let yields = 0;
    beforeAll(async () => {
      const data = tmpDir();
      const r = await ok(crvm("node", ["run", "--stats", ...dirArgs(c, data), guest(c.name), ...c.args]));
      plain = { stdout: r.stdout, code: r.code, files: readTree(data) };
      yields = stats(r).yields;
      expect(yields).toBeGreaterThan(3);
    });

    /** Checkpoint at each yield count in `points` (restoring in between), then restore to the end. */
    async function chain(points: number[], runtimes: Runtime[]): Promise<Run & { images: string[] }> {
      const data = tmpDir();
      const work = tmpDir();
      let stdout = Buffer.alloc(0);
      const images: string[] = [];
      for (let i = 0; i <= points.length; i++) {
        const rt = runtimes[i % runtimes.length]!;
        const image = path.join(work, `${i}.snap`);
        const ck = i < points.length ? ["--checkpoint-after-yields", String(points[i]), "--checkpoint-file", image] : [];
        const args = i === 0
          ? ["run", ...ck, ...dirArgs(c, data), guest(c.name), ...c.args]
          : ["restore", ...ck, images[i - 1]!];
        const r = await ok(crvm(rt, args));
        stdout = Buffer.concat([stdout, r.stdout]);
        if (i < points.length) {
          expect(r.code, r.stderr).toBe(0);
          expect(fs.existsSync(image), `no image after ${args.join(" ")}: ${r.stderr}`).toBe(true);
          images.push(image);
        } else {
          return { stdout, code: r.code, files: readTree(data), images };
        }
      }
      throw new Error("unreachable");
    }

    function expectSame(got: Run): void {
      expect(got.stdout.toString()).toBe(plain.stdout.toString());
      expect(Buffer.compare(got.stdout, plain.stdout)).toBe(0);
      expect(got.code).toBe(plain.code);
      expect(got.files).toEqual(plain.files);
    }

    for (const [label, frac] of [["early", 0.1], ["mid", 0.5], ["late", 0.9]] as const) {
      it(`gives the same output when checkpointed ${label}`, async () => {
        expectSame(await chain([Math.max(1, Math.floor(yields * frac))], ["node"]));
      });
    }

    // A freeze also stops every other task at its next yield point, so a cycle uses a few
    // more yields than its step: steps are kept small enough for the run not to end first.
    it("gives the same output when checkpointed and restored repeatedly", async () => {
      const step = Math.max(1, Math.floor(yields / 8));
      expectSame(await chain([step, step, step], ["node"]));
    });

    it("restores on Deno and on Bun a snapshot taken on Node", async () => {
      expectSame(await chain([Math.floor(yields / 3)], ["node", "deno"]));
      expectSame(await chain([Math.floor(yields / 3)], ["node", "bun"]));
    });

    it("survives a chain across all three runtimes", async () => {
      const step = Math.max(1, Math.floor(yields / 8));
      expectSame(await chain([step, step], ["bun", "deno", "node"]));
    });
  });
}

describe("checkpoint by time", () => {
  it("gives the same output whenever the timer fires", async () => {
    const plain = await crvm("node", ["run", guest("ticker"), "100"]);
    const work = tmpDir();
    for (const ms of [0, 150, 400]) {
      const image = path.join(work, `t${ms}.snap`);
      const a = await crvm("node", ["run", "--checkpoint-after", String(ms), "--checkpoint-file", image, guest("ticker"), "100"]);
      expect(a.code, a.stderr).toBe(0);
      const b = await crvm("node", ["restore", image]);
      expect(Buffer.concat([a.stdout, b.stdout]).toString()).toBe(plain.stdout.toString());
    }
  });

  it("with --leave-running writes the image and finishes the run", async () => {
    const plain = await crvm("node", ["run", guest("ticker"), "50"]);
    const image = path.join(tmpDir(), "l.snap");
    const a = await crvm("node", ["run", "--checkpoint-after", "50", "--checkpoint-file", image, "--leave-running", guest("ticker"), "50"]);
    expect(a.stdout.toString()).toBe(plain.stdout.toString());
    expect(fs.existsSync(image)).toBe(true);
    const b = await crvm("node", ["restore", image]);
    expect(plain.stdout.toString().endsWith(b.stdout.toString())).toBe(true);
  });
});
