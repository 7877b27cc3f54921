#!/usr/bin/env -S node --stack-size=4000
// Node entry: runs the compiled CLI from dist/ (built by `npm install` via the
// prepare script). Deno and Bun run src/cli/main.ts directly.
// --stack-size: Asyncify-instrumented guests need more native stack than V8's default.
import "../dist/src/cli/main.js";
