// sieve: the prime sieve as a pipeline of tasks (McIlroy's / Go's classic):
// a generator writes 2..N into a pipe; each stage task takes the first number
// it reads as its prime, prints it, and passes on the numbers its prime does
// not divide to a new stage it forks. The chain grows as primes are found.
// The root checks the primes against a sieve computed directly.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "wasix.h"

static int limit = 600;

static int fail(const char *what) {
  fprintf(stderr, "sieve: check failed: %s\n", what);
  exit(1);
}

static void put(int fd, int v) {
  if (write(fd, &v, sizeof v) != sizeof v) fail("write");
}

static int get(int fd, int *v) {
  ssize_t n = read(fd, v, sizeof *v);
  if (n == 0) return 0;
  if (n != sizeof *v) fail("short read");
  return 1;
}

static wasix_pid_t fork_or_fail(void) {
  fflush(stdout);
  wasix_pid_t pid;
  if (wasix_proc_fork(1, &pid) != 0) fail("fork");
  return pid;
}

static void join_child(wasix_pid_t pid) {
  wasix_option_pid_t who = { .tag = WASIX_OPTION_SOME, .u.some = pid };
  wasix_join_status_t st;
  if (wasix_proc_join(&who, 0, &st) != 0 || st.tag != WASIX_JOIN_STATUS_EXIT_NORMAL || st.u.exit_normal != 0) fail("stage exit");
}

/* One stage: reads from `in`, reports its prime on `report`, filters into the next stage. */
static void stage(int in, int report) {
  int p;
  if (!get(in, &p)) exit(0);
  put(report, p);
  int fds[2];
  if (wasix_fd_pipe(&fds[0], &fds[1]) != 0) fail("pipe");
  wasix_pid_t next = fork_or_fail();
  if (next == 0) {
    close(fds[1]);
    close(in);
    stage(fds[0], report);
    exit(0);
  }
  close(fds[0]);
  int v;
  while (get(in, &v)) if (v % p != 0) put(fds[1], v);
  close(fds[1]);
  join_child(next);
  exit(0);
}

int main(int argc, char **argv) {
  if (argc > 1) limit = atoi(argv[1]);
  if (limit < 2 || limit > 5000) return 2;
  int numbers[2], primes[2];
  if (wasix_fd_pipe(&numbers[0], &numbers[1]) != 0 || wasix_fd_pipe(&primes[0], &primes[1]) != 0) fail("pipe");
  wasix_pid_t first = fork_or_fail();
  if (first == 0) {
    close(numbers[1]);
    close(primes[0]);
    stage(numbers[0], primes[1]);
  }
  close(numbers[0]);
  close(primes[1]);
  wasix_pid_t gen = fork_or_fail();
  if (gen == 0) {
    close(primes[0]);
    for (int v = 2; v <= limit; v++) put(numbers[1], v);
    close(numbers[1]);
    exit(0);
  }
  close(numbers[1]);
  char *composite = calloc((size_t)limit + 1, 1);
  for (int i = 2; i * i <= limit; i++)
    if (!composite[i]) for (int j = i * i; j <= limit; j += i) composite[j] = 1;
  int expect = 2, count = 0, p;
  while (get(primes[0], &p)) {
    while (expect <= limit && composite[expect]) expect++;
    if (p != expect) fail("a prime out of order or missing");
    printf("%d%s", p, ++count % 20 == 0 ? "\n" : " ");
    expect++;
  }
  while (expect <= limit && composite[expect]) expect++;
  if (expect <= limit) fail("primes missing at the end");
  join_child(gen);
  join_child(first);
  printf("\nsieve: %d primes up to %d through a pipeline of %d tasks\n", count, limit, count + 1);
  printf("sieve: ok\n");
  return 0;
}
