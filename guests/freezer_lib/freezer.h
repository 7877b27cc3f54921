/*
 * freezer.h — helpers shared by the freezer and checkpoint guests
 * (ckpt_self, ckpt_group, ckpt_rules, ckpt_external, freeze_chaos).
 * Not a guest itself: this directory has no main.c, so build.sh skips it.
 *
 * The freezer is the cgroup v2 filesystem crvm preopens in every task at
 * /sys/fs/cgroup: mkdir/rmdir make and remove groups; a group's
 * cgroup.procs lists its pids (writing a pid moves that task), cgroup.freeze
 * takes 0/1, and cgroup.events reads "populated 0|1" and "frozen 0|1".
 *
 * Every helper returns 0 or an errno; none exits, so a guest can report each
 * failed check on its own line (check()) and go on.
 *
 * Example:
 *     guest_start("mine");
 *     check(cg_mkdir("g") == 0, "mkdir /sys/fs/cgroup/g");
 *     check(cg_move("g", worker) == 0, "move %d into g", worker);
 *     check(cg_freeze("g", 1) == 0 && cg_wait_frozen("g", 1) == 0, "freeze g");
 */
#ifndef CRVM_GUEST_FREEZER_H
#define CRVM_GUEST_FREEZER_H

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "crvm.h"
#include "wasix.h"

#define CGROUP_ROOT "/sys/fs/cgroup"

/* The guest's name, for messages; main() sets it. */
static const char *GUEST = "guest";
/* Failed checks so far; a guest exits 1 if any. */
static int failures;

/* Names the guest for messages; stdout becomes line-buffered, so the lines of
 * several tasks come out in the order they were printed. */
static inline void guest_start(const char *name) {
  GUEST = name;
  setvbuf(stdout, NULL, _IOLBF, 0);
}

/* Records a check: prints "GUEST: check failed: <what>" to stderr when !ok. Returns ok. */
__attribute__((format(printf, 2, 3)))
static inline int check(int ok, const char *fmt, ...) {
  if (ok) return 1;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: check failed: ", GUEST);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  failures++;
  return 0;
}

/* A failure the guest cannot go on after. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "%s: fatal: ", GUEST);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stdout);
  exit(1);
}

/* The exit of main(): the "ok" line only if every check held. */
static inline int finish(void) {
  if (failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", GUEST, failures);
    return 1;
  }
  printf("%s: ok\n", GUEST);
  return 0;
}

static inline const char *errname(int e) {
  switch (e) {
    case 0: return "0";
    case EBADF: return "EBADF";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case EPERM: return "EPERM";
    case ESRCH: return "ESRCH";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case EIO: return "EIO";
    case ENOSYS: return "ENOSYS";
    case ENOTDIR: return "ENOTDIR";
    case EACCES: return "EACCES";
    case ENOTEMPTY: return "ENOTEMPTY";
    default: return "errno";
  }
}

/* ---- tasks ---- */

static inline wasix_pid_t self_pid(void) {
  wasix_pid_t p;
  if (wasix_proc_id(&p) != 0) die("proc_id");
  return p;
}

/* fork(): 0 in the child. stdout is flushed first so no line is printed twice. */
static inline wasix_pid_t fork_or_die(void) {
  fflush(stdout);
  fflush(stderr);
  wasix_pid_t pid;
  int e = wasix_proc_fork(1, &pid);
  if (e != 0) die("proc_fork: %s (%d)", errname(e), e);
  return pid;
}

/* Waits for child `pid`; its exit code, or -1 if it did not exit normally. */
static inline int join_child(wasix_pid_t pid) {
  wasix_option_pid_t who = { .tag = WASIX_OPTION_SOME, .u.some = pid };
  wasix_join_status_t st;
  int e = wasix_proc_join(&who, 0, &st);
  if (e != 0) die("proc_join(%d): %s (%d)", (int)pid, errname(e), e);
  return st.tag == WASIX_JOIN_STATUS_EXIT_NORMAL ? st.u.exit_normal : -1;
}

static inline void make_pipe(int fds[2]) {
  int32_t r, w;
  int e = wasix_fd_pipe(&r, &w);
  if (e != 0) die("fd_pipe: %s (%d)", errname(e), e);
  fds[0] = r;
  fds[1] = w;
}

/* write() until done; 0 or errno. */
static inline int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t k = write(fd, p, n);
    if (k < 0) return errno;
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

/* read() until `n` bytes or EOF; the number read, or -1. */
static inline ssize_t read_full(int fd, void *buf, size_t n) {
  char *p = buf;
  size_t got = 0;
  while (got < n) {
    ssize_t k = read(fd, p + got, n - got);
    if (k < 0) return -1;
    if (k == 0) break;
    got += (size_t)k;
  }
  return (ssize_t)got;
}

/* Size of an open file, or -1. */
static inline long long fd_size(int fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? (long long)st.st_size : -1;
}

/* Size of a file by path, or -1. */
static inline long long path_size(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* ---- deterministic numbers ---- */

static inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/* One step of a worker's running hash: some compute (fuel yields happen inside) and no syscall. */
static inline uint64_t work_step(uint64_t h, int worker, int step, int rounds) {
  h ^= ((uint64_t)worker << 32) | (uint32_t)step;
  for (int r = 0; r < rounds; r++) h = splitmix64(h + (uint64_t)r);
  return h;
}

/* ---- the freezer filesystem ---- */

static inline void cg_path(char *out, size_t size, const char *group, const char *file) {
  snprintf(out, size, CGROUP_ROOT "%s%s%s%s", *group ? "/" : "", group, file ? "/" : "", file ? file : "");
}

/* mkdir /sys/fs/cgroup/GROUP ("a" or "a/b"). */
static inline int cg_mkdir(const char *group) {
  char p[256];
  cg_path(p, sizeof p, group, NULL);
  return mkdir(p, 0755) == 0 ? 0 : errno;
}

static inline int cg_rmdir(const char *group) {
  char p[256];
  cg_path(p, sizeof p, group, NULL);
  return rmdir(p) == 0 ? 0 : errno;
}

/* Writes `text` to GROUP/FILE ("" is the root group). */
static inline int cg_write(const char *group, const char *file, const char *text) {
  char p[256];
  cg_path(p, sizeof p, group, file);
  int fd = open(p, O_WRONLY);
  if (fd < 0) return errno;
  int e = write_all(fd, text, strlen(text));
  if (close(fd) != 0 && e == 0) e = errno;
  return e;
}

/* Reads GROUP/FILE into buf (NUL-terminated). */
static inline int cg_read(const char *group, const char *file, char *buf, size_t size) {
  char p[256];
  cg_path(p, sizeof p, group, file);
  int fd = open(p, O_RDONLY);
  if (fd < 0) return errno;
  ssize_t n = read_full(fd, buf, size - 1);
  int e = n < 0 ? errno : 0;
  close(fd);
  buf[n < 0 ? 0 : n] = 0;
  return e;
}

/* Moves task `pid` into GROUP (writes the pid to its cgroup.procs). */
static inline int cg_move(const char *group, wasix_pid_t pid) {
  char text[16];
  snprintf(text, sizeof text, "%d\n", (int)pid);
  return cg_write(group, "cgroup.procs", text);
}

static inline int cg_freeze(const char *group, int on) {
  return cg_write(group, "cgroup.freeze", on ? "1\n" : "0\n");
}

/* The value of a "KEY 0|1" line of GROUP/cgroup.events, or -1 (unreadable or missing). */
static inline int cg_event(const char *group, const char *key) {
  char buf[256];
  if (cg_read(group, "cgroup.events", buf, sizeof buf) != 0) return -1;
  size_t k = strlen(key);
  for (char *line = buf; *line;) {
    char *end = strchr(line, '\n');
    if (!strncmp(line, key, k) && line[k] == ' ' && (line[k + 1] == '0' || line[k + 1] == '1')) return line[k + 1] - '0';
    if (!end) break;
    line = end + 1;
  }
  return -1;
}

/* The pids in GROUP/cgroup.procs, ascending as read; the count, or -1. */
static inline int cg_procs(const char *group, wasix_pid_t *pids, int max) {
  char buf[1024];
  if (cg_read(group, "cgroup.procs", buf, sizeof buf) != 0) return -1;
  int n = 0;
  for (char *p = buf; *p;) {
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p) break;
    if (n < max) pids[n] = (wasix_pid_t)v;
    n++;
    p = end;
    while (*p == '\n' || *p == ' ') p++;
  }
  return n;
}

/*
 * Polls GROUP/cgroup.events until "frozen WANT" (a freeze completes once
 * every task of the group is stopped, which needs them to run to a yield
 * point). Yields between reads; gives up after about 10 s. 0 or ETIMEDOUT.
 */
static inline int cg_wait_frozen(const char *group, int want) {
  for (int i = 0; i < 20000; i++) {
    if (cg_event(group, "frozen") == want) return 0;
    if (i < 100) sched_yield();
    else usleep(500);
  }
  return ETIMEDOUT;
}

/* Freezes GROUP and waits for "frozen 1", reporting a failure. */
static inline int freeze_and_wait(const char *group) {
  int e = cg_freeze(group, 1);
  if (!check(e == 0, "write 1 to %s/cgroup.freeze: %s (%d)", group, errname(e), e)) return e;
  e = cg_wait_frozen(group, 1);
  check(e == 0, "%s/cgroup.events never said \"frozen 1\"", group);
  return e;
}

/* Thaws GROUP and waits for "frozen 0", reporting a failure. */
static inline int thaw_and_wait(const char *group) {
  int e = cg_freeze(group, 0);
  if (!check(e == 0, "write 0 to %s/cgroup.freeze: %s (%d)", group, errname(e), e)) return e;
  e = cg_wait_frozen(group, 0);
  check(e == 0, "%s/cgroup.events never said \"frozen 0\"", group);
  return e;
}

#endif /* CRVM_GUEST_FREEZER_H */
