// procs: exec, spawn with redirected fds, signals and wait-any, each checked.
// Needs guests/build preopened at /bin (`--dir guests/build::/bin`): it runs
// /bin/hello.wasm through proc_exec4 and proc_spawn3.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "crvm.h"
#include "wasix.h"

#define HELLO "/bin/hello.wasm"

static int fail(const char *what) {
  fprintf(stderr, "procs: check failed: %s\n", what);
  exit(1);
}

/* Forks after flushing stdio, so buffered output is not copied into the child (as on POSIX). */
static wasix_pid_t fork_flushed(const char *what) {
  fflush(stdout);
  fflush(stderr);
  wasix_pid_t pid;
  if (wasix_proc_fork(1, &pid) != 0) fail(what);
  return pid;
}

static wasix_join_status_t join(wasix_pid_t *pid, uint32_t flags) {
  wasix_option_pid_t who = { .tag = *pid > 0 ? WASIX_OPTION_SOME : WASIX_OPTION_NONE, .u.some = *pid > 0 ? *pid : 0 };
  wasix_join_status_t st;
  int err = wasix_proc_join(&who, flags, &st);
  if (err != 0) {
    st.tag = 0xff;
    st.u.exit_normal = (uint16_t)err;
    return st;
  }
  *pid = who.u.some;
  return st;
}

static void test_exec(void) {
  wasix_pid_t pid = fork_flushed("fork for exec");
  if (pid == 0) {
    const char *argv[] = { "hello", "from-exec", "exit=5" };
    const char *envp[] = { "GREETING=exec" };
    int err = wasix_proc_exec4(HELLO, strlen(HELLO), argv, 3, envp, 1, 0, "", 0);
    fprintf(stderr, "procs: exec failed with %d\n", err);
    exit(100);
  }
  wasix_join_status_t st = join(&pid, 0);
  if (st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL || st.u.exit_normal != 5) fail("exec'd child exit code");
  printf("exec: child exited with 5\n");
  const char *argv[] = { "nothing" };
  if (wasix_proc_exec4("/bin/no-such.wasm", 17, argv, 1, 0, 0, 0, "", 0) == 0) fail("exec of a missing file");
  printf("exec: a missing program is an error\n");
}

static void test_spawn(void) {
  wasix_fd_t fds[2];
  if (wasix_fd_pipe(&fds[0], &fds[1]) != 0) fail("fd_pipe");
  wasix_proc_spawn_fd_op_t ops[2];
  memset(ops, 0, sizeof ops);
  ops[0].cmd = 1; /* dup2 the pipe's write end onto the child's stdout */
  ops[0].fd = 1;
  ops[0].src_fd = fds[1];
  ops[1].cmd = 0; /* and close the read end in the child */
  ops[1].fd = fds[0];
  const char *argv[] = { "hello", "spawned" };
  const char *envp[] = { "GREETING=spawn" };
  wasix_pid_t pid;
  fflush(stdout);
  int err = wasix_proc_spawn3(HELLO, strlen(HELLO), argv, 2, envp, 1, ops, 2, 0, 0, 0, "", 0, &pid);
  if (err != 0) fail("proc_spawn3");
  close(fds[1]);
  char buf[1024];
  size_t got = 0;
  for (;;) {
    ssize_t n = read(fds[0], buf + got, sizeof buf - 1 - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  buf[got] = 0;
  close(fds[0]);
  wasix_join_status_t st = join(&pid, 0);
  if (st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL || st.u.exit_normal != 0) fail("spawned child exit code");
  if (!strstr(buf, "argv[1]=spawned") || !strstr(buf, "GREETING=spawn")) fail("spawned child's output through the pipe");
  printf("spawn: child's stdout arrived through a pipe (%zu bytes)\n", got);
}

static void test_signals(void) {
  wasix_pid_t busy = fork_flushed("fork busy child");
  if (busy == 0) {
    volatile unsigned long x = 0;
    for (;;) x++; /* pure compute: only fuel checks can preempt it */
  }
  crvm_yield(1); /* let it run a little */
  if (wasix_proc_signal(busy, WASIX_SIGSTOP) != 0) fail("SIGSTOP");
  wasix_pid_t probe = busy;
  wasix_join_status_t st = join(&probe, WASIX_JOIN_NON_BLOCKING);
  if (st.tag != WASIX_JOIN_STATUS_NOTHING) fail("a stopped child is not finished");
  if (wasix_proc_signal(busy, WASIX_SIGCONT) != 0) fail("SIGCONT");
  if (wasix_proc_signal(busy, WASIX_SIGKILL) != 0) fail("SIGKILL");
  st = join(&busy, 0);
  if (st.tag != WASIX_JOIN_STATUS_EXIT_SIGNAL || st.u.exit_signal.signal != WASIX_SIGKILL) fail("killed child's status");
  printf("signals: a busy child was stopped, continued and killed\n");
  wasix_pid_t sleeper = fork_flushed("fork sleeper");
  if (sleeper == 0) {
    for (;;) usleep(1000);
  }
  if (wasix_proc_signal(sleeper, WASIX_SIGTERM) != 0) fail("SIGTERM");
  st = join(&sleeper, 0);
  if (st.tag != WASIX_JOIN_STATUS_EXIT_SIGNAL || st.u.exit_signal.signal != WASIX_SIGTERM) fail("terminated child's status");
  printf("signals: a sleeping child was terminated\n");
  if (wasix_proc_signal(9999, WASIX_SIGTERM) == 0) fail("signal to no such pid");
}

static void test_wait_any(void) {
  enum { N = 12 };
  for (int i = 0; i < N; i++) {
    wasix_pid_t pid = fork_flushed("fork for wait-any");
    if (pid == 0) {
      usleep((unsigned)(N - i) * 300);
      exit(10 + i);
    }
  }
  int sum = 0, seen = 0;
  for (;;) {
    wasix_pid_t any = 0;
    wasix_join_status_t st = join(&any, 0);
    if (st.tag == 0xff) {
      if (st.u.exit_normal != 12 /* ECHILD */) fail("join after the last child: ECHILD");
      break;
    }
    if (st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL) fail("wait-any status");
    sum += st.u.exit_normal;
    seen++;
  }
  int expected = 0;
  for (int i = 0; i < N; i++) expected += 10 + i;
  if (seen != N || sum != expected) fail("wait-any saw every child once");
  printf("wait-any: %d children, exit codes sum to %d, then ECHILD\n", seen, sum);
}

int main(void) {
  test_exec();
  test_spawn();
  test_signals();
  test_wait_any();
  printf("procs: ok\n");
  return 0;
}
