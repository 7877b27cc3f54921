#!/usr/bin/env node
// Development aid: run a guest under Node's built-in WASI (preview1), the
// reference the guests were checked against before crvm's runtime existed.
//
//   node guests/tools/run_node_wasi.mjs [--dir HOST::GUEST]... [--env K=V]...
//        MODULE.wasm [ARGS...]
//
// Exits with the guest's exit code. `crvm.yield` is provided as a no-op.
// Not part of crvm: nothing in src/ or test/ may depend on it.
import { readFile } from "node:fs/promises";
import { basename } from "node:path";

// node:wasi prints an ExperimentalWarning on load; it would pollute the
// guest's stderr, which tests compare. Drop only that warning.
const defaultWarningListeners = process.listeners("warning");
process.removeAllListeners("warning");
process.on("warning", (w) => {
  if (w.name === "ExperimentalWarning" && /WASI/.test(w.message)) return;
  for (const l of defaultWarningListeners) l(w);
});
const { WASI } = await import("node:wasi");

function usage(msg) {
  if (msg) process.stderr.write(`run_node_wasi: ${msg}\n`);
  process.stderr.write(
    "usage: node run_node_wasi.mjs [--dir HOST::GUEST]... [--env K=V]... MODULE.wasm [ARGS...]\n",
  );
  process.exit(2);
}

const argv = process.argv.slice(2);
const preopens = {};
const env = {};
while (argv.length > 0 && argv[0].startsWith("--")) {
  const flag = argv.shift();
  if (flag === "--") break;
  const value = argv.shift();
  if (value === undefined) usage(`${flag} needs a value`);
  if (flag === "--dir") {
    const sep = value.indexOf("::");
    if (sep < 0) usage(`--dir wants HOST::GUEST, got "${value}"`);
    preopens[value.slice(sep + 2)] = value.slice(0, sep);
  } else if (flag === "--env") {
    const eq = value.indexOf("=");
    if (eq < 0) usage(`--env wants K=V, got "${value}"`);
    env[value.slice(0, eq)] = value.slice(eq + 1);
  } else {
    usage(`unknown option ${flag}`);
  }
}
const modulePath = argv.shift();
if (modulePath === undefined) usage("no module given");

const wasi = new WASI({
  version: "preview1",
  args: [basename(modulePath, ".wasm"), ...argv],
  env,
  preopens,
  returnOnExit: true,
});

// Wrap every import in a plain JS function: handing node:wasi's functions
// straight to WebAssembly.instantiate can crash Node 20 (nodejs/node#53087).
function wrapAll(ns) {
  const out = {};
  for (const [name, fn] of Object.entries(ns)) {
    out[name] = typeof fn === "function" ? (...args) => fn(...args) : fn;
  }
  return out;
}
const wasiImports = wasi.getImportObject();
const imports = {};
for (const [mod, ns] of Object.entries(wasiImports)) imports[mod] = wrapAll(ns);
imports.crvm = { yield: (_tag) => {} };

const module = await WebAssembly.compile(await readFile(modulePath));
const instance = await WebAssembly.instantiate(module, imports);
const code = wasi.start(instance);
process.exitCode = code;
