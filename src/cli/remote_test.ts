import { afterEach, describe, expect, it } from "vitest";
import { createHost, type Host, type HttpServer, serveHttp } from "../host/mod.ts";
import { tempDir, textOf } from "../host/testing.ts";
import { Client, normalizeUrl, RemoteError, splitTarget } from "./client.ts";
import { followLogs, formatTable, formatTree } from "./remote.ts";
import { baseName } from "./transfer.ts";

const servers: HttpServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

/** A loopback server answering with `handler`; resolves with its URL. */
async function serve(handler: (req: Request) => Response): Promise<string> {
  const s = await serveHttp(handler, { hostname: "127.0.0.1", port: 0 });
  servers.push(s);
  return `http://127.0.0.1:${s.port}`;
}

const files = createHost().fs;
const writeText = (p: string, text: string) => files.writeFileAtomic(p, new TextEncoder().encode(text));

function hostWithToken(): { host: Host; out: Uint8Array[]; tokenFile: string } {
  const tokenFile = `${tempDir("crvm-client-")}/token`;
  writeText(tokenFile, "0123456789abcdef0123\n");
  const out: Uint8Array[] = [];
  const base = createHost();
  return { host: { ...base, stdio: { ...base.stdio, write: (_fd, d) => void out.push(d.slice()) } }, out, tokenFile };
}

describe("the daemon client", () => {
  it("normalizes URLs and splits NAME/GROUP", () => {
    expect(normalizeUrl("127.0.0.1:7070")).toBe("http://127.0.0.1:7070");
    expect(normalizeUrl("http://h:1/")).toBe("http://h:1");
    expect(() => normalizeUrl("ftp://h")).toThrow(/http/);
    expect(splitTarget("web")).toEqual({ name: "web" });
    expect(splitTarget("web/workers/a")).toEqual({ name: "web", group: "/workers/a" });
    expect(() => splitTarget("/x")).toThrow(/NAME/);
    expect(baseName("/x/web.snap")).toBe("web");
    expect(baseName("web.snap.gz")).toBe("web");
  });

  it("sends the token and turns the daemon's {error} into a RemoteError, a 401 with a hint", async () => {
    const url = await serve((req) => {
      const ok = req.headers.get("authorization") === "Bearer 0123456789abcdef0123";
      return Response.json({ error: ok ? 'no container "x"' : "invalid token" }, { status: ok ? 404 : 401 });
    });
    const { host, tokenFile } = hostWithToken();
    const err = await Client.open(host, { url, tokenFile }).json("GET", "/v1/containers/x").catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe('no container "x"');
    expect(err.status).toBe(404);
    writeText(tokenFile, "another-token-of-enough-length");
    const denied = await Client.open(host, { url, tokenFile }).json("GET", "/v1/containers").catch((e) => e);
    expect(denied.message).toMatch(/^invalid token: .*--token-file/);
  });

  it("a followed log whose connection breaks continues from where it stopped, without a byte lost or doubled", async () => {
    const asked: string[] = [];
    const url = await serve((req) => {
      const u = new URL(req.url);
      asked.push(u.pathname + u.search);
      const from = Number(u.searchParams.get("from") ?? 0);
      const headers = { "Content-Type": "application/octet-stream", "X-Crvm-Log-Start": String(from) };
      if (from !== 0) return new Response("tick 3\nok\n", { headers });
      const body = new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new TextEncoder().encode("tick 1\ntick 2\n"));
          // Then the connection dies mid-body, as when Node's fetch gives up on a silent body.
          setTimeout(() => c.error(new Error("connection lost")), 100);
        },
      });
      return new Response(body, { headers });
    });
    const { host, out, tokenFile } = hostWithToken();
    await followLogs(host, Client.open(host, { url, tokenFile }), "t", true);
    expect(textOf(out)).toBe("tick 1\ntick 2\ntick 3\nok\n");
    expect(asked).toEqual(["/v1/containers/t/logs?follow=1", "/v1/containers/t/logs?from=14&follow=1"]);
  });

  it("formats tables and task trees", () => {
    expect(formatTable([["A", "BB", "C"], ["long", "x", "last column"]])).toBe("A     BB  C\nlong  x   last column\n");
    const tree = formatTree([
      { pid: 3, ppid: 2, state: "frozen", group: "/g", call: null, args: ["w"] },
      { pid: 1, ppid: 0, state: "blocked", group: "/", call: "wasix_32v1.proc_join", args: ["main", "x"] },
      { pid: 2, ppid: 1, state: "running", group: "/g", call: "crvm.yield", args: ["w"] },
    ]);
    expect(tree.split("\n")).toEqual([
      "PID    STATE    GROUP  CALL                  COMMAND",
      "1      blocked  /      wasix_32v1.proc_join  main x",
      "  2    running  /g     crvm.yield            w",
      "    3  frozen   /g     -                     w",
      "",
    ]);
  });
});
