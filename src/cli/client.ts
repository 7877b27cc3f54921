// A client of `crvm serve`'s HTTP API (docs/api.md) for the CLI: where the
// daemon is, its token, and its errors as one-line CrvmErrors. Uses the
// global fetch, which Node, Deno and Bun all have.
import { CrvmError, UsageError } from "../errors.ts";
import { type Host, HostFsError } from "../host/mod.ts";
import { defaultStateDir } from "./serve.ts";

/** The daemon when neither --host nor $CRVM_HOST says otherwise. */
export const DEFAULT_URL = "http://127.0.0.1:7070";

/** The daemon answered with an error, or could not be reached. */
export class RemoteError extends CrvmError {
  override name = "RemoteError";
  /** `status`: the HTTP status (0: no answer); `lost`: the connection broke while a body was read. */
  constructor(message: string, readonly status = 0, readonly lost = false) {
    super(message);
  }
}

export interface ClientOptions {
  /** --host URL (else $CRVM_HOST, else DEFAULT_URL). */
  url?: string;
  /** --token-file F (else $CRVM_TOKEN_FILE, else the default state directory's token). */
  tokenFile?: string;
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined>;
  /** A JSON body. */
  json?: unknown;
  /** A streamed body (sent as application/octet-stream). */
  body?: ReadableStream<Uint8Array>;
}

const dec = new TextDecoder();

/** `127.0.0.1:7070` or `http://host:port/` → `http://host:port`. */
export function normalizeUrl(spec: string): string {
  const s = /^[a-z][a-z0-9+.-]*:\/\//i.test(spec) ? spec : `http://${spec}`;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw new UsageError(`--host "${spec}": expected a URL like http://127.0.0.1:7070`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new UsageError(`--host "${spec}": expected an http:// or https:// URL`);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "")}`;
}

/** The token for a daemon: from `file` if given (it must be readable), else from the local daemon's state directory if there is one. */
export function readToken(host: Host, file: string | undefined): { token: string | null; where: string } {
  const explicit = file ?? (host.env("CRVM_TOKEN_FILE") || undefined);
  let path: string;
  if (explicit !== undefined) path = host.resolvePath(explicit);
  else {
    try {
      path = `${defaultStateDir(host)}/token`;
    } catch {
      return { token: null, where: "no token file" };
    }
    if (!host.fs.exists(path)) return { token: null, where: `no token file (${path} does not exist)` };
  }
  let text: string;
  try {
    text = dec.decode(host.fs.readFile(path)).trim();
  } catch (e) {
    const why = e instanceof HostFsError && e.code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new UsageError(`token file "${explicit ?? path}": ${why}`);
  }
  if (text === "" || /\s/.test(text)) throw new UsageError(`token file "${explicit ?? path}" does not hold a token`);
  return { token: text, where: `the token from ${path}` };
}

/** Why a fetch failed, in a few words (the runtimes put it in different places and words). */
function networkReason(e: unknown): string {
  const err = e as { message?: string; code?: string; cause?: { message?: string; code?: string; errors?: { message?: string }[] } };
  const c = err.cause;
  let text = (c?.message || c?.errors?.[0]?.message || c?.code || err.message || String(e)).replace(/\s+/g, " ").trim();
  if (/ECONNREFUSED|connection refused/i.test(`${text} ${c?.code ?? ""} ${err.code ?? ""}`)) return "connection refused";
  text = text.replace(/^error sending request for url \([^)]*\): /, "").replace(/^client error \(Connect\): /, ""); // Deno
  return err.code && !text.includes(err.code) ? `${err.code}: ${text}` : text;
}

/**
 * @example
 * const client = Client.open(host, { url: "http://127.0.0.1:7070" });
 * const { containers } = await client.json<{ containers: unknown[] }>("GET", "/v1/containers");
 */
export class Client {
  private constructor(readonly url: string, readonly token: string | null, private readonly tokenWhere: string) {}

  static open(host: Host, o: ClientOptions): Client {
    const url = normalizeUrl(o.url ?? (host.env("CRVM_HOST") || DEFAULT_URL));
    const t = readToken(host, o.tokenFile);
    return new Client(url, t.token, t.where);
  }

  /** Sends a request; a response that is not 2xx becomes a RemoteError with the daemon's message. */
  async request(method: string, path: string, o: RequestOptions = {}): Promise<Response> {
    const q = Object.entries(o.query ?? {}).filter(([, v]) => v !== undefined);
    const target = `${this.url}${path}${q.length ? "?" + new URLSearchParams(q.map(([k, v]) => [k, String(v)])).toString() : ""}`;
    const headers: Record<string, string> = {};
    if (this.token !== null) headers.Authorization = `Bearer ${this.token}`;
    const init: RequestInit & { duplex?: "half" } = { method, headers };
    if (o.json !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(o.json);
    } else if (o.body) {
      headers["Content-Type"] = "application/octet-stream";
      init.body = o.body;
      init.duplex = "half"; // Node's fetch streams a request body only when told so.
    }
    let res: Response;
    try {
      res = await fetch(target, init);
    } catch (e) {
      throw new RemoteError(`cannot reach crvm serve at ${this.url}: ${networkReason(e)}`);
    }
    if (res.ok) return res;
    const text = await res.text().catch(() => "");
    let message: string;
    try {
      const v = JSON.parse(text) as { error?: unknown };
      message = typeof v.error === "string" ? v.error : text;
    } catch {
      message = text.trim() || `${res.status} ${res.statusText}`;
    }
    message = message.replace(/\s+/g, " ").trim();
    if (res.status === 401) {
      message += this.token === null
        ? `: crvm serve wrote its token to STATE/token on its machine; pass it with --token-file FILE or $CRVM_TOKEN_FILE (${this.tokenWhere})`
        : `: ${this.tokenWhere} is not this daemon's; pass the right one with --token-file FILE or $CRVM_TOKEN_FILE`;
    }
    throw new RemoteError(message, res.status);
  }

  /** A request whose answer is JSON (`null` for 204). */
  async json<T>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.request(method, path, o);
    if (res.status === 204) return null as T;
    const text = await this.#text(res);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new RemoteError(`crvm serve at ${this.url} sent something that is not JSON for ${method} ${path}`);
    }
  }

  /** The chunks of a response body; a connection lost halfway is a RemoteError. */
  async *chunks(res: Response): AsyncGenerator<Uint8Array> {
    if (!res.body) return;
    const reader = res.body.getReader();
    let done = false;
    try {
      for (;;) {
        let r: ReadableStreamReadResult<Uint8Array>;
        try {
          r = await reader.read();
        } catch (e) {
          done = true;
          throw new RemoteError(`lost the connection to crvm serve at ${this.url}: ${networkReason(e)}`, 0, true);
        }
        if (r.done) return void (done = true);
        yield r.value;
      }
    } finally {
      // A reader that stops early (an error on our side) closes the connection.
      if (!done) await reader.cancel().catch(() => {});
    }
  }

  async #text(res: Response): Promise<string> {
    const parts: string[] = [];
    const d = new TextDecoder();
    for await (const c of this.chunks(res)) parts.push(d.decode(c, { stream: true }));
    return parts.join("") + d.decode();
  }
}

/** `NAME/GROUP/SUB` → the container and the freezer group (`/GROUP/SUB`; none for the whole container). */
export function splitTarget(target: string): { name: string; group?: string } {
  const i = target.indexOf("/");
  if (i < 0) return { name: target };
  if (i === 0) throw new UsageError(`"${target}": expected NAME or NAME/GROUP`);
  const group = target.slice(i).replace(/\/+$/, "");
  return group === "" ? { name: target.slice(0, i) } : { name: target.slice(0, i), group };
}

/** A path segment for a container name. */
export const seg = (name: string) => encodeURIComponent(name);
