// forktree: a recursive fork tree. Every leaf exits with a code of its own
// and writes a line into a pipe the root made before forking; every inner
// task joins its two children and exits with the sum of their codes. The
// root checks the sum and the lines against values computed directly.
// Exercises proc_fork, proc_join, proc_id/proc_parent, fd_pipe and fds shared
// across forks (one pipe, many writers).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "crvm.h"
#include "wasix.h"

static int depth = 4;
static int pipe_w = -1;

static int leaf_code(int index) { return index % 7 + 1; }

static int fail(const char *what) {
  fprintf(stderr, "forktree: check failed: %s\n", what);
  exit(1);
}

static wasix_pid_t self(void) {
  wasix_pid_t p;
  if (wasix_proc_id(&p) != 0) fail("proc_id");
  return p;
}

static int join(wasix_pid_t pid) {
  wasix_option_pid_t who = { .tag = WASIX_OPTION_SOME, .u.some = pid };
  wasix_join_status_t st;
  if (wasix_proc_join(&who, 0, &st) != 0) fail("proc_join");
  if (st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL) fail("child did not exit normally");
  if (who.u.some != pid) fail("joined the wrong child");
  return st.u.exit_normal;
}

// Runs the subtree rooted at (level, index); returns its code (for the root) or exits with it.
static int node(int level, int index) {
  if (level == depth) {
    char line[64];
    int n = snprintf(line, sizeof line, "leaf %02d pid %d\n", index, (int)self());
    crvm_yield(index);
    if (write(pipe_w, line, (size_t)n) != n) fail("write to pipe");
    return leaf_code(index);
  }
  wasix_pid_t kids[2];
  for (int i = 0; i < 2; i++) {
    wasix_pid_t pid;
    fflush(stdout);
    if (wasix_proc_fork(1, &pid) != 0) fail("proc_fork");
    if (pid == 0) {
      wasix_pid_t parent;
      if (wasix_proc_parent(self(), &parent) != 0) fail("proc_parent");
      exit(node(level + 1, index * 2 + i));
    }
    kids[i] = pid;
  }
  int sum = 0;
  for (int i = 0; i < 2; i++) sum += join(kids[i]);
  return sum;
}

int main(int argc, char **argv) {
  if (argc > 1) depth = atoi(argv[1]);
  if (depth < 1 || depth > 7) return 2;
  int fds[2];
  if (wasix_fd_pipe(&fds[0], &fds[1]) != 0) fail("fd_pipe");
  pipe_w = fds[1];
  printf("forktree: depth %d, root pid %d\n", depth, (int)self());
  fflush(stdout);
  int sum = node(0, 0);
  close(pipe_w);
  int leaves = 1 << depth, expected = 0;
  for (int i = 0; i < leaves; i++) expected += leaf_code(i);
  char buf[8192];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fds[0], buf + got, sizeof buf - 1 - got);
    if (n < 0) fail("read from pipe");
    if (n == 0) break;
    got += (size_t)n;
  }
  buf[got] = 0;
  int lines = 0;
  for (char *p = buf; *p; p++) lines += *p == '\n';
  printf("sum of leaf codes %d (expected %d), %d lines from leaves\n", sum, expected, lines);
  if (sum != expected) fail("sum");
  if (lines != leaves) fail("lines");
  for (int i = 0; i < leaves; i++) {
    char want[16];
    snprintf(want, sizeof want, "leaf %02d ", i);
    if (!strstr(buf, want)) fail("a leaf line is missing");
  }
  printf("forktree: ok\n");
  return 0;
}
