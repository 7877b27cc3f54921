// ckpt_external: a checkpoint of another task's subtree, streamed through a
// pipe. pid 1 (the parent) forks C, which forks workers (C's subtree); the
// parent moves C into a freezer group before C forks, so the workers start
// there too, freezes the group while they work, and calls
// crvm_checkpoint(C, pipe, SUBTREE) while a reader task R copies the pipe into
// IMAGE. Then it thaws the group and everyone finishes.
//
//   ckpt_external IMAGE [WORKERS=3] [STEPS=40]
//
// The workers' last quarter waits for EOF on a gate pipe (the parent closes it
// after the thaw; a restored image has no writer for it), and C prints
// nothing until it has every worker's result, and then only lines starting
// with "child: ". So `crvm
// restore IMAGE` (C's subtree alone, C as its init task) prints exactly the
// "child: " lines of a plain run, and exits with C's exit code, 3.
#include "../freezer_lib/freezer.h"

#define MAX_WORKERS 8
#define ROUNDS 3000
#define C_OK 3
static const char *GROUP = "ext";

static int workers = 3, steps = 40;
static int start[2];   /* parent → C: "you are in the group, go on" */
static int gate[2];    /* parent → C's workers: EOF once the parent is done with C's group */
static int info[2];    /* C → parent: a byte once every worker is halfway */

/* A worker of C: its last quarter waits for the gate's EOF, so it is still alive when frozen. */
static void worker(int i, int out) {
  uint64_t h = splitmix64((uint64_t)i + 100);
  for (int s = 0; s < steps; s++) {
    if (s == steps * 3 / 4) {
      char c;
      while (read(gate[0], &c, 1) > 0) {}
    }
    h = work_step(h, i, s, ROUNDS);
    crvm_yield(s);
    if (s == steps / 2 - 1 && write_all(out, &h, sizeof h)) die("worker %d: write", i);
  }
  if (write_all(out, &h, sizeof h)) die("worker %d: write", i);
  exit(20 + i);
}

/* C: forks the workers, collects and checks their results, prints them only at the end. */
static void child_main(void) {
  close(start[1]);
  close(gate[1]);
  close(info[0]);
  char c;
  if (read(start[0], &c, 1) != 1) die("C: start");
  close(start[0]);
  int in[MAX_WORKERS];
  wasix_pid_t pids[MAX_WORKERS];
  for (int i = 0; i < workers; i++) {
    int p[2];
    make_pipe(p);
    wasix_pid_t pid = fork_or_die();
    if (pid == 0) {
      close(p[0]);
      close(info[1]);
      for (int j = 0; j < i; j++) close(in[j]);
      worker(i, p[1]);
    }
    close(p[1]);
    in[i] = p[0];
    pids[i] = pid;
  }
  close(gate[0]);
  uint64_t half[MAX_WORKERS], full[MAX_WORKERS];
  for (int i = 0; i < workers; i++) {
    if (read_full(in[i], &half[i], 8) != 8) die("C: worker %d: no halfway result", i);
  }
  if (write_all(info[1], "h", 1)) die("C: info");
  close(info[1]);
  for (int i = 0; i < workers; i++) {
    if (read_full(in[i], &full[i], 8) != 8) die("C: worker %d: no result", i);
  }
  for (int i = 0; i < workers; i++) {
    uint64_t h = splitmix64((uint64_t)i + 100), h_half = 0;
    for (int s = 0; s < steps; s++) {
      h = work_step(h, i, s, ROUNDS);
      if (s == steps / 2 - 1) h_half = h;
    }
    check(half[i] == h_half, "C: worker %d: halfway hash %016llx, expected %016llx", i, (unsigned long long)half[i], (unsigned long long)h_half);
    check(full[i] == h, "C: worker %d: hash %016llx, expected %016llx", i, (unsigned long long)full[i], (unsigned long long)h);
    int code = join_child(pids[i]);
    check(code == 20 + i, "C: worker %d exited with %d, expected %d", i, code, 20 + i);
    printf("child: worker %d: halfway %016llx, final %016llx, exit %d\n", i, (unsigned long long)half[i], (unsigned long long)full[i], code);
  }
  wasix_pid_t me = self_pid(), parent = -1;
  check(wasix_proc_parent(me, &parent) == 0, "C: proc_parent");
  printf("child: %d workers, %d steps: %s\n", workers, steps, failures ? "FAILED" : "ok");
  fflush(stdout);
  exit(failures ? 1 : C_OK);
}

/* R: copies the pipe to the image file until EOF; exits 0 if it got any bytes. */
static void reader_main(int in, const char *image) {
  int fd = open(image, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("R: open %s: %s", image, strerror(errno));
  static char buf[16384];
  long long total = 0;
  for (;;) {
    ssize_t n = read(in, buf, sizeof buf);
    if (n < 0) die("R: read: %s", strerror(errno));
    if (n == 0) break;
    if (write_all(fd, buf, (size_t)n)) die("R: write: %s", strerror(errno));
    total += n;
  }
  close(fd);
  exit(total > 0 ? 0 : 2);
}

int main(int argc, char **argv) {
  guest_start("ckpt_external");
  if (argc < 2) die("usage: ckpt_external IMAGE [WORKERS] [STEPS]");
  const char *image = argv[1];
  if (argc > 2) workers = atoi(argv[2]);
  if (argc > 3) steps = atoi(argv[3]);
  if (workers < 1 || workers > MAX_WORKERS || steps < 4 || steps > 4000) die("bad arguments");
  printf("parent: %d workers, %d steps\n", workers, steps);

  make_pipe(start);
  make_pipe(gate);
  make_pipe(info);
  wasix_pid_t c = fork_or_die();
  if (c == 0) child_main();
  close(start[0]);
  close(gate[0]);
  close(info[1]);

  int e = cg_mkdir(GROUP);
  if (e) die("mkdir %s: %s (%d)", GROUP, errname(e), e);
  e = cg_move(GROUP, c);
  if (e) die("move C into %s: %s (%d)", GROUP, errname(e), e);
  if (write_all(start[1], "s", 1)) die("start C");
  close(start[1]);

  // Once every worker is halfway, freeze C's subtree wherever it is.
  char h;
  if (read(info[0], &h, 1) != 1) die("no word from C");
  close(info[0]);
  if (freeze_and_wait(GROUP)) die("cannot freeze C's group");
  wasix_pid_t members[MAX_WORKERS + 2];
  int n = cg_procs(GROUP, members, MAX_WORKERS + 2);
  check(n == workers + 1 && members[0] == c, "the group holds %d tasks, expected C and its %d workers", n, workers);
  printf("parent: C and its %d workers frozen in %s\n", n - 1, GROUP);

  int img[2];
  make_pipe(img);
  wasix_pid_t r = fork_or_die();
  if (r == 0) {
    close(img[1]);
    close(gate[1]);
    reader_main(img[0], image);
  }
  close(img[0]);
  unsigned long long id = 0;
  e = crvm_checkpoint(c, img[1], CRVM_CHECKPOINT_SUBTREE, &id);
  check(e == 0, "crvm_checkpoint(C): %s (%d)", errname(e), e);
  check(id > 0, "checkpoint id %llu is not positive", id);
  close(img[1]);
  int rc = join_child(r);
  check(rc == 0, "the reader exited with %d", rc);
  check(path_size(image) > 0, "the image file is empty");
  printf("parent: checkpoint id %llu of C's subtree, through a pipe\n", id);
  check(cg_event(GROUP, "frozen") == 1, "C's group is not frozen after the checkpoint");

  thaw_and_wait(GROUP);
  close(gate[1]);
  int code = join_child(c);
  check(code == C_OK, "C exited with %d, expected %d", code, C_OK);
  check(cg_event(GROUP, "populated") == 0, "the group is still populated");
  check(cg_rmdir(GROUP) == 0, "rmdir %s", GROUP);
  printf("parent: C exited with %d\n", code);
  return finish();
}
