// tasks: measurements of the process model, each self-checking.
//   tasks hold N      — N children alive at once, each blocked on a pipe, then released and joined
//   tasks pingpong M  — M round trips of one byte between two tasks over two pipes (context switches)
//   tasks forks N     — N fork + exit + join cycles (fork latency)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "wasix.h"

static int fail(const char *what) {
  fprintf(stderr, "tasks: check failed: %s\n", what);
  exit(1);
}

static wasix_pid_t fork_or_fail(void) {
  fflush(stdout);
  wasix_pid_t pid;
  if (wasix_proc_fork(1, &pid) != 0) fail("fork");
  return pid;
}

static int join_any(void) {
  wasix_option_pid_t who = { .tag = WASIX_OPTION_NONE };
  wasix_join_status_t st;
  if (wasix_proc_join(&who, 0, &st) != 0 || st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL) fail("join");
  return st.u.exit_normal;
}

static void hold(int n) {
  int fds[2];
  if (wasix_fd_pipe(&fds[0], &fds[1]) != 0) fail("pipe");
  for (int i = 0; i < n; i++) {
    if (fork_or_fail() == 0) {
      close(fds[1]);
      char c;
      exit(read(fds[0], &c, 1) == 0 ? 7 : 1); /* blocks until every write end is closed */
    }
  }
  printf("tasks: %d children alive, each blocked on a pipe\n", n);
  fflush(stdout);
  close(fds[1]);
  for (int i = 0; i < n; i++) if (join_any() != 7) fail("child saw EOF");
}

static void pingpong(int m) {
  int a[2], b[2];
  if (wasix_fd_pipe(&a[0], &a[1]) != 0 || wasix_fd_pipe(&b[0], &b[1]) != 0) fail("pipe");
  if (fork_or_fail() == 0) {
    char c;
    for (int i = 0; i < m; i++) {
      if (read(a[0], &c, 1) != 1) fail("child read");
      c++;
      if (write(b[1], &c, 1) != 1) fail("child write");
    }
    exit(0);
  }
  char c = 0;
  for (int i = 0; i < m; i++) {
    char sent = (char)i;
    if (write(a[1], &sent, 1) != 1) fail("write");
    if (read(b[0], &c, 1) != 1) fail("read");
    if (c != (char)(sent + 1)) fail("echo");
  }
  if (join_any() != 0) fail("pingpong child");
  printf("tasks: %d round trips\n", m);
}

static void forks(int n) {
  for (int i = 0; i < n; i++) {
    if (fork_or_fail() == 0) exit(i % 100);
    if (join_any() != i % 100) fail("exit code");
  }
  printf("tasks: %d fork/exit/join cycles\n", n);
}

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  int n = atoi(argv[2]);
  if (!strcmp(argv[1], "hold")) hold(n);
  else if (!strcmp(argv[1], "pingpong")) pingpong(n);
  else if (!strcmp(argv[1], "forks")) forks(n);
  else return 2;
  printf("tasks: ok\n");
  return 0;
}
