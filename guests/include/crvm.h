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

/*
 * crvm_checkpoint — checkpoint(2): write an image of tasks to an open fd.
 *
 * With CRVM_CHECKPOINT_SUBTREE in `flags`, the image holds task `pid` and
 * all its descendants; without it, `pid` must be the VM's init task (pid 1)
 * and the image holds the whole VM. Every task in the image except the
 * caller must be frozen, all in one and the same freezer group (see
 * /sys/fs/cgroup: cgroup.procs, cgroup.freeze, cgroup.events).
 *
 * The image is streamed to `fd` (a file, an in-memory file or a pipe; a
 * full pipe blocks the caller like write()). Frozen tasks stay frozen.
 *
 * Returns 0 and stores a positive checkpoint id (increasing per VM) in
 * `*ckpt_id`. A task restored from an image it took of itself returns from
 * the same call with 0 and `*ckpt_id` == 0, as a child returns from fork().
 *
 * Errors (returned, nothing written): EINVAL bad flags, or no SUBTREE and
 * `pid` is not the init task; ESRCH no such task; EPERM `pid` is not the
 * caller or a descendant of it; EBADF `fd` is not open for writing; EBUSY a
 * task is not frozen, or the tasks are in more than one group; EIO the
 * image could not be made.
 *
 * Example (the seed's self-checkpoint):
 *     wasix_pid_t me; wasix_proc_id(&me);            // wasix.h
 *     unsigned long long id;
 *     int err = crvm_checkpoint(me, fd, CRVM_CHECKPOINT_SUBTREE, &id);
 *     if (err) errno = err, perror("checkpoint");
 *     else if (id == 0) puts("restarted");
 *     else printf("checkpoint %llu taken\n", (unsigned long long)id);
 */
#define CRVM_CHECKPOINT_SUBTREE 1

__attribute__((import_module("crvm"), import_name("checkpoint")))
int crvm_checkpoint(int pid, int fd, int flags, unsigned long long *ckpt_id);

/* ------------------------------------------------------------------------
 * Process calls (fork, join, signals, pipes, dup) use the WASIX ABI: see
 * wasix.h next to this file.
 * ------------------------------------------------------------------------ */

#ifdef __cplusplus
}
#endif

#endif /* CRVM_H */
