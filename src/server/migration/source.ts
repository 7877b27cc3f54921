// Migration of a running container to another daemon: the source's side.
//
// The protocol (all JSON unless said otherwise; every request carries the
// target's bearer token; routes in routes.ts):
//
//  0. The source locks the container: until the migration ends, every other
//     operation on it gets a 409 and periodic checkpoints skip it.
//  1. begin: POST TARGET/v1/migrations {id, name, modules, pages}
//     id: 32 hex digits the source chose; modules: sha256 of its modules;
//     pages: ids (content hashes) of its non-zero pages, read while it runs.
//     -> 201 {have: {modules, pages}}: the ones the target has (pages of its
//     own containers, and of an unfinished earlier migration of that name,
//     which the new one takes over). 409 if the target has a container of
//     that name. From here on, the target keeps a store of pages and modules
//     for this migration.
//  2. live only, pre-copy rounds while the container keeps running:
//     POST TARGET/v1/migrations/ID/pages, an octet stream of pages (16-byte
//     id, 64 KiB) whose id the target does not have yet -> 200 {pages, bytes}.
//     Each page's id and bytes are read in one event-loop turn (no guest code
//     runs within a turn), so they agree; the target checks every page
//     against its id. Rounds stop when a round sends at most 16 pages, sends
//     no fewer than the one before, or after maxRounds (default 8).
//  3. The source freezes the container (downtime starts), notes its log's
//     end offset, and writes its image incremental against the migration:
//     meta.parent = {id: ID, digest: ID, path: "migration:ID"}, pages and
//     modules the target has are not in it.
//     POST TARGET/v1/migrations/ID/image?logStart=N, the image streamed.
//     The target decodes it with `inherited` = its store, fills in pages and
//     modules from the store, verifies everything (CRCs, page hashes, digest,
//     VM record, every page present, module hashes at instantiation),
//     restores it frozen, locked, with its log starting at N, and not yet in
//     its state directory -> 200 {acknowledged: true}: the acknowledgement.
//     If the request fails without an answer, the source asks
//     GET TARGET/v1/migrations/ID: state "acked" counts as the answer.
//  4. Acknowledged: the source removes its copy (its log is closed there, so
//     a follower of it ends exactly at offset N) and its state directory.
//  5. commit: POST TARGET/v1/migrations/ID/commit {thaw} -> 200 {thawMs}.
//     The target unlocks and thaws it (downtime ends there; thawMs says when,
//     counted from the request), then takes its first snapshot and only then
//     writes its definition to its state directory. Retried a few times.
//
// Failure before the acknowledgement: the source thaws its container (it
// never stopped being the only one that runs) and sends
// POST TARGET/v1/migrations/ID/abort, which drops the target's store and any
// container restored for it (acknowledged or not: the source kept its copy).
// An abort that does not arrive is sent again before the next migration to
// that target; meanwhile an unacknowledged migration is dropped by the target
// after `migrationTimeout` (60 s) without a byte, and an acknowledged one
// stays frozen: it never runs unless committed. The target answers 404 for
// an unknown migration, which for an abort counts as done.
//
// Failure after the acknowledgement (the commit does not arrive): the
// source's copy is gone, the target's is frozen and locked. It never runs
// twice; it runs when someone sends the commit by hand
// (POST TARGET/v1/migrations/ID/commit), and the source's answer says so.
// From the acknowledgement until the target's first snapshot after the commit
// is written, the container lives only in the target's memory: a target that
// stops in that window loses it (it never comes back to run a second time).
import type { Machine } from "../../api/machine.ts";
import { bytesToHex, Hashing, hexToBytes } from "../../snapshot/mod.ts";
import type { Container } from "../container.ts";
import type { Daemon } from "../daemon.ts";
import { ApiError } from "../errors.ts";
import { type FetchLike, PAGE_RECORD } from "./target.ts";
import { nextTurn, PageCursor } from "./pages.ts";

export interface MigrateRequest {
  /** The target daemon's base URL, e.g. http://10.0.0.2:7070. */
  to: string;
  /** The target's API token. */
  token: string;
  /** Pre-copy memory while the container runs, then freeze for the last delta. */
  live?: boolean;
  /** Most pre-copy rounds (live), default 8. */
  maxRounds?: number;
}

/** One transfer: pages and bytes sent, and how long it took. */
export interface Round {
  pages: number;
  bytes: number;
  ms: number;
}

/** What `migrateOut` did. */
export interface MigrationReport {
  id: string;
  name: string;
  target: string;
  live: boolean;
  /**
   * Freeze on the source to thaw on the target: until the commit was sent,
   * plus the time the target took from receiving it to the end of the thaw
   * (the one-way latency of the commit is left out).
   */
  downtimeMs: number;
  /** Freeze to the target's answer to the commit (an upper bound of the downtime). */
  answeredMs: number;
  /**
   * Where the downtime went: freezing, writing the image, sending it until
   * acknowledged (the target verifies and restores it), and removing the
   * source's copy, committing and thawing.
   */
  phasesMs: { freeze: number; dump: number; image: number; commit: number };
  /** Pre-copy rounds (live only). */
  rounds: Round[];
  /** The image sent while frozen. */
  final: Round & { modules: number };
  /** All bytes sent: rounds and image. */
  bytes: number;
  /** Pages and modules the target had before anything was sent. */
  known: { pages: number; modules: number };
  /** False when the commit did not arrive (the container waits frozen on the target). */
  committed: boolean;
}

const STOP_PAGES = 16;
const PAGES_PER_CHUNK = 16;
const SCAN_PER_TURN = 1024;

/**
 * Moves a running container to the daemon at `req.to` (see the protocol
 * above). Resolves once the target runs it; throws an ApiError (the
 * container still running here) if it could not be moved.
 *
 * @example
 * const report = await migrateOut(daemon, "web", { to: "http://b:7070", token, live: true });
 */
export async function migrateOut(daemon: Daemon, name: string, req: MigrateRequest): Promise<MigrationReport> {
  const c = daemon.get(name);
  const key = c.lock(`container "${name}" is migrating to ${req.to}`);
  const target = new Target(req.to, req.token, daemon.migrations.fetch);
  const id = bytesToHex(crypto.getRandomValues(new Uint8Array(16)));
  const say = (line: string) => daemon.migrations.report(`migration ${id} of "${name}" to ${target.base}: ${line}`);
  const m = c.machine!;
  const wasFrozen = m.vm.freezing;
  let frozenAt: number | null = null;
  let imageAt = 0;
  const report: MigrationReport = {
    id, name, target: target.base, live: !!req.live, downtimeMs: 0, answeredMs: 0, phasesMs: { freeze: 0, dump: 0, image: 0, commit: 0 }, rounds: [], final: { pages: 0, bytes: 0, ms: 0, modules: 0 }, bytes: 0,
    known: { pages: 0, modules: 0 }, committed: false,
  };
  try {
    await sendUnsentAborts(daemon, target);
    const hashing = await Hashing.create();
    const modules = new Map<string, string>();
    for (const t of m.vm.tasks.values()) if (t.status !== "exited") modules.set(t.module.sourceHash, t.module.name);
    const pages = new Set<string>();
    const cursor = new PageCursor(m, hashing);
    while (cursor.step(SCAN_PER_TURN, (pid) => (pages.add(pid), true))) await nextTurn();
    const begin = await target.json("POST", "/v1/migrations", { id, name, modules: [...modules.keys()], pages: [...pages] }) as { have: { pages: string[]; modules: string[] } };
    const has = new Set(begin.have.pages);
    const hasModules = new Set(begin.have.modules);
    report.known = { pages: has.size, modules: hasModules.size };
    say(`begun; the target has ${has.size} of ${pages.size} pages, ${hasModules.size} of ${modules.size} modules`);

    for (let r = 0; req.live && r < (req.maxRounds ?? 8); r++) {
      const round = await precopy(target, id, m, hashing, has);
      report.rounds.push(round);
      say(`pre-copy round ${r + 1}: ${round.pages} pages, ${round.bytes} bytes, ${round.ms.toFixed(0)} ms`);
      const before = report.rounds[r - 1];
      if (round.pages <= STOP_PAGES || (before && round.pages >= before.pages)) break;
    }

    frozenAt = performance.now();
    await c.freeze("/", key);
    report.phasesMs.freeze = performance.now() - frozenAt;
    const logStart = c.log.end;
    const chunks: Uint8Array[] = [];
    // The chunks are views of guest memory: valid while it stays frozen, which it does until this ends.
    const stats = await m.checkpoint((chunk) => chunks.push(chunk), { parent: { ref: { id, digest: id, path: `migration:${id}` }, pages: has, modules: hasModules } });
    imageAt = performance.now();
    report.phasesMs.dump = imageAt - frozenAt - report.phasesMs.freeze;
    await sendImage(target, id, logStart, chunks);
    report.final = { pages: stats.pagesStored, bytes: stats.bytes, ms: performance.now() - imageAt, modules: [...modules.keys()].filter((h) => !hasModules.has(h)).length };
    report.bytes = report.rounds.reduce((n, r) => n + r.bytes, 0) + stats.bytes;
    say(`image of ${stats.pagesStored} pages, ${stats.bytes} bytes acknowledged`);
  } catch (e) {
    await rollBack(daemon, c, key, target, id, frozenAt !== null && !wasFrozen, say, e);
    throw e;
  }

  // Acknowledged: from here on the target's copy is the container.
  const acked = performance.now();
  report.phasesMs.image = acked - imageAt;
  c.unlock(key);
  daemon.metrics.migrationsOut++;
  daemon.metrics.migrationBytes += report.bytes;
  await daemon.remove(name);
  let why = "";
  let thawedAt = 0;
  for (let attempt = 0; attempt < 4 && !report.committed; attempt++) {
    if (attempt > 0) await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    try {
      const sent = performance.now();
      const r = await target.json("POST", `/v1/migrations/${id}/commit`, { thaw: !wasFrozen }) as { thawMs?: number };
      thawedAt = typeof r?.thawMs === "number" ? sent + r.thawMs : performance.now();
      report.committed = true;
    } catch (e) {
      why = (e as Error).message;
      // Worth another try only when there was no answer or the target failed; a 404 or 409 will not change.
      if (e instanceof TargetError && e.answered !== null && e.answered < 500) break;
    }
  }
  report.answeredMs = performance.now() - frozenAt!;
  report.downtimeMs = report.committed ? thawedAt - frozenAt! : report.answeredMs;
  report.phasesMs.commit = report.downtimeMs - (acked - frozenAt!);
  if (!report.committed) {
    say(`the commit failed (${why}); the container waits frozen on the target`);
    throw new ApiError(502, `container "${name}" moved to ${target.base} (migration ${id}), but the commit did not arrive (${why}): ` +
      `it waits there frozen; POST ${target.base}/v1/migrations/${id}/commit runs it`);
  }
  daemon.metrics.migrationDowntimeSeconds += report.downtimeMs / 1000;
  say(`committed; downtime ${report.downtimeMs.toFixed(0)} ms, ${report.bytes} bytes`);
  return report;
}

/** One pre-copy round: every page whose id the target does not have, streamed as it is read. */
async function precopy(target: Target, id: string, m: Machine, hashing: Hashing, has: Set<string>): Promise<Round> {
  const t0 = performance.now();
  const cursor = new PageCursor(m, hashing);
  const sent = new Set<string>();
  let more = true;
  const body = new ReadableStream<Uint8Array>({
    async pull(ctrl) {
      for (;;) {
        const batch: [string, Uint8Array][] = [];
        let budget = SCAN_PER_TURN;
        // Read and copied in one turn: the id and the bytes agree.
        while (more && batch.length < PAGES_PER_CHUNK && budget > 0) {
          more = cursor.step(Math.min(budget, 64), (pid, page) => {
            if (!has.has(pid) && !sent.has(pid)) {
              sent.add(pid);
              batch.push([pid, page]);
            }
            return batch.length < PAGES_PER_CHUNK;
          });
          budget -= 64;
        }
        if (batch.length > 0) {
          const out = new Uint8Array(batch.length * PAGE_RECORD);
          batch.forEach(([pid, page], i) => {
            out.set(hexToBytes(pid), i * PAGE_RECORD);
            out.set(page, i * PAGE_RECORD + 16);
          });
          ctrl.enqueue(out);
          return;
        }
        if (!more) return ctrl.close();
        await nextTurn();
      }
    },
  });
  const r = await target.json("POST", `/v1/migrations/${id}/pages`, body) as { pages: number; bytes: number };
  if (r.pages !== sent.size) throw new ApiError(502, `the target took ${r.pages} pages of ${sent.size}`);
  for (const pid of sent) has.add(pid);
  return { pages: sent.size, bytes: r.bytes, ms: performance.now() - t0 };
}

/** Sends the image; resolves once acknowledged. A request that fails without an answer is settled by asking the target. */
async function sendImage(target: Target, id: string, logStart: number, chunks: Uint8Array[]): Promise<void> {
  try {
    await target.json("POST", `/v1/migrations/${id}/image?logStart=${logStart}`, coalesce(chunks));
  } catch (e) {
    if (!(e instanceof TargetError) || e.answered !== null) throw e;
    let state: string | undefined;
    try {
      state = (await target.json("GET", `/v1/migrations/${id}`) as { state: string }).state;
    } catch {
      throw e;
    }
    if (state !== "acked") throw e;
  }
}

/** Thaws the container if the migration froze it, unlocks it, and tells the target to drop what it has (or remembers to). */
async function rollBack(daemon: Daemon, c: Container, key: symbol, target: Target, id: string, thaw: boolean, say: (l: string) => void, e: unknown): Promise<void> {
  try {
    if (thaw && c.machine) await c.thaw("/", key);
  } finally {
    c.unlock(key);
  }
  say(`failed (${(e as Error).message}); the container runs here`);
  try {
    await target.abort(id);
  } catch (e) {
    if (!(e instanceof TargetError) || e.answered !== null) return say(`abort refused: ${(e as Error).message}`);
    const set = daemon.migrations.unsentAborts.get(target.base) ?? new Set();
    set.add(id);
    daemon.migrations.unsentAborts.set(target.base, set);
  }
}

/** Aborts that did not arrive before; a target that does not answer fails this migration too. */
async function sendUnsentAborts(daemon: Daemon, target: Target): Promise<void> {
  const set = daemon.migrations.unsentAborts.get(target.base);
  for (const id of set ?? []) {
    try {
      await target.abort(id);
    } catch (e) {
      if (!(e instanceof TargetError) || e.answered !== null) daemon.migrations.report(`abort of migration ${id} refused: ${(e as Error).message}`);
      else throw e;
    }
    set!.delete(id);
  }
}

/** The image's chunks (small records and 64 KiB page views) as a stream of about 1 MiB pieces. */
function coalesce(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(ctrl) {
      if (i >= chunks.length) return ctrl.close();
      let n = 0, j = i;
      while (j < chunks.length && n < 1 << 20) n += chunks[j++]!.length;
      const out = new Uint8Array(n);
      for (let o = 0; i < j; i++) {
        out.set(chunks[i]!, o);
        o += chunks[i]!.length;
      }
      ctrl.enqueue(out);
    },
  });
}

/**
 * A request to the target that failed: `answered` is its HTTP status, or
 * null when there was no answer (a refused or cut connection: the target
 * may or may not have done what was asked).
 */
class TargetError extends ApiError {
  constructor(message: string, readonly answered: number | null) {
    super(answered === 409 ? 409 : 502, message);
  }
}

/** The target daemon's API as the source uses it. */
class Target {
  readonly base: string;

  constructor(url: string, private readonly token: string, private readonly fetch: FetchLike) {
    this.base = url.replace(/\/+$/, "");
  }

  /** A request; its JSON answer, or an ApiError: 409 if the target said 409, else 502 with the target's message. */
  async json(method: string, path: string, body?: unknown): Promise<unknown> {
    const stream = body instanceof ReadableStream;
    const init: RequestInit & { duplex?: "half" } = {
      method,
      headers: { Authorization: `Bearer ${this.token}`, "Content-Type": stream ? "application/octet-stream" : "application/json" },
      ...(body === undefined ? {} : { body: stream ? body : JSON.stringify(body) }),
      // Node's fetch sends a stream body only with this (Deno and Bun ignore it).
      ...(stream ? { duplex: "half" } : {}),
    };
    let res: Response;
    let text: string;
    try {
      res = await this.fetch(this.base + path, init);
      text = await res.text();
    } catch (e) {
      throw new TargetError(`no answer from ${this.base} to ${method} ${path}: ${(e as Error).message}`, null);
    }
    let value: unknown = null;
    try {
      value = JSON.parse(text);
    } catch {
      // Not JSON: reported below with the status.
    }
    if (res.ok) return value;
    const msg = (value as { error?: string } | null)?.error ?? text.slice(0, 200);
    throw new TargetError(`${this.base} answered ${res.status} to ${method} ${path}: ${msg}`, res.status);
  }

  /** Asks the target to drop a migration; a 404 (it has none) counts as done. */
  async abort(id: string): Promise<void> {
    try {
      await this.json("POST", `/v1/migrations/${id}/abort`, {});
    } catch (e) {
      if (e instanceof TargetError && e.answered === 404) return;
      throw e;
    }
  }
}
