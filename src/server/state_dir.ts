// The daemon's state directory: per container its definition, its module,
// its latest snapshot (a short chain of incremental images) and the log as it
// was at that snapshot; and the API token. Every file is written atomically
// (temporary file + rename), and the pointer to the latest image is written
// only after the image itself: a crash at any moment leaves the previous
// snapshot whole.
//
//   STATE/token
//   STATE/containers/NAME/container.json   definition and state
//   STATE/containers/NAME/module.wasm
//   STATE/containers/NAME/latest.json      { image, log, chain } (written last)
//   STATE/containers/NAME/images/000001.snap ...
//   STATE/containers/NAME/logs/000001.log ...
import type { Host } from "../host/mod.ts";

/** What a container was created with, and where it is now. */
export interface ContainerDef {
  name: string;
  moduleName: string;
  args: string[];
  env: string[];
  dirs: { host: string; guest: string }[];
  tmpfs: string[];
  cgroupfs: boolean;
  maxTasks?: number;
  maxMemoryPages?: number;
  createdAt: string;
  /** running: restore it at start; exited and checkpointed: only listed. */
  state: "running" | "exited" | "checkpointed";
  exitCode: number | null;
}

/** The latest snapshot: its image (the head of a chain) and the log at that moment. */
export interface Latest {
  image: string;
  log: string;
  /** Images in the chain, head first (for pruning the ones no longer needed). */
  chain: string[];
  /** Offset of the first byte of the saved log. */
  logStart: number;
  seq: number;
}

const enc = new TextEncoder(), dec = new TextDecoder();

export class StateDir {
  constructor(private readonly host: Host, readonly root: string) {
    host.fs.mkdirp(this.path("containers"));
  }

  path(...parts: string[]): string {
    return [this.root, ...parts].join("/");
  }

  dir(name: string): string {
    return this.path("containers", name);
  }

  names(): string[] {
    return this.host.fs.readdir(this.path("containers")).filter((e) => e.type === "dir").map((e) => e.name).sort();
  }

  writeJson(file: string, value: unknown): void {
    this.host.fs.writeFileAtomic(file, enc.encode(JSON.stringify(value, null, 2) + "\n"));
  }

  readJson<T>(file: string): T | null {
    if (!this.host.fs.exists(file)) return null;
    return JSON.parse(dec.decode(this.host.fs.readFile(file))) as T;
  }

  saveDef(def: ContainerDef): void {
    this.host.fs.mkdirp(this.dir(def.name));
    this.writeJson(`${this.dir(def.name)}/container.json`, def);
  }

  loadDef(name: string): ContainerDef | null {
    return this.readJson<ContainerDef>(`${this.dir(name)}/container.json`);
  }

  saveModule(name: string, bytes: Uint8Array): void {
    this.host.fs.mkdirp(this.dir(name));
    this.host.fs.writeFileAtomic(`${this.dir(name)}/module.wasm`, bytes);
  }

  loadModule(name: string): Uint8Array {
    return this.host.fs.readFile(`${this.dir(name)}/module.wasm`);
  }

  latest(name: string): Latest | null {
    return this.readJson<Latest>(`${this.dir(name)}/latest.json`);
  }

  /** Writes an image and its log, then (only then) points latest.json at them; removes images the new chain no longer needs. */
  saveSnapshot(name: string, image: Uint8Array[], log: { start: number; data: Uint8Array }, chain: string[], seq: number): Latest {
    const d = this.dir(name);
    const fs = this.host.fs;
    fs.mkdirp(`${d}/images`);
    fs.mkdirp(`${d}/logs`);
    const id = String(seq).padStart(6, "0");
    const latest: Latest = { image: `images/${id}.snap`, log: `logs/${id}.log`, chain: [`images/${id}.snap`, ...chain], logStart: log.start, seq };
    fs.writeFileAtomic(`${d}/${latest.image}`, image);
    fs.writeFileAtomic(`${d}/${latest.log}`, log.data);
    this.writeJson(`${d}/latest.json`, latest);
    this.#prune(d, "images", new Set(latest.chain));
    this.#prune(d, "logs", new Set([latest.log]));
    return latest;
  }

  readLog(name: string, latest: Latest): Uint8Array {
    return this.host.fs.readFile(`${this.dir(name)}/${latest.log}`);
  }

  /** Removes a container's whole directory. */
  remove(name: string): void {
    this.#rmrf(this.dir(name));
  }

  #prune(d: string, sub: string, keep: Set<string>): void {
    for (const e of this.host.fs.readdir(`${d}/${sub}`)) {
      const rel = `${sub}/${e.name}`;
      if (!keep.has(rel)) this.host.fs.unlink(`${d}/${rel}`);
    }
  }

  #rmrf(p: string): void {
    const fs = this.host.fs;
    if (!fs.exists(p)) return;
    if (fs.lstat(p).type !== "dir") return fs.unlink(p);
    for (const e of fs.readdir(p)) this.#rmrf(`${p}/${e.name}`);
    fs.rmdir(p);
  }
}
