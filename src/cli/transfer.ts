// The CLI commands that move a module or an image to or from a `crvm serve`
// daemon: run --host, checkpoint, restore --host, migrate. Images stream
// (never whole in memory here), with a progress bar when stderr is a terminal.
import type { DirSpec } from "../api/machine.ts";
import { readModuleFile } from "../api/modules.ts";
import { UsageError } from "../errors.ts";
import { type Host, HostFsError, progressBar } from "../host/mod.ts";
import { Client, RemoteError, seg } from "./client.ts";
import type { MigrationReport } from "../server/migration/source.ts";
import { type ContainerSummary, followLogs, formatBytes, formatTable, print, printJson, type RemoteOptions } from "./remote.ts";

const CHUNK = 1 << 20;

/**
 * `crvm checkpoint NAME -o FILE`: the image streamed into FILE atomically (a
 * temporary file next to it, renamed at the end: a failed transfer leaves
 * the old FILE as it was). `-o -` writes it to stdout.
 */
export async function checkpointCommand(host: Host, name: string, o: RemoteOptions & { output: string; leaveRunning?: boolean; pid?: number }): Promise<number> {
  const client = Client.open(host, o);
  const body = { ...(o.pid !== undefined ? { pid: o.pid } : {}), ...(o.leaveRunning ? { leaveRunning: true } : {}) };
  const toStdout = o.output === "-";
  const file = toStdout ? "-" : host.resolvePath(o.output);
  const tmp = toStdout ? "" : `${host.dirname(file)}/.${file.slice(host.dirname(file).length + 1)}.${host.pid()}.${Date.now().toString(36)}.tmp`;
  let bytes = 0;
  if (toStdout) {
    const res = await client.request("POST", `/v1/containers/${seg(name)}/checkpoint`, { json: body });
    for await (const c of client.chunks(res)) host.stdio.write(1, c), (bytes += c.length);
  } else {
    // Opened before asking: a checkpoint stops the container, so a file that cannot be written must fail first.
    const fd = openForWriting(host, tmp, o.output);
    const bar = progressBar(`checkpoint ${name}`);
    let ok = false;
    try {
      const res = await client.request("POST", `/v1/containers/${seg(name)}/checkpoint`, { json: body });
      for await (const c of client.chunks(res)) {
        for (let off = 0; off < c.length;) off += host.fs.write(fd, c.subarray(off), null);
        bytes += c.length;
        bar.update(formatBytes(bytes), bytes, bytes);
      }
      if (bytes === 0) throw new RemoteError(`crvm serve at ${client.url} sent an empty image for "${name}"`);
      host.fs.fsync(fd);
      ok = true;
    } finally {
      bar.stop();
      host.fs.close(fd);
      if (!ok) tryUnlink(host, tmp);
    }
    try {
      host.fs.rename(tmp, file);
    } catch (e) {
      tryUnlink(host, tmp);
      throw new UsageError(`-o "${o.output}": ${(e as Error).message}`);
    }
  }
  const report = { name, file: toStdout ? "-" : file, bytes, leaveRunning: !!o.leaveRunning };
  if (o.json && !toStdout) return printJson(host, report), 0;
  print(host, `checkpointed ${name}${o.pid !== undefined ? ` (task ${o.pid} and its subtree)` : ""} to ${toStdout ? "stdout" : o.output} (${formatBytes(bytes)})${o.leaveRunning || o.pid !== undefined ? "" : "; it is stopped"}`, toStdout ? 2 : 1);
  return 0;
}

function openForWriting(host: Host, path: string, shown: string): number {
  try {
    return host.fs.open(path, { write: true, create: true, truncate: true }, 0o644);
  } catch (e) {
    throw new UsageError(`-o "${shown}": cannot write there (${e instanceof HostFsError ? e.code : (e as Error).message})`);
  }
}

function tryUnlink(host: Host, path: string): void {
  try {
    host.fs.unlink(path);
  } catch { /* already gone */ }
}

/** An image file (or stdin: "-") as a stream of chunks, gunzipped if it is gzip, counting the bytes read for a progress bar. */
function imageStream(host: Host, file: string, onRead: (done: number, total: number) => void): ReadableStream<Uint8Array> {
  if (file === "-") {
    let done = 0;
    return new ReadableStream({
      async pull(ctrl) {
        const c = await host.stdio.read(CHUNK);
        if (c === null) return ctrl.close();
        done += c.length;
        onRead(done, done);
        ctrl.enqueue(c);
      },
    });
  }
  const path = host.resolvePath(file);
  let fd: number;
  try {
    fd = host.fs.open(path, { read: true });
  } catch (e) {
    const why = e instanceof HostFsError && e.code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new UsageError(`Cannot read snapshot "${file}": ${why}`);
  }
  const total = Number(host.fs.fstat(fd).size);
  const head = new Uint8Array(2);
  const gzip = host.fs.read(fd, head, 0n) === 2 && head[0] === 0x1f && head[1] === 0x8b;
  let done = 0;
  const raw = new ReadableStream<Uint8Array>({
    pull(ctrl) {
      const buf = new Uint8Array(CHUNK);
      const n = host.fs.read(fd, buf, BigInt(done));
      if (n === 0) {
        host.fs.close(fd);
        return ctrl.close();
      }
      done += n;
      onRead(done, total);
      ctrl.enqueue(buf.subarray(0, n));
    },
    cancel: () => host.fs.close(fd),
  });
  return gzip ? raw.pipeThrough(new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>) : raw;
}

/** The base name of a path without its extension: `/x/web.snap` → `web`. */
export function baseName(path: string): string {
  const b = (path.replace(/\/+$/, "").split("/").pop() ?? path).replace(/\.gz$/, "");
  const i = b.lastIndexOf(".");
  return i > 0 ? b.slice(0, i) : b;
}

/** `crvm restore --host URL FILE`: streams the image to the daemon, which restores it as container NAME. */
export async function restoreRemote(host: Host, file: string, o: RemoteOptions & { name?: string; frozen?: boolean }): Promise<number> {
  if (file === "-" && o.name === undefined) throw new UsageError("restore --host from stdin needs --name NAME");
  const name = o.name ?? baseName(file);
  const client = Client.open(host, o);
  const bar = progressBar(`restore ${name}`);
  let r: ContainerSummary;
  try {
    const body = imageStream(host, file, (done, total) => bar.update(formatBytes(done), done, total));
    r = await client.json<ContainerSummary>("POST", `/v1/containers/${seg(name)}/restore`, { body, query: { frozen: o.frozen ? 1 : undefined } });
  } finally {
    bar.stop();
  }
  if (o.json) return printJson(host, r), 0;
  print(host, `restored ${r.name}: ${r.tasks} task${r.tasks === 1 ? "" : "s"}, ${r.status}`);
  return 0;
}

export interface RunRemoteOptions extends RemoteOptions {
  module: string;
  args: string[];
  name?: string;
  detach?: boolean;
  dirs: DirSpec[];
  tmpfs: string[];
  env: string[];
  cgroupfs: boolean;
  maxTasks?: number;
  maxMemoryPages?: number;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

/**
 * `crvm run --host URL MODULE ARGS`: uploads the module, starts container
 * NAME, then (unless `detach`) prints its log to the end and returns its
 * exit code.
 */
export async function runRemote(host: Host, o: RunRemoteOptions): Promise<number> {
  const client = Client.open(host, o);
  const name = o.name ?? baseName(o.module);
  const bytes = await readModuleFile(host, o.module);
  const req = {
    name,
    module: { base64: base64(bytes), name: o.module },
    args: o.args,
    env: o.env,
    // Paths on the daemon's machine; relative ones are taken from here (the usual case is a daemon on this machine).
    dirs: o.dirs.map((d) => ({ host: host.resolvePath(d.host), guest: d.guest })),
    tmpfs: o.tmpfs,
    ...(o.cgroupfs ? {} : { cgroupfs: false }),
    ...(o.maxTasks !== undefined ? { maxTasks: o.maxTasks } : {}),
    ...(o.maxMemoryPages !== undefined ? { maxMemoryPages: o.maxMemoryPages } : {}),
  };
  const created = await client.json<ContainerSummary>("POST", "/v1/containers", { json: req });
  if (o.detach) {
    if (o.json) printJson(host, created);
    else print(host, created.name);
    return 0;
  }
  await followLogs(host, client, name, true);
  let end: ContainerSummary;
  try {
    end = await client.json<ContainerSummary>("GET", `/v1/containers/${seg(name)}`);
  } catch (e) {
    if (e instanceof RemoteError && e.status === 404) throw new RemoteError(`container "${name}" is gone (removed or migrated) before it exited`);
    throw e;
  }
  if (o.json) printJson(host, end);
  if (end.status === "exited" && end.exitCode !== null) return end.exitCode;
  if (end.status === "checkpointed") {
    print(host, `crvm: container "${name}" was checkpointed and stopped`, 2);
    return 0;
  }
  throw new RemoteError(`container "${name}" stopped without an exit code (${end.status}; removed or migrated)`);
}

/** `crvm migrate NAME --to URL [--live]`: asks the source daemon to move NAME to the daemon at URL. */
export async function migrateCommand(host: Host, name: string, o: RemoteOptions & { to: string; live?: boolean; toTokenFile?: string }): Promise<number> {
  const client = Client.open(host, o);
  const to = Client.open(host, { url: o.to, tokenFile: o.toTokenFile ?? o.tokenFile });
  const token = to.token;
  if (token === null) throw new UsageError(`migrate: no token for the target ${to.url}: pass --to-token-file FILE`);
  const report = await client.json<MigrationReport>("POST", `/v1/containers/${seg(name)}/migrate`, { json: { to: to.url, token, live: !!o.live } });
  if (o.json) return printJson(host, report), 0;
  print(host, formatMigration(report));
  return 0;
}


/** The migration report as a small table: each pre-copy round, the frozen image, the total and the downtime. */
export function formatMigration(r: MigrationReport): string {
  const rows = [["", "PAGES", "BYTES", "TIME"]];
  const ms = (n: number) => `${n.toFixed(1)} ms`;
  r.rounds.forEach((x, i) => rows.push([`pre-copy round ${i + 1}`, String(x.pages), formatBytes(x.bytes), ms(x.ms)]));
  rows.push([r.live ? "final delta (frozen)" : "image (frozen)", String(r.final.pages), formatBytes(r.final.bytes), ms(r.final.ms)]);
  rows.push(["total sent", "", formatBytes(r.bytes), ""]);
  const lines = [
    `migrated ${r.name} to ${r.target}${r.live ? ` (live, ${r.rounds.length} pre-copy round${r.rounds.length === 1 ? "" : "s"})` : ""}: downtime ${ms(r.downtimeMs)}`,
    formatTable(rows).trimEnd(),
  ];
  if (r.known.pages || r.known.modules) lines.push(`the target had ${r.known.pages} pages and ${r.known.modules} modules already`);
  return lines.join("\n");
}
