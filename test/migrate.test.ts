// Migration between `crvm serve` daemons on different runtimes, over real
// sockets on loopback, through the HTTP API (POST /v1/containers/NAME/migrate).
// What a migrated container prints — its log on the source until the
// hand-over, then its log on the target — must be byte for byte what a plain
// run prints. Faults (the target killed while the image arrives or while it
// restores, a connection cut) must leave the container running on the
// source, and a retried migration must succeed.
import * as fs from "node:fs";
import * as net from "node:net";
import { afterAll, describe, expect, it } from "vitest";
import { crvm, guest, type Served, startServe } from "./helpers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const started: Served[] = [];
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
});

async function serve(rt: "deno" | "bun", stateDir?: string): Promise<Served> {
  const s = await startServe(rt, stateDir ? { stateDir } : {});
  started.push(s);
  return s;
}

const token = (s: Served) => fs.readFileSync(s.tokenFile, "utf8").trim();

async function call(s: Served, method: string, route: string, body?: unknown, base = s.url): Promise<Response> {
  return await fetch(base + route, { method, headers: { Authorization: `Bearer ${token(s)}` }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
}

async function api(s: Served, method: string, route: string, body?: unknown): Promise<any> {
  const res = await call(s, method, route, body);
  const value = await res.json();
  if (!res.ok) throw new Error(`${method} ${route} on ${s.rt}: ${res.status} ${JSON.stringify(value)}`);
  return value;
}

async function until(what: string, cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** The container's log, followed until the daemon closes it (exit, or the hand-over of a migration). */
function follow(s: Served, name: string): Promise<string> {
  return call(s, "GET", `/v1/containers/${name}/logs?follow=1`).then((res) => {
    expect(res.status).toBe(200);
    return res.text();
  });
}

async function logText(s: Served, name: string): Promise<{ start: number; text: string }> {
  const res = await call(s, "GET", `/v1/containers/${name}/logs`);
  return { start: Number(res.headers.get("X-Crvm-Log-Start")), text: await res.text() };
}

async function exitedWith(s: Served, name: string): Promise<number | null> {
  await until(`${name} to exit on ${s.rt}`, async () => (await api(s, "GET", `/v1/containers/${name}`)).status === "exited", 120_000);
  return (await api(s, "GET", `/v1/containers/${name}`)).exitCode;
}

/** Running on `s`, and its log grows. */
async function runsOn(s: Served, name: string): Promise<void> {
  const x = await api(s, "GET", `/v1/containers/${name}`);
  expect(x.status, `${name} on ${s.rt}`).toBe("running");
  await until(`${name}'s log to grow on ${s.rt}`, async () => (await api(s, "GET", `/v1/containers/${name}`)).log.end > x.log.end, 10_000);
}

function migrate(from: Served, to: Served, name: string, opts: { live?: boolean; via?: string } = {}): Promise<Response> {
  return call(from, "POST", `/v1/containers/${name}/migrate`, { to: opts.via ?? to.url, token: token(to), ...(opts.live ? { live: true } : {}) });
}

/**
 * A TCP proxy in front of a daemon, so that a test can watch what is
 * uploaded through it and cut a connection. `upstream` can change (a
 * restarted daemon listens on another port).
 */
function proxy(upstream: () => string): Promise<{ url: string; onUpload: ((bytes: number, cut: () => void) => void) | null; close(): void }> {
  const p = {
    url: "",
    onUpload: null as ((bytes: number, cut: () => void) => void) | null,
    close: () => server.close(),
  };
  const server = net.createServer((client) => {
    const u = new URL(upstream());
    const up = net.connect(Number(u.port), u.hostname);
    let bytes = 0;
    const cut = () => {
      client.resetAndDestroy();
      up.resetAndDestroy();
    };
    client.on("data", (d) => {
      bytes += d.length;
      up.write(d);
      p.onUpload?.(bytes, cut);
    });
    up.on("data", (d) => client.write(d));
    client.on("close", () => up.destroy());
    up.on("close", () => client.destroy());
    client.on("error", () => up.destroy());
    up.on("error", () => client.destroy());
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => {
    p.url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
    resolve(p);
  }));
}

describe("migration between daemons (crvm serve on Bun and Deno)", () => {
  it("Bun -> Deno (stop-and-copy) -> Bun (live) with the output of a plain run", async () => {
    const args = ["32", "1500", "64"];
    const plainRun = crvm("bun", ["run", guest("dirty"), ...args]);
    const [A, B] = await Promise.all([serve("bun"), serve("deno")]);
    await api(A, "POST", "/v1/containers", { name: "nomad", module: { path: guest("dirty") }, args });
    const onA = follow(A, "nomad");
    await until("steps on A", async () => (await logText(A, "nomad")).text.includes("step 50 "));

    const there = await migrate(A, B, "nomad");
    const r1 = await there.json();
    expect(there.status, JSON.stringify(r1)).toBe(200);
    expect(r1).toMatchObject({ live: false, rounds: [], committed: true, target: B.url });
    expect(r1.final.pages).toBeGreaterThanOrEqual(512);
    const firstPart = await onA;
    expect((await call(A, "GET", "/v1/containers/nomad")).status).toBe(404);
    const onB = follow(B, "nomad");
    await until("steps on B", async () => (await logText(B, "nomad")).text.split("\n").length > 100);

    const back = await migrate(B, A, "nomad", { live: true });
    const r2 = await back.json();
    expect(back.status, JSON.stringify(r2)).toBe(200);
    expect(r2).toMatchObject({ live: true, committed: true, target: A.url });
    // The first round sends the 32 MiB, later rounds and the final image only what the guest wrote meanwhile.
    expect(r2.rounds[0].pages).toBeGreaterThanOrEqual(512);
    for (const r of r2.rounds.slice(1)) expect(r.pages).toBeLessThanOrEqual(16);
    expect(r2.final.pages).toBeLessThanOrEqual(16);
    expect(r2.downtimeMs).toBeLessThan(r1.downtimeMs * 2 + 1000);
    const secondPart = await onB;

    expect(await exitedWith(A, "nomad")).toBe(0);
    const third = await logText(A, "nomad");
    expect(third.start).toBe(Buffer.byteLength(firstPart + secondPart));
    const plain = await plainRun;
    expect(plain.code, plain.stderr).toBe(0);
    expect(firstPart + secondPart + third.text).toBe(plain.stdout.toString());
    const metrics = await (await call(A, "GET", "/v1/metrics")).text();
    expect(metrics).toContain(`crvm_migrations_total{direction="out"} 1`);
    expect(metrics).toContain(`crvm_migrations_total{direction="in"} 1`);
  });

  it("faults: the target killed in the transfer, killed in the restore, a cut connection; the source runs on, a retry succeeds", async () => {
    const args = ["64", "3000", "64"];
    const plainRun = crvm("deno", ["run", guest("dirty"), ...args]);
    const A = await serve("deno");
    let B = await serve("bun");
    const P = await proxy(() => B.url);
    const restartB = async () => {
      await B.crash();
      B = await serve("bun", B.stateDir);
      // It kept nothing: no container, no migration.
      expect((await api(B, "GET", "/v1/containers")).containers).toEqual([]);
      expect((await api(B, "GET", "/v1/migrations")).migrations).toEqual([]);
    };
    try {
      await api(A, "POST", "/v1/containers", { name: "d", module: { path: guest("dirty") }, args });
      const onA = follow(A, "d");
      await until("steps on A", async () => (await logText(A, "d")).text.includes("step 20 "));

      // 1. The target dies while the image (64 MiB) arrives.
      let killed = false;
      P.onUpload = (bytes) => {
        if (bytes > 16 << 20 && !killed) {
          killed = true;
          void B.crash();
        }
      };
      const r1 = await migrate(A, B, "d", { via: P.url });
      expect(r1.status).toBe(502);
      expect(killed).toBe(true);
      await runsOn(A, "d");
      P.onUpload = null;
      await restartB();

      // 2. The target dies while it restores the image (it has said so on stderr).
      let watching = true;
      const restoring = (async () => {
        while (watching && !/restoring "d"/.test(B.stderr())) await sleep(1);
        if (watching) await B.crash();
        return watching;
      })();
      const r2 = await migrate(A, B, "d", { via: P.url });
      watching = false;
      expect(await restoring).toBe(true);
      expect(r2.status).toBe(502);
      await runsOn(A, "d");
      await restartB();

      // 3. The connection is cut in the middle of a pre-copy round.
      let cuts = 0;
      P.onUpload = (bytes, cut) => {
        if (bytes > 8 << 20 && cuts === 0) {
          cuts++;
          cut();
        }
      };
      const r3 = await migrate(A, B, "d", { via: P.url, live: true });
      expect(r3.status).toBe(502);
      expect(cuts).toBe(1);
      await runsOn(A, "d");
      await until("the target to drop the cut migration", async () => (await api(B, "GET", "/v1/migrations")).migrations.length === 0, 10_000);
      expect((await api(B, "GET", "/v1/containers")).containers).toEqual([]);

      // The retry succeeds, and the output is the plain run's.
      const r4 = await migrate(A, B, "d", { via: P.url, live: true });
      const report = await r4.json();
      expect(r4.status, JSON.stringify(report)).toBe(200);
      expect(report.committed).toBe(true);
      const before = await onA;
      expect(await exitedWith(B, "d")).toBe(0);
      const after = await logText(B, "d");
      expect(after.start).toBe(Buffer.byteLength(before));
      const plain = await plainRun;
      expect(plain.code, plain.stderr).toBe(0);
      expect(before + after.text).toBe(plain.stdout.toString());
    } finally {
      P.close();
    }
  });
});
