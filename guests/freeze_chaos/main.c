// freeze_chaos: freezing and thawing at random moments changes nothing but
// timing. Workers write deterministic record streams into their own pipes;
// the parent reads them without blocking and, driven by a seeded PRNG,
// freezes and thaws the workers' group "chaos" or one of its sub-groups
// "chaos/a" and "chaos/b", and moves workers between the sub-groups. While a
// group is frozen it checks cgroup.events ("frozen 1" for it and the groups
// under it, "frozen 0" above it), drains the frozen workers' pipes, lets time
// pass and checks that no new byte arrives from them.
//
//   freeze_chaos SEED [WORKERS=4] [RECORDS=1200]
//
// SEED 0 never freezes. stdout is the same for every seed (fixed order, no
// counts that depend on the seed); a summary of what the seed did goes to
// stderr ("freeze_chaos: seed S: F freezes ...").
#include "../freezer_lib/freezer.h"

#define MAX_WORKERS 8
#define ROUNDS 400

struct record { int32_t worker, n; uint64_t hash; };

static int workers = 4, records = 1200;
static uint64_t seed, rng;

static struct {
  int fd;                  /* read end, non-blocking */
  wasix_pid_t pid;
  int sub;                 /* 0: chaos/a, 1: chaos/b */
  int eof;
  int n;                   /* records checked */
  uint64_t want;           /* running hash the next record must continue */
  unsigned char part[sizeof(struct record)];
  size_t have;             /* bytes of a partial record in `part` */
} w[MAX_WORKERS];

static const char *SUB[2] = { "chaos/a", "chaos/b" };

static uint64_t rnd(void) { return rng = splitmix64(rng); }

static void worker(int i, int out) {
  uint64_t h = splitmix64((uint64_t)i + 7);
  for (int n = 0; n < records; n++) {
    h = work_step(h, i, n, ROUNDS);
    struct record r = { i, n, h };
    if (write_all(out, &r, sizeof r)) die("worker %d: write: %s", i, strerror(errno));
    crvm_yield(n);
  }
  exit(0);
}

/* Checks the bytes that arrived from worker i, record by record. */
static void consume(int i, const unsigned char *p, size_t len) {
  while (len > 0) {
    size_t k = sizeof w[i].part - w[i].have;
    if (k > len) k = len;
    memcpy(w[i].part + w[i].have, p, k);
    w[i].have += k;
    p += k;
    len -= k;
    if (w[i].have < sizeof w[i].part) break;
    w[i].have = 0;
    struct record r;
    memcpy(&r, w[i].part, sizeof r);
    uint64_t h = work_step(w[i].want, i, w[i].n, ROUNDS);
    if (!check(r.worker == i && r.n == w[i].n && r.hash == h, "worker %d record %d: got worker %d record %d hash %016llx, expected hash %016llx",
               i, w[i].n, r.worker, r.n, (unsigned long long)r.hash, (unsigned long long)h)) {
      die("the stream of worker %d is broken", i);
    }
    w[i].want = h;
    w[i].n++;
  }
}

/* Reads what worker i's pipe holds now, up to `max` bytes; the number of bytes read. */
static size_t drain(int i, size_t max) {
  static unsigned char buf[4096];
  size_t total = 0;
  while (!w[i].eof && total < max) {
    ssize_t n = read(w[i].fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EAGAIN) break;
      die("worker %d: read: %s", i, strerror(errno));
    }
    if (n == 0) {
      w[i].eof = 1;
      break;
    }
    consume(i, buf, (size_t)n);
    total += (size_t)n;
  }
  return total;
}

static int in_group(int i, int target) { return target == 2 || w[i].sub == target; }

static long freezes, sub_freezes, moves, windows;

/* One frozen window: target 0/1 is a sub-group, 2 is "chaos" itself. */
static void frozen_window(int target) {
  const char *g = target == 2 ? "chaos" : SUB[target];
  if (freeze_and_wait(g)) die("cannot freeze %s", g);
  freezes++;
  if (target != 2) sub_freezes++;
  check(cg_event(g, "frozen") == 1, "%s: not \"frozen 1\" after the freeze", g);
  if (target == 2) {
    check(cg_event("chaos/a", "frozen") == 1 && cg_event("chaos/b", "frozen") == 1, "a sub-group of the frozen chaos is not \"frozen 1\"");
  } else {
    check(cg_event("chaos", "frozen") == 0, "chaos says \"frozen 1\" while only %s is frozen", g);
  }
  for (int i = 0; i < workers; i++) if (in_group(i, target)) drain(i, (size_t)-1);
  // Within a frozen chaos, moving a worker between its frozen sub-groups keeps it frozen.
  if (target == 2 && rnd() % 2 == 0) {
    int i = (int)(rnd() % (uint64_t)workers);
    int e = cg_move(SUB[!w[i].sub], w[i].pid);
    check(e == 0 || e == ESRCH, "move worker %d within the frozen chaos: %s (%d)", i, errname(e), e);
    if (e == 0) w[i].sub = !w[i].sub, moves++;
  }
  // Let the others run, and time pass.
  int turns = 1 + (int)(rnd() % 4);
  for (int t = 0; t < turns; t++) sched_yield();
  if (rnd() % 4 == 0) usleep(1000);
  for (int i = 0; i < workers; i++) {
    if (!in_group(i, target)) continue;
    size_t n = drain(i, (size_t)-1);
    check(n == 0, "%zu new bytes from worker %d while %s was frozen", n, i, g);
  }
  check(cg_event(g, "frozen") == 1, "%s: no longer \"frozen 1\" before the thaw", g);
  windows++;
  thaw_and_wait(g);
}

int main(int argc, char **argv) {
  guest_start("freeze_chaos");
  if (argc < 2) die("usage: freeze_chaos SEED [WORKERS] [RECORDS]");
  seed = strtoull(argv[1], NULL, 10);
  if (argc > 2) workers = atoi(argv[2]);
  if (argc > 3) records = atoi(argv[3]);
  if (workers < 1 || workers > MAX_WORKERS || records < 1 || records > 100000) die("bad arguments");
  rng = seed;
  printf("freeze_chaos: %d workers, %d records each\n", workers, records);

  int e;
  if ((e = cg_mkdir("chaos")) || (e = cg_mkdir("chaos/a")) || (e = cg_mkdir("chaos/b"))) die("mkdir groups: %s (%d)", errname(e), e);
  int outs[MAX_WORKERS];
  for (int i = 0; i < workers; i++) {
    int p[2];
    make_pipe(p);
    w[i].fd = p[0];
    outs[i] = p[1];
  }
  for (int i = 0; i < workers; i++) {
    wasix_pid_t pid = fork_or_die();
    if (pid == 0) {
      for (int j = 0; j < workers; j++) {
        close(w[j].fd);
        if (j != i) close(outs[j]);
      }
      worker(i, outs[i]);
    }
    w[i].pid = pid;
    w[i].sub = i % 2;
    w[i].want = splitmix64((uint64_t)i + 7);
    e = cg_move(SUB[w[i].sub], pid);
    check(e == 0, "move worker %d into %s: %s (%d)", i, SUB[w[i].sub], errname(e), e);
  }
  for (int i = 0; i < workers; i++) {
    close(outs[i]);
    if (fcntl(w[i].fd, F_SETFL, O_NONBLOCK) != 0) die("O_NONBLOCK: %s", strerror(errno));
  }
  wasix_pid_t in_a[MAX_WORKERS];
  int na = cg_procs("chaos/a", in_a, MAX_WORKERS);
  check(na == (workers + 1) / 2 && in_a[0] == w[0].pid, "chaos/a holds %d tasks, expected %d", na, (workers + 1) / 2);
  check(cg_procs("chaos", in_a, MAX_WORKERS) == 0, "chaos itself holds tasks");
  check(cg_event("chaos", "populated") == 1, "chaos is not populated");

  for (;;) {
    int open_pipes = 0;
    for (int i = 0; i < workers; i++) open_pipes += !w[i].eof;
    if (!open_pipes) break;
    uint64_t r = seed == 0 ? 0 : rnd() % 100;
    if (r < 70) {
      size_t got = 0;
      for (int i = 0; i < workers; i++) got += drain(i, seed == 0 ? (size_t)-1 : (size_t)(rnd() % 2048));
      if (got == 0) sched_yield();
    } else if (r < 90) {
      frozen_window((int)(rnd() % 3));
    } else {
      int i = (int)(rnd() % (uint64_t)workers);
      e = cg_move(SUB[!w[i].sub], w[i].pid);
      check(e == 0 || e == ESRCH, "move worker %d: %s (%d)", i, errname(e), e);
      if (e == 0) w[i].sub = !w[i].sub, moves++;
    }
  }

  uint64_t all = 0;
  for (int i = 0; i < workers; i++) {
    int code = join_child(w[i].pid);
    check(code == 0, "worker %d exited with %d", i, code);
    check(w[i].n == records && w[i].have == 0, "worker %d: %d records and %zu stray bytes, expected %d records", i, w[i].n, w[i].have, records);
    printf("worker %d: %d records, hash %016llx\n", i, w[i].n, (unsigned long long)w[i].want);
    all ^= w[i].want;
  }
  printf("freeze_chaos: all workers %016llx\n", (unsigned long long)all);
  check(cg_event("chaos", "populated") == 0, "chaos is still populated after the workers exited");
  check(cg_rmdir("chaos/a") == 0 && cg_rmdir("chaos/b") == 0 && cg_rmdir("chaos") == 0, "rmdir the groups");
  fprintf(stderr, "freeze_chaos: seed %llu: %ld freezes (%ld of a sub-group), %ld moves, %ld frozen windows checked\n",
          (unsigned long long)seed, freezes, sub_freezes, moves, windows);
  return finish();
}
