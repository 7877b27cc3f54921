// ckpt_rules: checkpoint(2)'s refusals. Each broken rule must give its own
// errno and write nothing: the target file stays empty, and the tasks that
// were frozen stay frozen. Only one rule is broken at a time (the others
// hold), and a call with every rule kept succeeds at the end.
//
//   ckpt_rules DIR      (DIR: a writable directory for the target files)
//
// The rules (guests/include/crvm.h): EBUSY a task of the image other than the
// caller is not frozen, or the tasks are in more than one group; EPERM the
// pid is not the caller or a descendant; EBADF the fd is not open for
// writing; EINVAL unknown flag bits, or no SUBTREE and the pid is not pid 1;
// ESRCH no such task.
#include "../freezer_lib/freezer.h"

static char target[256];        /* the file every refused call is aimed at */
static int target_fd = -1;
static wasix_pid_t a_pid, b_pid; /* the workers; children of pid 1 */
static int hold[2];             /* workers block reading it until EOF */

/* A worker: blocks on the pipe until the parent closes it, then exits 0. */
static wasix_pid_t spawn_worker(void) {
  wasix_pid_t pid = fork_or_die();
  if (pid == 0) {
    close(hold[1]);
    char c;
    exit(read(hold[0], &c, 1) == 0 ? 0 : 1);
  }
  return pid;
}

/* The groups that must still be frozen after a refused call. */
static const char *frozen_groups[4];
static int n_frozen;

static void expect_frozen(const char *g0, const char *g1) {
  n_frozen = 0;
  if (g0) frozen_groups[n_frozen++] = g0;
  if (g1) frozen_groups[n_frozen++] = g1;
}

/* One refused call: errno `want`, nothing written, the frozen groups still frozen. */
static void refused(const char *what, int want, int pid, int fd, int flags) {
  unsigned long long id = 777;
  int e = crvm_checkpoint(pid, fd, flags, &id);
  int ok = check(e == want, "%s: got %s (%d), expected %s (%d)", what, errname(e), e, errname(want), want);
  ok &= check(id == 777, "%s: the checkpoint id was stored (%llu)", what, id);
  ok &= check(fd_size(target_fd) == 0 && path_size(target) == 0, "%s: the target file is not empty (%lld bytes)", what, path_size(target));
  for (int i = 0; i < n_frozen; i++) {
    ok &= check(cg_event(frozen_groups[i], "frozen") == 1, "%s: group %s is no longer frozen", what, frozen_groups[i]);
  }
  printf("%-52s %s%s\n", what, errname(e), ok ? "" : "  (FAILED)");
}

static void move_or_fail(const char *group, wasix_pid_t pid) {
  int e = cg_move(group, pid);
  check(e == 0, "move %d into %s: %s (%d)", (int)pid, group[0] ? group : "/", errname(e), e);
}

/* Runs in a child of pid 1: the calls that name tasks outside its subtree. */
static void outsider(void) {
  expect_frozen("r1", NULL);
  refused("EPERM: child names its parent (SUBTREE)", EPERM, 1, target_fd, CRVM_CHECKPOINT_SUBTREE);
  refused("EPERM: child names pid 1 (whole VM)", EPERM, 1, target_fd, 0);
  refused("EPERM: child names a sibling (SUBTREE)", EPERM, a_pid, target_fd, CRVM_CHECKPOINT_SUBTREE);
  fflush(stdout);
  exit(failures ? 1 : 0);
}

int main(int argc, char **argv) {
  guest_start("ckpt_rules");
  if (argc < 2) die("usage: ckpt_rules DIR");
  snprintf(target, sizeof target, "%s/rules.img", argv[1]);
  target_fd = open(target, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (target_fd < 0) die("open %s: %s", target, strerror(errno));
  check(self_pid() == 1, "pid is %d, not 1", (int)self_pid());

  make_pipe(hold);
  a_pid = spawn_worker();
  b_pid = spawn_worker();
  int e;
  if ((e = cg_mkdir("r1")) || (e = cg_mkdir("r2")) || (e = cg_mkdir("r1/sub"))) die("mkdir groups: %s (%d)", errname(e), e);
  move_or_fail("r1", a_pid);
  move_or_fail("r1", b_pid);
  printf("ckpt_rules: workers %d and %d in r1\n", (int)a_pid, (int)b_pid);

  // Not frozen at all.
  expect_frozen(NULL, NULL);
  refused("EBUSY: workers not frozen (whole VM)", EBUSY, 1, target_fd, 0);
  refused("EBUSY: workers not frozen (SUBTREE of pid 1)", EBUSY, 1, target_fd, CRVM_CHECKPOINT_SUBTREE);
  refused("EBUSY: worker not frozen (SUBTREE of it)", EBUSY, a_pid, target_fd, CRVM_CHECKPOINT_SUBTREE);

  // From here on r1 is frozen with both workers in it: every rule holds unless broken on purpose.
  if (freeze_and_wait("r1")) die("cannot freeze r1");
  expect_frozen("r1", NULL);

  refused("EBADF: fd not open", EBADF, 1, 99, CRVM_CHECKPOINT_SUBTREE);
  refused("EBADF: fd -1", EBADF, 1, -1, CRVM_CHECKPOINT_SUBTREE);
  int dir = open(argv[1], O_RDONLY | O_DIRECTORY);
  if (dir < 0) die("open %s: %s", argv[1], strerror(errno));
  refused("EBADF: a directory fd", EBADF, 1, dir, CRVM_CHECKPOINT_SUBTREE);
  close(dir);
  int ro = open(target, O_RDONLY);
  if (ro < 0) die("open %s read-only: %s", target, strerror(errno));
  refused("EBADF: a file opened read-only", EBADF, 1, ro, CRVM_CHECKPOINT_SUBTREE);
  close(ro);
  int p[2];
  make_pipe(p);
  refused("EBADF: the read end of a pipe", EBADF, 1, p[0], CRVM_CHECKPOINT_SUBTREE);
  close(p[0]);
  close(p[1]);

  refused("EINVAL: no SUBTREE and pid is not 1", EINVAL, a_pid, target_fd, 0);
  refused("EINVAL: unknown flag bit 2", EINVAL, 1, target_fd, 2);
  refused("EINVAL: unknown flag bit 31", EINVAL, 1, target_fd, (int)0x80000000u);
  refused("EINVAL: unknown flag bits with SUBTREE", EINVAL, 1, target_fd, CRVM_CHECKPOINT_SUBTREE | 0x10);

  refused("ESRCH: no such pid", ESRCH, 9999, target_fd, CRVM_CHECKPOINT_SUBTREE);
  refused("ESRCH: pid 0", ESRCH, 0, target_fd, CRVM_CHECKPOINT_SUBTREE);
  wasix_pid_t gone = fork_or_die();
  if (gone == 0) exit(0);
  check(join_child(gone) == 0, "short-lived child exit");
  refused("ESRCH: a child that exited and was joined", ESRCH, gone, target_fd, CRVM_CHECKPOINT_SUBTREE);

  // A task outside the caller's subtree: a child names its parent and its sibling.
  wasix_pid_t q = fork_or_die();
  if (q == 0) outsider();
  check(join_child(q) == 0, "the EPERM checks in the child failed");

  // A third worker outside the frozen group (in the root group, running).
  wasix_pid_t c_pid = spawn_worker();
  refused("EBUSY: a third worker not frozen, in another group", EBUSY, 1, target_fd, CRVM_CHECKPOINT_SUBTREE);
  // ... moved into a second group and frozen there: all frozen, two groups.
  move_or_fail("r2", c_pid);
  if (freeze_and_wait("r2")) die("cannot freeze r2");
  expect_frozen("r1", "r2");
  refused("EBUSY: frozen, but in two groups", EBUSY, 1, target_fd, CRVM_CHECKPOINT_SUBTREE);
  refused("EBUSY: frozen, but in two groups (whole VM)", EBUSY, 1, target_fd, 0);
  // ... in a child group of the frozen one: frozen by its parent, still another group.
  move_or_fail("r1/sub", c_pid);
  expect_frozen("r1", "r1/sub");
  check(cg_event("r1/sub", "frozen") == 1, "r1/sub is not frozen under the frozen r1");
  refused("EBUSY: frozen, in r1 and r1/sub", EBUSY, 1, target_fd, CRVM_CHECKPOINT_SUBTREE);
  // ... and back in r1 with the others: every rule holds.
  move_or_fail("r1", c_pid);
  expect_frozen("r1", NULL);
  check(cg_event("r1", "frozen") == 1, "r1 is not frozen after a frozen task moved in");

  // The positive control: the same call with every rule kept writes an image.
  char good[256];
  snprintf(good, sizeof good, "%s/rules-ok.img", argv[1]);
  int gfd = open(good, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (gfd < 0) die("open %s: %s", good, strerror(errno));
  unsigned long long id = 0;
  e = crvm_checkpoint(1, gfd, CRVM_CHECKPOINT_SUBTREE, &id);
  check(e == 0, "the checkpoint with every rule kept: %s (%d)", errname(e), e);
  if (e == 0 && id == 0) {
    // Restored from this image: the rest runs as in the first run.
    printf("restored (id 0)\n");
  } else {
    check(id > 0, "checkpoint id %llu is not positive", id);
    check(fd_size(gfd) > 0, "the image is empty after a successful checkpoint");
    printf("%-52s %s\n", "every rule kept", e == 0 ? "0, image written" : errname(e));
  }
  close(gfd);
  check(fd_size(target_fd) == 0, "the refused calls' target file is not empty at the end");
  check(cg_event("r1", "frozen") == 1, "r1 is not frozen after the successful checkpoint");

  // Let the workers go.
  thaw_and_wait("r1");
  thaw_and_wait("r2");
  close(hold[0]);
  close(hold[1]);
  check(join_child(a_pid) == 0 && join_child(b_pid) == 0 && join_child(c_pid) == 0, "a worker failed");
  check(cg_rmdir("r1/sub") == 0 && cg_rmdir("r1") == 0 && cg_rmdir("r2") == 0, "rmdir the groups");
  close(target_fd);
  return finish();
}
