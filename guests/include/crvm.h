/*
 * crvm.h — calls a guest can make into the crvm VM beyond WASI preview1.
 *
 * Every function here is a WebAssembly import from the module "crvm".
 * A guest that uses one of them must run under crvm (or a host that
 * provides the same imports; guests/tools/run_node_wasi.mjs provides
 * crvm.yield as a no-op for development).
 */
#ifndef CRVM_H
#define CRVM_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * crvm_yield — an explicit yield point.
 *
 * Tells the VM "this is a good place to stop": the VM may switch to another
 * task here, or freeze this task (for a checkpoint, a migration or a fork)
 * and resume it later, possibly in another process or on another runtime.
 * When the call returns, the guest's memory, globals and open file
 * descriptors are as they were when it was made; only time and the outside
 * world may have moved on.
 *
 * `tag` is an arbitrary number the VM may record with a checkpoint taken at
 * this point (tests use it to name a step); it has no other meaning.
 *
 * The VM may also freeze a task at WASI calls or inside pure compute, so a
 * guest does not need crvm_yield to be checkpointable; it is for tests and
 * for programs that want to offer well-defined stopping points.
 *
 * Example:
 *     for (int step = 0; step < n; step++) {
 *         do_step(step);
 *         crvm_yield(step);   // a checkpoint may be taken (and restored) here
 *     }
 */
__attribute__((import_module("crvm"), import_name("yield")))
void crvm_yield(int tag);

/* ------------------------------------------------------------------------
 * Process calls (fork, join, signals, pipes, dup) use the WASIX ABI: see
 * wasix.h next to this file.
 * ------------------------------------------------------------------------ */

#ifdef __cplusplus
}
#endif

#endif /* CRVM_H */
