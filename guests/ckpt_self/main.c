// ckpt_self: a single task checkpoints itself with checkpoint(2) and checks
// that its state survives, in the first run and when restored from the image.
//
//   ckpt_self IMAGE [vm|subtree|twice]
//
// vm (default): crvm_checkpoint(1, fd, 0, &id), the whole VM; subtree: the
// same with CRVM_CHECKPOINT_SUBTREE; twice: two whole-VM checkpoints, to IMAGE
// and IMAGE.2, whose ids must increase. The first run prints "checkpoint id N"
// (N > 0) at each checkpoint; a run restored from an image prints
// "restored (id 0)" instead at the checkpoint it was taken at, and then the
// same lines as the first run did after it.
#include "../freezer_lib/freezer.h"

#define BUF_SIZE (256 * 1024)
static uint8_t buf[BUF_SIZE];
static uint64_t counter;

static uint64_t checksum(void) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < BUF_SIZE; i++) h = (h ^ buf[i]) * 0x100000001b3ull;
  return h;
}

/* `rounds` more steps of the state: the buffer is rewritten from the counter. */
static void advance(int rounds) {
  for (int r = 0; r < rounds; r++) {
    counter = splitmix64(counter);
    size_t at = counter % (BUF_SIZE - 64);
    for (int i = 0; i < 64; i++) buf[at + i] ^= (uint8_t)(counter >> (i % 8 * 8));
    if (r % 64 == 0) crvm_yield(r);
  }
}

/* The same state computed again from scratch, to compare with. */
static void expected(int rounds, uint64_t *c_out, uint64_t *sum_out) {
  static uint8_t saved[BUF_SIZE];
  uint64_t c0 = counter;
  memcpy(saved, buf, BUF_SIZE);
  memset(buf, 0, BUF_SIZE);
  counter = 1;
  advance(rounds);
  *c_out = counter;
  *sum_out = checksum();
  memcpy(buf, saved, BUF_SIZE);
  counter = c0;
}

/* One checkpoint to `path`; returns the id (0 in a task restored from this image). */
static unsigned long long take(const char *path, int flags) {
  fflush(stdout);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) die("open %s: %s", path, strerror(errno));
  unsigned long long id = 12345;
  int e = crvm_checkpoint((int)self_pid(), fd, flags, &id);
  if (e != 0) die("crvm_checkpoint to %s: %s (%d)", path, errname(e), e);
  if (id != 0) {
    check(fd_size(fd) > 0, "the image %s is empty after the call", path);
    printf("checkpoint id %llu\n", id);
  } else {
    printf("restored (id 0)\n");
  }
  check(close(fd) == 0, "close the image fd");
  return id;
}

int main(int argc, char **argv) {
  guest_start("ckpt_self");
  if (argc < 2) die("usage: ckpt_self IMAGE [vm|subtree|twice]");
  const char *image = argv[1];
  const char *mode = argc > 2 ? argv[2] : "vm";
  int flags = 0, twice = 0;
  if (!strcmp(mode, "subtree")) flags = CRVM_CHECKPOINT_SUBTREE;
  else if (!strcmp(mode, "twice")) twice = 1;
  else if (strcmp(mode, "vm")) die("unknown mode \"%s\"", mode);
  check(self_pid() == 1, "pid is %d, not 1", (int)self_pid());

  counter = 1;
  advance(3000);
  uint64_t c1 = counter, s1 = checksum();
  printf("ckpt_self: mode %s, state counter=%016llx checksum=%016llx\n", mode, (unsigned long long)c1, (unsigned long long)s1);

  unsigned long long id1 = take(image, flags);
  // The state is as it was at the call, whether this is the first run or a restore.
  check(counter == c1, "counter changed across the checkpoint");
  check(checksum() == s1, "buffer changed across the checkpoint");
  uint64_t ce, se;
  expected(3000, &ce, &se);
  check(c1 == ce && s1 == se, "state before the checkpoint differs from a recomputation");

  advance(2000);
  printf("ckpt_self: after, counter=%016llx checksum=%016llx\n", (unsigned long long)counter, (unsigned long long)checksum());
  expected(5000, &ce, &se);
  check(counter == ce && checksum() == se, "state after the checkpoint differs from a recomputation");

  if (twice) {
    char image2[512];
    snprintf(image2, sizeof image2, "%s.2", image);
    uint64_t c2 = counter, s2 = checksum();
    unsigned long long id2 = take(image2, flags);
    if (id1 != 0 && id2 != 0) check(id2 > id1, "second checkpoint id %llu is not above the first, %llu", id2, id1);
    check(counter == c2 && checksum() == s2, "state changed across the second checkpoint");
    advance(1000);
    expected(6000, &ce, &se);
    check(counter == ce && checksum() == se, "state after the second checkpoint differs from a recomputation");
    printf("ckpt_self: end, counter=%016llx checksum=%016llx\n", (unsigned long long)counter, (unsigned long long)checksum());
  }
  return finish();
}
