// forkbomb: every task forks two children, down to a depth, as fast as it
// can. Run with a small --max-tasks: forks beyond the limit must fail with
// EAGAIN (not take the VM down), and the whole tree must still finish.
#include <stdio.h>
#include <stdlib.h>
#include "wasix.h"

#define EAGAIN_ERRNO 6
static int max_depth = 7;

static int fail(const char *what) {
  fprintf(stderr, "forkbomb: check failed: %s\n", what);
  exit(1);
}

/* Returns how many forks in this subtree failed with EAGAIN (capped). */
static int bomb(int depth) {
  int refused = 0, n = 0;
  wasix_pid_t kids[2];
  for (int i = 0; i < 2 && depth < max_depth; i++) {
    wasix_pid_t pid;
    int err = wasix_proc_fork(1, &pid);
    if (err == EAGAIN_ERRNO) {
      refused++;
      continue;
    }
    if (err != 0) fail("fork failed with something other than EAGAIN");
    if (pid == 0) {
      int r = bomb(depth + 1);
      exit(r > 255 ? 255 : r);
    }
    kids[n++] = pid;
  }
  for (int i = 0; i < n; i++) {
    wasix_option_pid_t who = { .tag = WASIX_OPTION_SOME, .u.some = kids[i] };
    wasix_join_status_t st;
    if (wasix_proc_join(&who, 0, &st) != 0 || st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL) fail("join");
    refused += st.u.exit_normal;
  }
  return refused;
}

int main(int argc, char **argv) {
  if (argc > 1) max_depth = atoi(argv[1]);
  printf("forkbomb: depth %d\n", max_depth);
  fflush(stdout);
  int refused = bomb(0);
  if (refused == 0) fail("no fork was refused: run with a small --max-tasks");
  printf("forkbomb: held by the task limit\n");
  printf("forkbomb: ok\n");
  return 0;
}
