// Freezer groups (/sys/fs/cgroup) and checkpoint(2) end to end, through the
// self-checking guests ckpt_self, ckpt_group, ckpt_rules, ckpt_external and
// freeze_chaos (guests/README.md). Each guest checks its own state and exits
// 0 only if everything held; these tests add what a guest cannot see from
// inside: the image files, the output of a restore, and equality across
// runtimes and seeds.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { crvm, guest, type Result, RUNTIMES, tmpDir } from "./helpers.ts";

/** A run that must succeed: crvm itself says nothing, the guest exits with `code`. */
async function ok(p: Promise<Result>, code = 0): Promise<Result> {
  const r = await p;
  expect(r.stderr).not.toMatch(/^crvm: /m);
  expect(r.code, r.stderr).toBe(code);
  return r;
}

/** Splits a first run's stdout at its "checkpoint id N" line. */
function splitAtCheckpoint(out: string, nth = 1): { before: string; id: number; after: string } {
  const re = /^checkpoint id (\d+)\n/gm;
  let m: RegExpExecArray | null = null;
  for (let i = 0; i < nth; i++) m = re.exec(out);
  if (!m) throw new Error(`no "checkpoint id" line #${nth} in: ${out}`);
  return { before: out.slice(0, m.index), id: Number(m[1]), after: out.slice(m.index + m[0].length) };
}

/**
 * A directory as the guest's /data was when it took its checkpoint: the
 * image files it had open then, still empty (a restore elsewhere, on a copy
 * of the directory as it was, works as well as one in place).
 */
function dataAtCheckpoint(...emptyFiles: string[]): string {
  const d = tmpDir();
  for (const f of emptyFiles) fs.writeFileSync(path.join(d, f), "");
  return d;
}

describe("a task checkpoints itself (ckpt_self)", () => {
  for (const mode of ["vm", "subtree"]) {
    it(`writes an image with id > 0 and resumes from it with id 0 (${mode}), on every runtime`, async () => {
      const data = tmpDir();
      const r = await ok(crvm("node", ["run", "--dir", `${data}::/data`, guest("ckpt_self"), "/data/self.img", mode]));
      const { before, id, after } = splitAtCheckpoint(r.stdout.toString());
      expect(before).toMatch(new RegExp(`^ckpt_self: mode ${mode}, state `));
      expect(id).toBeGreaterThan(0);
      expect(after).toMatch(/ckpt_self: ok\n$/);
      const image = path.join(data, "self.img");
      expect(fs.statSync(image).size).toBeGreaterThan(0);
      for (const rt of RUNTIMES) {
        const back = await ok(crvm(rt, ["restore", "--dir", `${dataAtCheckpoint("self.img")}::/data`, image]));
        expect(back.stdout.toString(), rt).toBe(`restored (id 0)\n${after}`);
      }
    });
  }

  it("gives increasing ids to two checkpoints in one run; the second image resumes at the second", async () => {
    const data = tmpDir();
    const r = await ok(crvm("bun", ["run", "--dir", `${data}::/data`, guest("ckpt_self"), "/data/self.img", "twice"]));
    const out = r.stdout.toString();
    const first = splitAtCheckpoint(out, 1);
    const second = splitAtCheckpoint(out, 2);
    expect(first.id).toBeGreaterThan(0);
    expect(second.id).toBeGreaterThan(first.id);
    const back = await ok(crvm("deno", ["restore", "--dir", `${dataAtCheckpoint("self.img.2")}::/data`, path.join(data, "self.img.2")]));
    expect(back.stdout.toString()).toBe(`restored (id 0)\n${second.after}`);
  });

  // The image records the id after the one it hands out: the restored run's second checkpoint gets id 2 as in the first run.
  it("continues the checkpoint ids of the VM it was restored from", async () => {
    const data = tmpDir();
    const r = await ok(crvm("bun", ["run", "--dir", `${data}::/data`, guest("ckpt_self"), "/data/self.img", "twice"]));
    const first = splitAtCheckpoint(r.stdout.toString(), 1);
    const back = await ok(crvm("bun", ["restore", "--dir", `${dataAtCheckpoint("self.img")}::/data`, path.join(data, "self.img")]));
    expect(back.stdout.toString()).toBe(`restored (id 0)\n${first.after}`);
  });

  // The image is written into a file the caller has open: the image records that file as growing by the image
  // (imageTarget), so a restore in place accepts it and puts the fd's offset past the image, as after the call.
  it("restores in place, next to the image the guest wrote", async () => {
    const data = tmpDir();
    const r = await ok(crvm("bun", ["run", "--dir", `${data}::/data`, guest("ckpt_self"), "/data/self.img"]));
    const { after } = splitAtCheckpoint(r.stdout.toString());
    const back = await ok(crvm("bun", ["restore", path.join(data, "self.img")]));
    expect(back.stdout.toString()).toBe(`restored (id 0)\n${after}`);
  });
});

describe("a parent checkpoints itself and its frozen workers (ckpt_group)", () => {
  let data: string;
  let first: { before: string; id: number; after: string };
  let plain: string;
  beforeAll(async () => {
    data = tmpDir();
    const r = await ok(crvm("node", ["run", "--dir", `${data}::/data`, guest("ckpt_group"), "/data/group.img"]));
    plain = r.stdout.toString();
    first = splitAtCheckpoint(plain);
  });

  it("prints a prefix, the checkpoint id and a suffix; the same on every runtime", async () => {
    expect(first.before).toMatch(/^ckpt_group: 3 workers, 48 steps\nstep 7: [0-9a-f]{16}\n/);
    expect(first.id).toBe(1);
    expect(first.after).toMatch(/^step 31: [0-9a-f]{16}\n/);
    expect(first.after).toMatch(/worker 2: 48 steps, hash [0-9a-f]{16}, exit 12\nckpt_group: ok\n$/);
    expect(fs.statSync(path.join(data, "group.img")).size).toBeGreaterThan(0);
    for (const rt of ["deno", "bun"] as const) {
      const d = tmpDir();
      const r = await ok(crvm(rt, ["run", "--dir", `${d}::/data`, guest("ckpt_group"), "/data/group.img"]));
      expect(r.stdout.toString(), rt).toBe(plain);
    }
  });

  for (const rt of RUNTIMES) {
    it(`restores the subtree on ${rt}: the parent sees id 0, thaws the group and prints exactly the suffix`, async () => {
      const r = await ok(crvm(rt, ["restore", "--dir", `${dataAtCheckpoint("group.img")}::/data`, path.join(data, "group.img")]));
      expect(r.stdout.toString()).toBe(`restored (id 0)\n${first.after}`);
    });
  }
});

describe("checkpoint(2) refusals (ckpt_rules)", () => {
  for (const rt of RUNTIMES) {
    it(`gives each broken rule its errno, writes nothing and leaves frozen tasks frozen, on ${rt}`, async () => {
      const data = tmpDir();
      const r = await ok(crvm(rt, ["run", "--dir", `${data}::/data`, guest("ckpt_rules"), "/data"]));
      expect(r.stderr).toBe("");
      const out = r.stdout.toString();
      for (const errno of ["EBUSY", "EPERM", "EBADF", "EINVAL", "ESRCH"]) expect(out).toMatch(new RegExp(`^${errno}: .* ${errno}$`, "m"));
      expect(out).not.toMatch(/FAILED/);
      expect(out).toMatch(/every rule kept +0, image written\nckpt_rules: ok\n$/);
      expect(fs.statSync(path.join(data, "rules.img")).size).toBe(0);
      expect(fs.statSync(path.join(data, "rules-ok.img")).size).toBeGreaterThan(0);
    });
  }
});

describe("a checkpoint of another task's subtree through a pipe (ckpt_external)", () => {
  let data: string;
  let childLines: string;
  beforeAll(async () => {
    data = tmpDir();
    const r = await ok(crvm("node", ["run", "--dir", `${data}::/data`, guest("ckpt_external"), "/data/ext.img"]));
    const out = r.stdout.toString();
    expect(out).toMatch(/^parent: checkpoint id 1 of C's subtree/m);
    expect(out).toMatch(/ckpt_external: ok\n$/);
    childLines = out.split("\n").filter((l) => l.startsWith("child: ")).map((l) => `${l}\n`).join("");
    expect(childLines).toMatch(/^child: worker 0: .*\n(.*\n)*child: 3 workers, 40 steps: ok\n$/);
  });

  for (const rt of RUNTIMES) {
    it(`restores C's subtree alone on ${rt}: C's output after the checkpoint and C's exit code`, async () => {
      const r = await ok(crvm(rt, ["restore", path.join(data, "ext.img")]), 3);
      expect(r.stdout.toString()).toBe(childLines);
    });
  }
});

describe("freezing at random moments changes nothing (freeze_chaos)", () => {
  let plain: string;
  beforeAll(async () => {
    plain = (await ok(crvm("node", ["run", guest("freeze_chaos"), "0"]))).stdout.toString();
    expect(plain).toMatch(/freeze_chaos: ok\n$/);
  });

  RUNTIMES.forEach((rt, k) => {
    const seeds = [1, 2, 3].map((s) => s + 3 * k);
    it(`gives the seed-0 output for seeds ${seeds.join(", ")} (and 0) on ${rt}`, async () => {
      for (const seed of [0, ...seeds]) {
        const r = await ok(crvm(rt, ["run", guest("freeze_chaos"), String(seed)]));
        expect(r.stdout.toString(), `seed ${seed}`).toBe(plain);
        const m = /seed \d+: (\d+) freezes \((\d+) of a sub-group\), (\d+) moves, (\d+) frozen windows checked/.exec(r.stderr);
        expect(m, r.stderr).not.toBeNull();
        if (seed === 0) expect(Number(m![1])).toBe(0);
        else {
          expect(Number(m![1]), `seed ${seed}: freezes`).toBeGreaterThan(20);
          expect(Number(m![2]), `seed ${seed}: sub-group freezes`).toBeGreaterThan(0);
          expect(Number(m![4])).toBe(Number(m![1]));
        }
      }
    });
  });
});
