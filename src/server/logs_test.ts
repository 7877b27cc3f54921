// LogBuffer: the cap drops the oldest bytes and offsets keep counting; read
// from an offset; follow until close or abort.
import { describe, expect, it } from "vitest";
import { LogBuffer } from "./logs.ts";

const enc = new TextEncoder(), dec = new TextDecoder();
const bytes = (s: string) => enc.encode(s);
const text = (b: Uint8Array) => dec.decode(b);
const tick = () => new Promise((r) => setTimeout(r, 0));

async function collect(it: AsyncIterable<Uint8Array>): Promise<string> {
  let s = "";
  for await (const c of it) s += text(c);
  return s;
}

describe("LogBuffer", () => {
  it("keeps every byte under the cap, with offsets from 0", () => {
    const log = new LogBuffer(100);
    log.append(bytes("hello "));
    log.append(bytes("world"));
    expect([log.start, log.end]).toEqual([0, 11]);
    expect(text(log.read().data)).toBe("hello world");
    expect(log.read(6)).toEqual({ start: 6, data: bytes("world") });
    expect(log.read(8)).toEqual({ start: 8, data: bytes("rld") });
  });

  it("drops the oldest bytes past the cap, partly from a chunk, and offsets keep counting", () => {
    const log = new LogBuffer(8);
    log.append(bytes("abcde"));
    log.append(bytes("fghij")); // 10 bytes: "ab" go
    expect([log.start, log.end]).toEqual([2, 10]);
    expect(log.read(0)).toEqual({ start: 2, data: bytes("cdefghij") });
    log.append(bytes("kl")); // "cd" go, from inside the first kept chunk
    expect([log.start, log.end]).toEqual([4, 12]);
    expect(text(log.read(0).data)).toBe("efghijkl");
    expect(log.read(9)).toEqual({ start: 9, data: bytes("jkl") });
    log.append(bytes("0123456789")); // one chunk larger than the cap
    expect([log.start, log.end]).toEqual([14, 22]);
    expect(text(log.read(0).data)).toBe("23456789");
  });

  it("reads nothing at or past the end", () => {
    const log = new LogBuffer(8);
    log.append(bytes("abc"));
    expect(log.read(3)).toEqual({ start: 3, data: new Uint8Array(0) });
    expect(log.read(50)).toEqual({ start: 50, data: new Uint8Array(0) });
  });

  it("continues the numbering of a log that started elsewhere", () => {
    const log = new LogBuffer(8, 1000);
    expect([log.start, log.end]).toEqual([1000, 1000]);
    log.append(bytes("xyz"));
    expect(log.read(0)).toEqual({ start: 1000, data: bytes("xyz") });
    expect(log.read(1001)).toEqual({ start: 1001, data: bytes("yz") });
  });

  it("copies what it is given, ignores empty appends and anything after close", () => {
    const log = new LogBuffer(100);
    const b = bytes("abc");
    log.append(b);
    b[0] = 0x7a;
    log.append(new Uint8Array(0));
    log.close();
    log.append(bytes("late"));
    expect(log.closed).toBe(true);
    expect(text(log.read().data)).toBe("abc");
    expect(log.end).toBe(3);
  });

  it("follows from an offset: what is kept, then new output, until close", async () => {
    const log = new LogBuffer(100);
    log.append(bytes("one\n"));
    const got = collect(log.follow(2));
    await tick();
    log.append(bytes("two\n"));
    await tick();
    log.append(bytes("three\n"));
    log.append(bytes("four\n"));
    await tick();
    log.close();
    expect(await got).toBe("e\ntwo\nthree\nfour\n");
  });

  it("follows from an offset the cap dropped: from the oldest byte kept", async () => {
    const log = new LogBuffer(4);
    log.append(bytes("abcdefgh"));
    log.close();
    expect(await collect(log.follow(1))).toBe("efgh");
  });

  it("follows a closed log to its end and stops", async () => {
    const log = new LogBuffer(100);
    log.append(bytes("all"));
    log.close();
    expect(await collect(log.follow())).toBe("all");
    expect(await collect(log.follow(3))).toBe("");
  });

  it("every follower of one log gets the same bytes", async () => {
    const log = new LogBuffer(1 << 20);
    const a = collect(log.follow()), b = collect(log.follow());
    let want = "";
    for (let i = 0; i < 50; i++) {
      const line = `line ${i}\n`;
      want += line;
      log.append(bytes(line));
      if (i % 7 === 0) await tick();
    }
    log.close();
    expect(await a).toBe(want);
    expect(await b).toBe(want);
  });

  it("ends a follow when its signal aborts, while the log is still open", async () => {
    const log = new LogBuffer(100);
    log.append(bytes("before"));
    const ac = new AbortController();
    // Count the signal's abort listeners as they come and go.
    let listeners = 0;
    const add = ac.signal.addEventListener.bind(ac.signal), remove = ac.signal.removeEventListener.bind(ac.signal);
    ac.signal.addEventListener = (type: string, fn: EventListenerOrEventListenerObject, o?: AddEventListenerOptions | boolean) => {
      if (type === "abort") listeners++;
      add(type, fn, o);
    };
    ac.signal.removeEventListener = (type: string, fn: EventListenerOrEventListenerObject, o?: EventListenerOptions | boolean) => {
      if (type === "abort") listeners--;
      remove(type, fn, o);
    };
    const got = collect(log.follow(0, ac.signal));
    await tick();
    ac.abort();
    expect(await got).toBe("before");
    expect(log.closed).toBe(false);
  });

  it("a follow with a signal aborted already yields what is kept and ends", async () => {
    const log = new LogBuffer(100);
    log.append(bytes("kept"));
    expect(await collect(log.follow(0, AbortSignal.abort()))).toBe("kept");
  });

  it("does not pile up abort listeners on the signal during a long follow", async () => {
    const log = new LogBuffer(1 << 20);
    const ac = new AbortController();
    // Count the signal's abort listeners as they come and go.
    let listeners = 0;
    const add = ac.signal.addEventListener.bind(ac.signal), remove = ac.signal.removeEventListener.bind(ac.signal);
    ac.signal.addEventListener = (type: string, fn: EventListenerOrEventListenerObject, o?: AddEventListenerOptions | boolean) => {
      if (type === "abort") listeners++;
      add(type, fn, o);
    };
    ac.signal.removeEventListener = (type: string, fn: EventListenerOrEventListenerObject, o?: EventListenerOptions | boolean) => {
      if (type === "abort") listeners--;
      remove(type, fn, o);
    };
    const got = collect(log.follow(0, ac.signal));
    for (let i = 0; i < 100; i++) {
      log.append(bytes("x"));
      await tick();
    }
    expect(listeners).toBeLessThanOrEqual(1);
    log.close();
    expect(await got).toBe("x".repeat(100));
    expect(listeners).toBe(0);
  });
});
