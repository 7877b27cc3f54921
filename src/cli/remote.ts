// The CLI commands that look at and steer a `crvm serve` daemon over its
// HTTP API (docs/api.md): ps, tree, logs, freeze/thaw, kill, rm. The ones
// that move a module or an image are in transfer.ts. Each prints a short
// human line or table, or the API's JSON with --json.
import { type Host, HostFsError } from "../host/mod.ts";
import type { TaskInfo } from "../api/machine.ts";
import type { summary } from "../server/http.ts";
import { Client, type ClientOptions, RemoteError, seg, splitTarget } from "./client.ts";

/** What every remote command takes. */
export interface RemoteOptions extends ClientOptions {
  json?: boolean;
}

/** A container as GET /v1/containers lists it. */
export type ContainerSummary = ReturnType<typeof summary>;
/** A task as GET /v1/containers/NAME/tree lists it. */
export type TaskRow = TaskInfo;

const enc = new TextEncoder();

/** A line (or lines) on stdout, or on stderr with fd 2. */
export const print = (host: Host, text: string, fd: 1 | 2 = 1) => host.stdio.write(fd, enc.encode(text.endsWith("\n") ? text : text + "\n"));
/** The API's JSON, indented, on stdout. */
export const printJson = (host: Host, value: unknown) => print(host, JSON.stringify(value, null, 2));

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) (v /= 1024), i++;
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** Rows as columns separated by two spaces (the last column is not padded). */
export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}

/** `crvm ps`: every container of the daemon. */
export async function psCommand(host: Host, o: RemoteOptions): Promise<number> {
  const r = await Client.open(host, o).json<{ containers: ContainerSummary[] }>("GET", "/v1/containers");
  if (o.json) return printJson(host, r), 0;
  const rows = [["NAME", "STATUS", "TASKS", "CHECKPOINTS", "MODULE"]];
  for (const c of r.containers) {
    const status = c.status === "exited" && c.exitCode !== null ? `exited (${c.exitCode})` : c.status;
    rows.push([c.name, status, String(c.tasks), String(c.checkpoints), c.module]);
  }
  host.stdio.write(1, enc.encode(formatTable(rows)));
  return 0;
}

/** The task tree as lines, children indented under their parent, in pid order. */
export function formatTree(tasks: TaskRow[]): string {
  const pids = new Set(tasks.map((t) => t.pid));
  const children = new Map<number, TaskRow[]>();
  const roots: TaskRow[] = [];
  for (const t of [...tasks].sort((a, b) => a.pid - b.pid)) {
    if (t.ppid !== t.pid && pids.has(t.ppid)) children.set(t.ppid, [...(children.get(t.ppid) ?? []), t]);
    else roots.push(t);
  }
  const rows = [["PID", "STATE", "GROUP", "CALL", "COMMAND"]];
  const walk = (t: TaskRow, depth: number) => {
    rows.push([`${"  ".repeat(depth)}${t.pid}`, t.state, t.group, t.call ?? "-", t.args.join(" ")]);
    for (const c of children.get(t.pid) ?? []) walk(c, depth + 1);
  };
  for (const r of roots) walk(r, 0);
  return formatTable(rows);
}

/** `crvm tree NAME`. */
export async function treeCommand(host: Host, name: string, o: RemoteOptions): Promise<number> {
  const r = await Client.open(host, o).json<{ tasks: TaskRow[] }>("GET", `/v1/containers/${seg(name)}/tree`);
  if (o.json) return printJson(host, r), 0;
  host.stdio.write(1, enc.encode(r.tasks.length ? formatTree(r.tasks) : `container "${name}" has no tasks\n`));
  return 0;
}

/** `crvm logs [-f] NAME`: the log byte for byte; with `follow`, until the container ends. */
export async function logsCommand(host: Host, name: string, o: RemoteOptions & { follow?: boolean }): Promise<number> {
  const client = Client.open(host, o);
  await followLogs(host, client, name, !!o.follow);
  return 0;
}

/**
 * Prints the log of `name` to stdout as it arrives; stops quietly when
 * stdout is closed. A followed log whose connection breaks is asked for again
 * from where it stopped: Node's fetch gives up on a body that stays silent
 * for 5 minutes, and a quiet container is no error.
 */
export async function followLogs(host: Host, client: Client, name: string, follow: boolean): Promise<void> {
  let from = 0;
  for (;;) {
    const t0 = Date.now();
    const res = await client.request("GET", `/v1/containers/${seg(name)}/logs`, { query: { from: from || undefined, follow: follow ? 1 : undefined } });
    // The daemon starts later than asked when its cap dropped the oldest bytes.
    from = Math.max(from, Number(res.headers.get("X-Crvm-Log-Start") ?? from) || from);
    const before = from;
    try {
      for await (const chunk of client.chunks(res)) {
        try {
          host.stdio.write(1, chunk);
        } catch (e) {
          // The reader went away (`crvm logs -f NAME | head`): stop quietly.
          if (e instanceof HostFsError && e.code === "EPIPE") return;
          throw e;
        }
        from += chunk.length;
      }
      return;
    } catch (e) {
      const quickAndEmpty = from === before && Date.now() - t0 < 5000;
      if (!follow || !(e instanceof RemoteError) || !e.lost || quickAndEmpty) throw e;
    }
  }
}

/** `crvm freeze NAME[/GROUP]` and `crvm thaw NAME[/GROUP]`. */
export async function freezeCommand(host: Host, verb: "freeze" | "thaw", target: string, o: RemoteOptions): Promise<number> {
  const { name, group } = splitTarget(target);
  const r = await Client.open(host, o).json<ContainerSummary>("POST", `/v1/containers/${seg(name)}/${verb}`, { json: group ? { group } : {} });
  if (o.json) return printJson(host, r), 0;
  print(host, `${verb === "freeze" ? "frozen" : "thawed"}: ${name}${group ?? ""} (container ${r.status})`);
  return 0;
}

/** `crvm kill NAME [--signal N]`: ends every task; prints the exit code. */
export async function killCommand(host: Host, name: string, o: RemoteOptions & { signal?: number }): Promise<number> {
  const body = o.signal === undefined ? {} : { signal: o.signal };
  const r = await Client.open(host, o).json<ContainerSummary>("POST", `/v1/containers/${seg(name)}/kill`, { json: body });
  if (o.json) return printJson(host, r), 0;
  print(host, `${name}: ${r.status}${r.exitCode !== null ? ` with code ${r.exitCode}` : ""}`);
  return 0;
}

/** `crvm rm NAME`: kills it if needed and forgets it with its state. */
export async function rmCommand(host: Host, name: string, o: RemoteOptions): Promise<number> {
  await Client.open(host, o).request("DELETE", `/v1/containers/${seg(name)}`);
  if (o.json) return printJson(host, { removed: name }), 0;
  print(host, `removed ${name}`);
  return 0;
}

