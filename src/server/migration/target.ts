// Migration, the target's side: what it keeps per incoming migration (the
// pages and modules it will not be sent again), and the steps of the
// protocol written down in source.ts.
import { SnapshotError } from "../../errors.ts";
import { bytesToHex, decodeSnapshotStream, Hashing, PAGE_SIZE, type SnapshotImage } from "../../snapshot/mod.ts";
import type { Container } from "../container.ts";
import type { Daemon } from "../daemon.ts";
import { ApiError } from "../errors.ts";
import { PageCursor } from "./pages.ts";

/** The outgoing HTTP a migration uses: the global fetch, or (in tests) another app's `request`. */
export type FetchLike = (url: string, init: RequestInit) => Promise<Response>;

/** A page on the wire of the pages route: its 16-byte id, then its 64 KiB. */
export const PAGE_RECORD = 16 + PAGE_SIZE;

/**
 * open: pages may come; receiving: the image is arriving; restoring: it is
 * being restored; acked: restored frozen, waiting for the commit;
 * committed: running here.
 */
export type IncomingState = "open" | "receiving" | "restoring" | "acked" | "committed";

/** One migration into this daemon. */
export class Incoming {
  /** Pages the source need not send: the pre-copy rounds', and those found in this daemon at the start. */
  readonly pages = new Map<string, Uint8Array>();
  /** Module sources by hash, from this daemon's own tasks. */
  readonly modules = new Map<string, Uint8Array>();
  state: IncomingState = "open";
  /** A request is working on it (one at a time). */
  busy = false;
  aborted = false;
  /** Bytes received in page rounds and the image. */
  bytes = 0;
  lastActivity = performance.now();
  container: Container | null = null;
  key: symbol | null = null;
  module: Uint8Array | null = null;
  timer: ReturnType<typeof setTimeout> | null = null;

  constructor(readonly id: string, readonly name: string) {}

  info() {
    return { id: this.id, name: this.name, state: this.state, pages: this.pages.size, bytes: this.bytes };
  }
}

/** The daemon's migrations in both directions. */
export class Migrations {
  readonly incoming = new Map<string, Incoming>();
  /** Source side: migrations whose abort did not reach their target, by target URL; sent again before the next migration there. */
  readonly unsentAborts = new Map<string, Set<string>>();
  readonly fetch: FetchLike;

  constructor(fetch: FetchLike | undefined, readonly timeoutMs: number, readonly report: (line: string) => void) {
    this.fetch = fetch ?? ((url, init) => globalThis.fetch(url, init));
  }

  get(id: string): Incoming {
    const m = this.incoming.get(id);
    if (!m) throw new ApiError(404, `no migration ${id}`);
    return m;
  }

  /**
   * Restarts the idle timer. A migration that is neither acknowledged nor
   * committed is dropped after `timeoutMs` without a byte; an acknowledged
   * one waits for its commit or abort for ever (it may be the only copy); a
   * committed one is forgotten (a repeated commit then gets a 404).
   */
  touch(m: Incoming): void {
    m.lastActivity = performance.now();
    if (m.timer) clearTimeout(m.timer);
    m.timer = null;
    if (m.state === "acked") return;
    m.timer = setTimeout(() => this.#expire(m), this.timeoutMs);
  }

  #expire(m: Incoming): void {
    m.timer = null;
    if (this.incoming.get(m.id) !== m) return;
    if (m.state === "committed") return void this.incoming.delete(m.id);
    const idle = performance.now() - m.lastActivity;
    if (m.state === "restoring" || idle < this.timeoutMs) {
      m.timer = setTimeout(() => this.#expire(m), Math.max(10, this.timeoutMs - (m.state === "restoring" ? 0 : idle)));
      return;
    }
    this.report(`migration ${m.id} of "${m.name}": nothing for ${Math.round(idle / 1000)} s, dropped`);
    m.aborted = true;
    this.drop(m);
  }

  drop(m: Incoming): void {
    if (m.timer) clearTimeout(m.timer);
    m.timer = null;
    m.pages.clear();
    if (this.incoming.get(m.id) === m) this.incoming.delete(m.id);
  }

  close(): void {
    for (const m of this.incoming.values()) if (m.timer) clearTimeout(m.timer);
  }
}

export interface BeginRequest {
  id: string;
  name: string;
  /** sha256 of the source's modules. */
  modules: string[];
  /** Ids of the source's non-zero pages. */
  pages: string[];
}

/**
 * Opens an incoming migration and answers which of the offered pages and
 * modules this daemon has: pages left by an earlier, unfinished migration
 * of the same name, and pages and modules of its own running containers
 * (copied now, so they stay as they are).
 */
export async function beginIncoming(daemon: Daemon, req: BeginRequest): Promise<{ pages: string[]; modules: string[] }> {
  const all = daemon.migrations;
  if (daemon.containers.has(req.name)) throw new ApiError(409, `container "${req.name}" exists`);
  if (all.incoming.has(req.id)) throw new ApiError(409, `migration ${req.id} exists`);
  const m = new Incoming(req.id, req.name);
  for (const old of all.incoming.values()) {
    if (old.name !== req.name || old.state === "committed") continue;
    if (old.busy || old.state !== "open") throw new ApiError(409, `migration ${old.id} of "${req.name}" is in progress (${old.state}); abort it first`);
    for (const [id, page] of old.pages) m.pages.set(id, page);
    all.report(`migration ${req.id} of "${req.name}" takes over the ${old.pages.size} pages of unfinished migration ${old.id}`);
    old.aborted = true;
    all.drop(old);
  }
  all.incoming.set(m.id, m);
  all.touch(m);
  m.busy = true;
  try {
    const wantModules = new Set(req.modules);
    for (const c of daemon.containers.values()) {
      for (const t of c.machine?.vm.tasks.values() ?? []) {
        if (wantModules.has(t.module.sourceHash)) m.modules.set(t.module.sourceHash, t.module.source);
      }
    }
    const wanted = new Set(req.pages.filter((id) => !m.pages.has(id)));
    if (wanted.size > 0) await findPages(daemon, wanted, m.pages);
  } finally {
    m.busy = false;
  }
  if (m.aborted) throw new ApiError(409, `migration ${m.id} was aborted`);
  all.report(`migration ${m.id} of "${m.name}" begins; ${m.pages.size} pages and ${m.modules.size} modules are here already`);
  return { pages: req.pages.filter((id) => m.pages.has(id)), modules: req.modules.filter((h) => m.modules.has(h)) };
}

/** Copies the pages with these ids out of the memories of this daemon's containers (a slice per event-loop turn). */
async function findPages(daemon: Daemon, wanted: Set<string>, into: Map<string, Uint8Array>): Promise<void> {
  const hashing = await Hashing.create();
  for (const c of [...daemon.containers.values()]) {
    if (!c.machine) continue;
    const cursor = new PageCursor(c.machine, hashing);
    let more = true;
    while (more && wanted.size > 0) {
      more = cursor.step(1024, (id, page) => {
        if (wanted.delete(id)) into.set(id, page.slice());
        return true;
      });
      await new Promise((r) => setTimeout(r, 0));
    }
  }
}

/** Stores a pre-copy round's pages (each checked against its id); returns how many came. */
export async function receivePages(all: Migrations, m: Incoming, body: AsyncIterable<Uint8Array>, limit: number): Promise<{ pages: number; bytes: number }> {
  if (m.busy || m.state !== "open") throw new ApiError(409, `migration ${m.id} takes no pages now (${m.busy ? "busy" : m.state})`);
  m.busy = true;
  const hashing = await Hashing.create();
  let rec = new Uint8Array(PAGE_RECORD), fill = 0, pages = 0, bytes = 0;
  try {
    for await (const chunk of body) {
      if (m.aborted) throw new ApiError(409, `migration ${m.id} was aborted`);
      bytes += chunk.length;
      m.bytes += chunk.length;
      m.lastActivity = performance.now();
      for (let at = 0; at < chunk.length;) {
        const n = Math.min(PAGE_RECORD - fill, chunk.length - at);
        rec.set(chunk.subarray(at, at + n), fill);
        fill += n;
        at += n;
        if (fill < PAGE_RECORD) continue;
        const id = bytesToHex(rec.subarray(0, 16));
        const page = rec.subarray(16);
        if (hashing.pageId(page) !== id) throw new ApiError(422, `migration ${m.id}: page ${pages} does not match its id ${id}`);
        if (!m.pages.has(id)) {
          if ((m.pages.size + 1) * PAGE_SIZE > limit) throw new ApiError(413, `migration ${m.id}: more than ${limit} bytes of pages`);
          m.pages.set(id, page);
        }
        pages++;
        rec = new Uint8Array(PAGE_RECORD);
        fill = 0;
      }
    }
    if (fill !== 0) throw new ApiError(400, `migration ${m.id}: the pages end in the middle of a page`);
    return { pages, bytes };
  } finally {
    m.busy = false;
    all.touch(m);
  }
}

/**
 * Reads the final image (incremental against the migration's pages and
 * modules), verifies it completely, restores it frozen and locked: the
 * acknowledgement. Any failure leaves nothing of the migration behind.
 */
export async function receiveImage(daemon: Daemon, m: Incoming, body: AsyncIterable<Uint8Array>, logStart: number): Promise<Container> {
  const all = daemon.migrations;
  if (m.busy || m.state !== "open") throw new ApiError(409, `migration ${m.id} takes no image now (${m.busy ? "busy" : m.state})`);
  m.busy = true;
  m.state = "receiving";
  all.touch(m);
  let c: Container | null = null;
  try {
    const counted = async function* () {
      for await (const chunk of body) {
        if (m.aborted) throw new ApiError(409, `migration ${m.id} was aborted`);
        m.bytes += chunk.length;
        m.lastActivity = performance.now();
        yield chunk;
      }
    };
    const image = await decodeSnapshotStream(counted(), { name: `migration ${m.id} of "${m.name}"`, inherited: (id) => m.pages.has(id) });
    resolveParent(m, image);
    m.state = "restoring";
    all.report(`migration ${m.id}: restoring "${m.name}" (${image.vm.tasks.length} tasks)`);
    c = await daemon.adopt(m.name, image, { frozen: true, logStart, incoming: true });
    if (m.aborted) throw new ApiError(409, `migration ${m.id} was aborted`);
    m.key = c.lock(`container "${m.name}" waits for the commit of migration ${m.id} (POST /v1/migrations/${m.id}/commit runs it here, .../abort drops it)`);
    m.container = c;
    m.module = image.modules[0]!.source;
    m.state = "acked";
    m.pages.clear();
    m.busy = false;
    all.touch(m);
    all.report(`migration ${m.id}: "${m.name}" restored frozen, acknowledged`);
    return c;
  } catch (e) {
    if (c && daemon.containers.get(m.name) === c) await daemon.remove(m.name, m.key ?? undefined);
    m.busy = false;
    m.aborted = true;
    all.drop(m);
    all.report(`migration ${m.id} of "${m.name}" failed: ${(e as Error).message}`);
    throw e;
  }
}

/** Fills in what the image takes from the migration (its parent): pages and module sources. */
function resolveParent(m: Incoming, image: SnapshotImage): void {
  const ref = image.meta.parent;
  const fail = (why: string) => {
    throw new SnapshotError(`Cannot restore migration ${m.id} of "${m.name}": ${why}`);
  };
  if (ref && (ref.id !== m.id || ref.digest !== m.id)) fail(`the image is incremental against ${ref.id}, not this migration`);
  for (const t of image.vm.tasks) {
    for (const [index, id] of t.memory.map) {
      if (image.pages.has(id)) continue;
      const page = m.pages.get(id);
      if (!page) fail(`page ${index} of task ${t.pid} was never sent`);
      image.pages.set(id, page!);
    }
  }
  for (const mod of image.modules) {
    if (!mod.inherited) continue;
    const source = m.modules.get(mod.sourceHash);
    if (!source) fail(`module ${mod.name} was neither sent nor here`);
    mod.source = source!;
    mod.inherited = false;
  }
}

/**
 * The source has destroyed its copy: the container runs here from now on
 * (`thaw: false` keeps a container that was frozen at the source frozen).
 * Resolves with how long the thaw took from the call.
 */
export async function commitIncoming(daemon: Daemon, m: Incoming, thaw: boolean): Promise<{ container: Container; thawMs: number }> {
  const t0 = performance.now();
  const all = daemon.migrations;
  if (m.state === "committed") return { container: m.container!, thawMs: 0 };
  if (m.state !== "acked") throw new ApiError(409, `migration ${m.id} is not acknowledged (${m.state})`);
  const c = m.container!;
  const module = m.module!;
  c.unlock(m.key!);
  m.state = "committed";
  m.module = null;
  all.touch(m);
  daemon.metrics.migrationsIn++;
  if (thaw) await c.thaw("/");
  const thawMs = performance.now() - t0;
  // Durable here after the thaw (not part of the downtime): its first snapshot, then the definition
  // that makes a restarted daemon restore it from that snapshot. A stop in between forgets it rather
  // than starting it again from the module's start.
  void (async () => {
    await daemon.snapshot(c);
    daemon.persist(c, module);
  })().catch((e) => all.report(`migration ${m.id}: first snapshot of "${m.name}" failed: ${(e as Error).message}`));
  all.report(`migration ${m.id}: "${m.name}" committed, ${thaw ? "running" : "left frozen"}`);
  return { container: c, thawMs };
}

/** Drops everything of a migration that is not committed, the frozen container of an acknowledged one included. */
export async function abortIncoming(daemon: Daemon, m: Incoming): Promise<void> {
  if (m.state === "committed") throw new ApiError(409, `migration ${m.id} is committed: "${m.name}" runs here`);
  m.aborted = true;
  if (m.state === "acked" && m.container && daemon.containers.get(m.name) === m.container) await daemon.remove(m.name, m.key!);
  daemon.migrations.drop(m);
  daemon.migrations.report(`migration ${m.id} of "${m.name}" aborted (${m.state})`);
}
