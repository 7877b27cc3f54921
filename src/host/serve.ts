// Serving a fetch handler over HTTP with the runtime's own server:
// Deno.serve on Deno, Bun.serve on Bun, @hono/node-server on Node.
import { serve as nodeServe } from "@hono/node-server";

export type FetchHandler = (req: Request) => Response | Promise<Response>;

export interface HttpServer {
  hostname: string;
  /** The port it listens on (the one chosen by the system when 0 was asked for). */
  port: number;
  /** Stops accepting connections and closes the open ones. */
  close(): Promise<void>;
}

interface DenoServer {
  addr: { hostname: string; port: number };
  shutdown(): Promise<void>;
}
interface DenoLike {
  serve(opts: { hostname: string; port: number; onListen?: () => void }, handler: FetchHandler): DenoServer;
}
interface BunServer {
  hostname: string;
  port: number;
  stop(closeActive?: boolean): Promise<void> | void;
}
interface BunLike {
  serve(opts: { hostname: string; port: number; fetch: FetchHandler; idleTimeout?: number; maxRequestBodySize?: number }): BunServer;
}

/**
 * @example
 * const server = await serveHttp(app.fetch, { hostname: "127.0.0.1", port: 7070 });
 * await server.close();
 */
export async function serveHttp(fetch: FetchHandler, opts: { hostname: string; port: number }): Promise<HttpServer> {
  const g = globalThis as { Deno?: DenoLike; Bun?: BunLike };
  if (g.Deno) {
    const s = g.Deno.serve({ hostname: opts.hostname, port: opts.port, onListen: () => {} }, fetch);
    return { hostname: s.addr.hostname, port: s.addr.port, close: () => s.shutdown() };
  }
  if (g.Bun) {
    // No idle timeout: a followed log or a long migration keeps a connection quiet for a while.
    const s = g.Bun.serve({ hostname: opts.hostname, port: opts.port, fetch, idleTimeout: 0, maxRequestBodySize: Number.MAX_SAFE_INTEGER });
    return { hostname: s.hostname, port: s.port, close: async () => void (await s.stop(true)) };
  }
  return await new Promise((resolve, reject) => {
    const server = nodeServe({ fetch, hostname: opts.hostname, port: opts.port }, (info) => {
      resolve({
        hostname: opts.hostname,
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
            server.close(() => done());
          }),
      });
    });
    server.on("error", reject);
  });
}
