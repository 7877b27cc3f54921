import * as fs from "node:fs";
import * as http from "node:http";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createHost, type Host } from "../host/mod.ts";
import { Client, normalizeUrl, RemoteError, splitTarget } from "./client.ts";
import { followLogs, formatTable, formatTree } from "./remote.ts";
import { baseName } from "./transfer.ts";

const servers: http.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.closeAllConnections(), s.close();
});

/** A loopback server answering with `handler`; resolves with its URL. */
async function serve(handler: http.RequestListener): Promise<string> {
  const s = http.createServer(handler);
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(s.address() as { port: number }).port}`;
}

function hostWithToken(): { host: Host; out: Uint8Array[]; tokenFile: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "crvm-client-"));
  const tokenFile = path.join(dir, "token");
  fs.writeFileSync(tokenFile, "0123456789abcdef0123\n");
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
    const url = await serve((req, res) => {
      const ok = req.headers.authorization === "Bearer 0123456789abcdef0123";
      res.writeHead(ok ? 404 : 401, { "Content-Type": "application/json" });
      res.end(JSON.stringify({ error: ok ? 'no container "x"' : "invalid token" }));
    });
    const { host, tokenFile } = hostWithToken();
    const err = await Client.open(host, { url, tokenFile }).json("GET", "/v1/containers/x").catch((e) => e);
    expect(err).toBeInstanceOf(RemoteError);
    expect(err.message).toBe('no container "x"');
    expect(err.status).toBe(404);
    fs.writeFileSync(tokenFile, "another-token-of-enough-length");
    const denied = await Client.open(host, { url, tokenFile }).json("GET", "/v1/containers").catch((e) => e);
    expect(denied.message).toMatch(/^invalid token: .*--token-file/);
  });

  it("a followed log whose connection breaks continues from where it stopped, without a byte lost or doubled", async () => {
    const asked: string[] = [];
    const url = await serve((req, res) => {
      asked.push(req.url!);
      const from = Number(new URL(req.url!, "http://x").searchParams.get("from") ?? 0);
      res.writeHead(200, { "Content-Type": "application/octet-stream", "X-Crvm-Log-Start": String(from) });
      if (from === 0) {
        res.write("tick 1\ntick 2\n");
        // Then the connection dies mid-body, as when Node's fetch gives up on a silent body.
        setTimeout(() => res.socket?.destroy(), 100);
      } else res.end("tick 3\nok\n");
    });
    const { host, out, tokenFile } = hostWithToken();
    await followLogs(host, Client.open(host, { url, tokenFile }), "t", true);
    expect(Buffer.concat(out).toString()).toBe("tick 1\ntick 2\ntick 3\nok\n");
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
