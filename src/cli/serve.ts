// `crvm serve`: the daemon with its HTTP API, until SIGINT or SIGTERM.
import { UsageError } from "../errors.ts";
import { type Host, serveHttp } from "../host/mod.ts";
import { createApp } from "../server/app.ts";
import { Daemon } from "../server/daemon.ts";

export interface ServeOptions {
  listen: string;
  stateDir?: string;
  tokenFile?: string;
  checkpointEvery?: number;
}

const enc = new TextEncoder(), dec = new TextDecoder();

/** `HOST:PORT` (an IPv6 host in brackets), or just a port on loopback. */
export function parseListen(spec: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(spec) ?? /^()()(\d{1,5})$/.exec(spec);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`--listen "${spec}": expected HOST:PORT, e.g. 127.0.0.1:7070`);
  return { hostname: m[1] || m[2] || "127.0.0.1", port };
}

/** `--checkpoint-every 30s` (ms, s, m or h; a bare number is seconds) in milliseconds. */
export function parseDuration(flag: string, spec: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(spec.trim());
  const ms = m ? Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? "s") as "s"] : NaN;
  if (!m || !(ms >= 10)) throw new UsageError(`${flag} "${spec}": expected a duration like 500ms, 30s or 5m (at least 10ms)`);
  return ms;
}

/** The daemon's state directory when none is given: $XDG_STATE_HOME/crvm, else ~/.local/state/crvm. */
export function defaultStateDir(host: Host): string {
  const xdg = host.env("XDG_STATE_HOME");
  if (xdg) return host.resolvePath(`${xdg}/crvm`);
  const home = host.homeDir();
  if (!home) throw new UsageError("no home directory: give --state-dir DIR");
  return `${home}/.local/state/crvm`;
}

/** The API token: read from --token-file, else the one in the state directory, made at first start. */
function token(host: Host, stateDir: string, tokenFile: string | undefined): { token: string; file: string; made: boolean } {
  const file = tokenFile !== undefined ? host.resolvePath(tokenFile) : `${stateDir}/token`;
  if (tokenFile === undefined && !host.fs.exists(file)) {
    const t = [...crypto.getRandomValues(new Uint8Array(32))].map((b) => b.toString(16).padStart(2, "0")).join("");
    host.fs.writeFileAtomic(file, enc.encode(t + "\n"), 0o600);
    return { token: t, file, made: true };
  }
  let t: string;
  try {
    t = dec.decode(host.fs.readFile(file)).trim();
  } catch (e) {
    throw new UsageError(`--token-file "${tokenFile ?? file}": ${(e as Error).message}`);
  }
  if (t.length < 16 || /\s/.test(t)) throw new UsageError(`token in "${file}" must be at least 16 characters without spaces`);
  return { token: t, file, made: false };
}

export async function serveCommand(host: Host, o: ServeOptions): Promise<number> {
  const listen = parseListen(o.listen);
  const stateDir = host.resolvePath(o.stateDir ?? defaultStateDir(host));
  host.fs.mkdirp(stateDir);
  const say = (line: string) => host.stdio.write(2, enc.encode(`crvm serve: ${line}\n`));
  const t = token(host, stateDir, o.tokenFile);
  const daemon = await Daemon.open({ host, stateDir, checkpointEvery: o.checkpointEvery, report: say });
  const app = createApp(daemon, { token: t.token, report: say });
  const server = await serveHttp(app.fetch, listen);
  const where = listen.hostname.includes(":") ? `[${server.hostname}]` : server.hostname;
  say(`listening on http://${where}:${server.port}; state in ${stateDir}; ${t.made ? "new token written to" : "token from"} ${t.file}`);
  await new Promise<void>((resolve) => {
    const stops = [host.onSignal("SIGINT", resolve), host.onSignal("SIGTERM", resolve)];
    void stops;
  });
  say("stopping");
  await daemon.close();
  await server.close();
  return 0;
}
