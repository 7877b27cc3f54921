// ckpt_group: the seed's second case. The parent forks workers that compute
// running hashes in steps and report each step through their own pipe; it
// moves them into a freezer group, freezes it, checkpoints its own subtree
// (itself and the workers) to IMAGE, thaws the group and goes on.
//
//   ckpt_group IMAGE [WORKERS=3] [STEPS=48]
//
// Output: a prefix (steps before the freeze), then "checkpoint id N" in the
// first run or "restored (id 0)" in a run restored from IMAGE, then a suffix
// that is the same in both. Nothing printed depends on scheduling: the parent
// reads the workers' pipes in a fixed order and checks every record against
// its own computation of the hashes.
#include "../freezer_lib/freezer.h"

#define MAX_WORKERS 8
#define ROUNDS 2000
static const char *GROUP = "ckpt_group";

struct record { int32_t worker, step; uint64_t hash; };

static int workers = 3, steps = 48;
static int report[MAX_WORKERS];      /* read ends: worker i's records */
static int gate[2];                  /* workers wait at step 3/4 for a byte each */
static wasix_pid_t pids[MAX_WORKERS];
static uint64_t want[MAX_WORKERS];   /* the parent's own running hashes */

static void worker(int i, int out) {
  uint64_t h = splitmix64((uint64_t)i + 1);
  for (int s = 0; s < steps; s++) {
    if (s == steps * 3 / 4) {
      char c;
      if (read(gate[0], &c, 1) != 1) die("worker %d: gate read", i);
    }
    h = work_step(h, i, s, ROUNDS);
    struct record r = { i, s, h };
    int e = write_all(out, &r, sizeof r);
    if (e) die("worker %d: write: %s", i, strerror(e));
    crvm_yield(s);
  }
  exit(10 + i);
}

/* Reads and checks steps [from, to) of every worker, in a fixed order; prints a line every 8 steps. */
static void collect(int from, int to) {
  for (int s = from; s < to; s++) {
    uint64_t combined = 0;
    for (int i = 0; i < workers; i++) {
      struct record r;
      ssize_t n = read_full(report[i], &r, sizeof r);
      if (n != sizeof r) die("worker %d step %d: short read (%d bytes)", i, s, (int)n);
      want[i] = work_step(want[i], i, s, ROUNDS);
      check(r.worker == i && r.step == s, "worker %d step %d: got record of worker %d step %d", i, s, r.worker, r.step);
      check(r.hash == want[i], "worker %d step %d: hash %016llx, expected %016llx", i, s, (unsigned long long)r.hash, (unsigned long long)want[i]);
      combined ^= r.hash;
    }
    if (s % 8 == 7 || s == steps - 1) printf("step %d: %016llx\n", s, (unsigned long long)combined);
  }
}

static void check_members(const char *when) {
  wasix_pid_t got[MAX_WORKERS + 4];
  int n = cg_procs(GROUP, got, MAX_WORKERS + 4);
  int same = n == workers;
  for (int i = 0; same && i < workers; i++) same = got[i] == pids[i];
  check(same, "%s: cgroup.procs does not list exactly the %d workers (%d pids)", when, workers, n);
}

int main(int argc, char **argv) {
  guest_start("ckpt_group");
  if (argc < 2) die("usage: ckpt_group IMAGE [WORKERS] [STEPS]");
  const char *image = argv[1];
  if (argc > 2) workers = atoi(argv[2]);
  if (argc > 3) steps = atoi(argv[3]);
  if (workers < 1 || workers > MAX_WORKERS || steps < 8 || steps > 4000) die("bad arguments");
  printf("ckpt_group: %d workers, %d steps\n", workers, steps);

  make_pipe(gate);
  int outs[MAX_WORKERS];
  for (int i = 0; i < workers; i++) {
    int p[2];
    make_pipe(p);
    report[i] = p[0];
    outs[i] = p[1];
  }
  for (int i = 0; i < workers; i++) {
    wasix_pid_t pid = fork_or_die();
    if (pid == 0) {
      close(gate[1]);
      for (int j = 0; j < workers; j++) {
        close(report[j]);
        if (j != i) close(outs[j]);
      }
      worker(i, outs[i]);
    }
    pids[i] = pid;
    want[i] = splitmix64((uint64_t)i + 1);
  }
  close(gate[0]);
  for (int i = 0; i < workers; i++) close(outs[i]);

  collect(0, steps / 2);

  int e = cg_mkdir(GROUP);
  if (e) die("mkdir " CGROUP_ROOT "/%s: %s (%d)", GROUP, errname(e), e);
  for (int i = 0; i < workers; i++) {
    e = cg_move(GROUP, pids[i]);
    check(e == 0, "move worker %d (pid %d) into %s: %s (%d)", i, (int)pids[i], GROUP, errname(e), e);
  }
  check_members("before the freeze");
  if (freeze_and_wait(GROUP)) die("cannot freeze the workers");
  check(cg_event(GROUP, "populated") == 1, "cgroup.events does not say \"populated 1\"");

  fflush(stdout);
  int fd = open(image, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open %s: %s", image, strerror(errno));
  unsigned long long id = 12345;
  e = crvm_checkpoint((int)self_pid(), fd, CRVM_CHECKPOINT_SUBTREE, &id);
  if (e) die("crvm_checkpoint: %s (%d)", errname(e), e);
  if (id != 0) {
    check(fd_size(fd) > 0, "the image is empty after the call");
    printf("checkpoint id %llu\n", id);
  } else {
    printf("restored (id 0)\n");
  }
  close(fd);

  // Frozen tasks stay frozen after the call (and in a run restored from the image).
  check(cg_event(GROUP, "frozen") == 1, "the group is not frozen after the checkpoint");
  check_members("after the checkpoint");
  thaw_and_wait(GROUP);
  for (int i = 0; i < workers; i++) check(write_all(gate[1], "g", 1) == 0, "open the gate");
  close(gate[1]);

  collect(steps / 2, steps);
  for (int i = 0; i < workers; i++) {
    char c;
    check(read(report[i], &c, 1) == 0, "worker %d: its pipe is not at EOF after the last step", i);
    int code = join_child(pids[i]);
    check(code == 10 + i, "worker %d exited with %d, expected %d", i, code, 10 + i);
    printf("worker %d: %d steps, hash %016llx, exit %d\n", i, steps, (unsigned long long)want[i], code);
  }
  check(cg_event(GROUP, "populated") == 0, "cgroup.events does not say \"populated 0\" after the workers exited");
  e = cg_rmdir(GROUP);
  check(e == 0, "rmdir %s: %s (%d)", GROUP, errname(e), e);
  return finish();
}
