// Request and response pieces the API's routes share: a checked JSON body,
// a streamed body with a size limit, and a container as the API shows it.
import type { z } from "zod";
import type { Container } from "./container.ts";
import { ApiError } from "./errors.ts";

/** The JSON body, checked against `schema`: a 400 naming the first problem otherwise. */
export async function jsonBody<T>(req: Request, schema: z.ZodType<T>): Promise<T> {
  const text = await req.text();
  let value: unknown;
  try {
    value = text.trim() === "" ? {} : JSON.parse(text);
  } catch {
    throw new ApiError(400, "malformed JSON body");
  }
  const r = schema.safeParse(value);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new ApiError(400, `bad request body: ${i.path.length ? i.path.join(".") + ": " : ""}${i.message}`);
  }
  return r.data;
}

/** A request body as chunks, refusing more than `limit` bytes with a 413. */
export async function* bodyChunks(req: Request, limit: number): AsyncGenerator<Uint8Array> {
  if (!req.body) throw new ApiError(400, "the request has no body");
  let n = 0;
  for await (const chunk of req.body as unknown as AsyncIterable<Uint8Array>) {
    n += chunk.length;
    if (n > limit) throw new ApiError(413, `body larger than ${limit} bytes`);
    yield chunk;
  }
}

/** A container as the API lists it. */
export function summary(c: Container) {
  const tasks = c.tasks();
  return {
    name: c.name,
    status: c.status,
    module: c.def.moduleName,
    args: c.def.args,
    createdAt: c.def.createdAt,
    exitCode: c.def.exitCode,
    tasks: tasks.filter((t) => t.state !== "zombie").length,
    checkpoints: c.checkpoints,
    log: { start: c.log.start, end: c.log.end },
  };
}
