// Reading a module file (binary or text) and getting it instrumented.
import { ModuleError } from "../errors.ts";
import { type Host, HostFsError, progressBar } from "../host/mod.ts";
import { type InstrumentedModule, instrumentModule, isWasmBinary, limitMemory, watToWasm } from "../instrument/mod.ts";
import type { LoadedModule } from "../checkpoint/restore.ts";

/** Reads MODULE.wasm or MODULE.wat; a missing or unreadable file is a one-line ModuleError. */
export async function readModuleFile(host: Host, path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = host.fs.readFile(host.resolvePath(path));
  } catch (e) {
    const why = e instanceof HostFsError ? (e.code === "ENOENT" ? "no such file" : e.code === "EISDIR" ? "is a directory" : e.code) : String(e);
    throw new ModuleError(`Cannot read module "${path}": ${why}`);
  }
  if (isWasmBinary(bytes)) return bytes;
  if (path.endsWith(".wat") || path.endsWith(".wast")) return await watToWasm(new TextDecoder().decode(bytes), path);
  throw new ModuleError(`Cannot load module "${path}": not a WebAssembly binary (bad magic) and not a .wat file`);
}

/** Instruments (or takes from the cache) and compiles a module; `maxMemoryPages` caps its memory (--max-memory). */
export async function loadModule(host: Host, source: Uint8Array, name: string, maxMemoryPages?: number): Promise<LoadedModule> {
  const bar = progressBar(`instrumenting ${name}`);
  let module: InstrumentedModule;
  try {
    module = await instrumentModule(source, {
      name,
      cacheDir: cacheDir(host),
      fs: host.fs,
      onProgress: (p) => bar.update(p.stage, p.done, p.total),
    });
  } finally {
    bar.stop();
  }
  let compiled: WebAssembly.Module;
  try {
    const wasm = maxMemoryPages === undefined ? module.wasm : limitMemory(module.wasm, maxMemoryPages, name);
    compiled = await WebAssembly.compile(wasm as Uint8Array<ArrayBuffer>);
  } catch (e) {
    throw new ModuleError(`Cannot compile module "${name}": ${(e as Error).message}`);
  }
  return { module, compiled };
}

/** Where transformed modules are cached: $CRVM_CACHE, else $XDG_CACHE_HOME/crvm, else ~/.cache/crvm. */
export function cacheDir(host: Host): string | null {
  const explicit = host.env("CRVM_CACHE");
  if (explicit !== undefined && explicit !== "") return host.resolvePath(explicit);
  const xdg = host.env("XDG_CACHE_HOME");
  if (xdg) return host.resolvePath(`${xdg}/crvm`);
  const home = host.homeDir();
  return home ? `${home}/.cache/crvm` : null;
}
