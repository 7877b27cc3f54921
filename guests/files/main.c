/*
 * files — file descriptors that live across yield points.
 *
 * Needs two preopened directories: /data (a host directory, which must start
 * empty) and /tmp (crvm gives an in-memory one; any directory works). The
 * guest keeps several files open over many explicit yield points (usleep()
 * then crvm_yield()) and, after every step, checks that whatever it reads
 * equals what it wrote, as tracked in an in-memory model of each file. A VM
 * that checkpoints and restores it at any of those points must give back
 * the same descriptors, offsets, flags (O_APPEND) and contents.
 *
 * Steps: write in chunks, append, seek and overwrite, pread/pwrite, read
 * through a second descriptor, rename an open file, create and list a
 * subdirectory and remove it, list directories (sorted), truncate (shrink
 * and extend), close and reopen.
 *
 * Output: a line per step on stdout; the same lines in /data/log.txt; a
 * summary (size and FNV-1a of every file left) in /data/result.txt. Final
 * host directory: a.txt, c.txt, log.txt, result.txt. Ends with "files: ok"
 * (exit 0), or prints each failed check on stderr and exits 1.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crvm.h"

static int failures = 0;
static int step_no = 0;
static int log_fd = -1;

typedef struct model model;
static void log_model_append(const char *line, size_t n);

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "files: step %d: check failed: ", step_no);    \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Fatal: a call the rest of the run depends on failed. */
static void die(const char *what) {
    fprintf(stderr, "files: step %d: %s: %s\n", step_no, what, strerror(errno));
    exit(1);
}

/* ---- an in-memory model of a file's contents ------------------------------ */

struct model {
    const char *name;
    unsigned char *data;
    size_t len, cap;
};

static void model_reserve(model *m, size_t len) {
    if (len <= m->cap) return;
    size_t cap = m->cap ? m->cap : 256;
    while (cap < len) cap *= 2;
    m->data = realloc(m->data, cap);
    if (!m->data) die("realloc");
    m->cap = cap;
}

/* Mirrors pwrite(): writing past the end fills the gap with zeros. */
static void model_write_at(model *m, size_t off, const void *buf, size_t n) {
    model_reserve(m, off + n);
    if (off > m->len) memset(m->data + m->len, 0, off - m->len);
    memcpy(m->data + off, buf, n);
    if (off + n > m->len) m->len = off + n;
}

static void model_truncate(model *m, size_t len) {
    model_reserve(m, len);
    if (len > m->len) memset(m->data + m->len, 0, len - m->len);
    m->len = len;
}

/* /data/log.txt: a line per step, appended as the steps go. */
static model log_model = {.name = "/data/log.txt"};
static void log_model_append(const char *line, size_t n) {
    model_write_at(&log_model, log_model.len, line, n);
}

/* ---- helpers -------------------------------------------------------------- */

static uint32_t fnv1a(const unsigned char *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; }
    return h;
}

static void write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) die("write");
        p += w;
        n -= (size_t)w;
    }
}

/* Starts a step: prints its line and appends it to /data/log.txt. */
static void step(const char *fmt, ...) {
    char line[257];
    va_list ap;
    step_no++;
    int k = snprintf(line, sizeof line, "step %02d: ", step_no);
    va_start(ap, fmt);
    vsnprintf(line + k, sizeof line - 1 - k, fmt, ap);
    va_end(ap);
    printf("%s\n", line);
    fflush(stdout);
    if (log_fd >= 0) {
        size_t n = strlen(line);
        line[n++] = '\n';
        write_all(log_fd, line, n);
        log_model_append(line, n);
    }
}

/* A yield point: a short sleep (a blocking syscall) and an explicit yield. */
static void pause_point(void) {
    usleep(1000);
    crvm_yield(step_no);
}

/* Reads the whole file through fd from offset 0 (pread: the fd's own offset
 * must not move) and compares it with the model. */
static void verify_fd(int fd, const model *m) {
    unsigned char *buf = malloc(m->len + 16);
    if (!buf) die("malloc");
    size_t got = 0;
    for (;;) {
        ssize_t r = pread(fd, buf + got, m->len + 16 - got, (off_t)got);
        if (r < 0) die("pread");
        if (r == 0) break;
        got += (size_t)r;
        if (got == m->len + 16) break;
    }
    CHECK(got == m->len, "%s: read %zu bytes, wrote %zu", m->name, got, m->len);
    if (got == m->len && memcmp(buf, m->data, m->len) != 0) {
        size_t i = 0;
        while (buf[i] == m->data[i]) i++;
        CHECK(0, "%s: byte %zu is %d, wrote %d", m->name, i, buf[i], m->data[i]);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    CHECK((size_t)st.st_size == m->len, "%s: fstat size %lld, expected %zu", m->name,
          (long long)st.st_size, m->len);
    free(buf);
}

/* Opens the file by path a second time and compares it with the model. */
static void verify_path(const char *path, const model *m) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die(path);
    verify_fd(fd, m);
    close(fd);
}

static off_t tell(int fd) { return lseek(fd, 0, SEEK_CUR); }

/* Deterministic line content: "<tag> line NNN: <pattern>\n". */
static size_t make_line(char *out, size_t cap, const char *tag, int n) {
    return (size_t)snprintf(out, cap, "%s line %03d: %.*s\n", tag, n, 10 + n % 30,
                            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJ");
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists a directory, sorted, without "." and "..", as "a b c". */
static void list_dir(const char *path, char *out, size_t cap) {
    DIR *d = opendir(path);
    if (!d) die(path);
    char *names[64];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (n == 64) { CHECK(0, "%s: more than 64 entries", path); break; }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], cmp_str);
    size_t k = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        k += (size_t)snprintf(out + k, k < cap ? cap - k : 0, "%s%s", i ? " " : "", names[i]);
        free(names[i]);
    }
    if (n == 0) snprintf(out, cap, "(empty)");
}

int main(void) {
    char buf[512], listing[512];
    model a = {.name = "/data/a.txt"}, b = {.name = "/tmp/b.txt"}, c = {.name = "/data/c.txt"};

    /* The host directory is compared after the run, and listings are
     * checked, so both directories must start empty. */
    list_dir("/data", listing, sizeof listing);
    if (strcmp(listing, "(empty)") != 0) {
        fprintf(stderr, "files: /data must start empty, found: %s\n", listing);
        return 1;
    }
    list_dir("/tmp", listing, sizeof listing);
    if (strcmp(listing, "(empty)") != 0) {
        fprintf(stderr, "files: /tmp must start empty, found: %s\n", listing);
        return 1;
    }

    log_fd = open("/data/log.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log_fd < 0) die("/data/log.txt");
    int fa = open(a.name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fa < 0) die(a.name);
    int fb = open(b.name, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fb < 0) die(b.name);
    step("opened /data/log.txt, /data/a.txt, /tmp/b.txt");
    pause_point();

    /* Chunked writes to both directories, a yield between chunks: the open
     * descriptors and their offsets must survive each yield. */
    for (int i = 0; i < 8; i++) {
        size_t n = make_line(buf, sizeof buf, "a", i);
        write_all(fa, buf, n);
        model_write_at(&a, a.len, buf, n);
        n = make_line(buf, sizeof buf, "b", i);
        write_all(fb, buf, n);
        model_write_at(&b, b.len, buf, n);
        step("wrote chunk %d: a.txt %zu bytes, b.txt %zu bytes", i, a.len, b.len);
        CHECK(tell(fa) == (off_t)a.len, "a.txt offset %lld", (long long)tell(fa));
        CHECK(tell(fb) == (off_t)b.len, "b.txt offset %lld", (long long)tell(fb));
        pause_point();
    }
    verify_fd(fa, &a);
    verify_fd(fb, &b);
    step("verified a.txt and b.txt");
    pause_point();

    /* A third file opened with O_APPEND: every write goes to the end, even
     * after a seek to the start. */
    int fc = open(c.name, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0644);
    if (fc < 0) die(c.name);
    for (int i = 0; i < 6; i++) {
        if (i == 3 && lseek(fc, 0, SEEK_SET) != 0) die("lseek c.txt");
        size_t n = make_line(buf, sizeof buf, "c", i);
        write_all(fc, buf, n);
        model_write_at(&c, c.len, buf, n);
        step("appended line %d to c.txt: %zu bytes", i, c.len);
        pause_point();
    }
    /* The seek before line 3 must not have mattered: the model appended. */
    verify_fd(fc, &c);
    /* Not checked: fcntl(F_GETFL) & O_APPEND. node:wasi returns the host's raw
     * fcntl() flags in fd_fdstat_get (nodejs/uvwasi#283), so the reference run
     * would fail; the behaviour above is the check that matters. */

    /* Seek and overwrite in the middle, then read from the new offset. */
    off_t mid = (off_t)(a.len / 2);
    if (lseek(fa, mid, SEEK_SET) != mid) die("lseek a.txt");
    pause_point();
    write_all(fa, "<<OVERWRITTEN>>", 15);
    model_write_at(&a, (size_t)mid, "<<OVERWRITTEN>>", 15);
    step("overwrote 15 bytes of a.txt at %lld", (long long)mid);
    pause_point();
    CHECK(tell(fa) == mid + 15, "a.txt offset %lld after overwrite", (long long)tell(fa));
    ssize_t r = read(fa, buf, 20);
    CHECK(r == 20 && memcmp(buf, a.data + mid + 15, 20) == 0, "a.txt read after overwrite");
    verify_fd(fa, &a);
    verify_path(a.name, &a);
    step("verified a.txt through a second descriptor");
    pause_point();

    /* pwrite past the end leaves a hole that reads as zeros; the offset of
     * the descriptor stays where it was. */
    off_t before = tell(fa);
    size_t hole_at = a.len + 100;
    if (pwrite(fa, "tail", 4, (off_t)hole_at) != 4) die("pwrite a.txt");
    model_write_at(&a, hole_at, "tail", 4);
    CHECK(tell(fa) == before, "pwrite moved the offset");
    step("pwrite 4 bytes at %zu of a.txt (100-byte hole)", hole_at);
    pause_point();
    verify_fd(fa, &a);

    /* SEEK_END and SEEK_CUR. */
    CHECK(lseek(fa, -4, SEEK_END) == (off_t)(a.len - 4), "SEEK_END");
    r = read(fa, buf, 16);
    CHECK(r == 4 && memcmp(buf, "tail", 4) == 0, "read at SEEK_END-4");
    CHECK(lseek(fa, -50, SEEK_CUR) == (off_t)(a.len - 50), "SEEK_CUR");
    step("seeks checked, a.txt offset %lld", (long long)tell(fa));
    pause_point();

    /* Rename an open file: the descriptor follows the file, the old name is gone. */
    if (rename("/tmp/b.txt", "/tmp/b2.txt") != 0) die("rename /tmp/b.txt");
    b.name = "/tmp/b2.txt";
    step("renamed /tmp/b.txt to /tmp/b2.txt while open");
    pause_point();
    size_t n = make_line(buf, sizeof buf, "b-after-rename", 8);
    write_all(fb, buf, n);
    model_write_at(&b, b.len, buf, n);
    verify_fd(fb, &b);
    verify_path("/tmp/b2.txt", &b);
    struct stat st;
    CHECK(stat("/tmp/b.txt", &st) != 0 && errno == ENOENT, "/tmp/b.txt still exists");

    /* A subdirectory with files, listed sorted, then removed. */
    if (mkdir("/data/sub", 0755) != 0) die("mkdir /data/sub");
    if (mkdir("/tmp/tsub", 0755) != 0) die("mkdir /tmp/tsub");
    step("created /data/sub and /tmp/tsub");
    pause_point();
    const char *sub_files[] = {"zeta", "alpha", "mid"};
    for (int i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "/data/sub/%s", sub_files[i]);
        int fd = open(buf, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) die(buf);
        write_all(fd, sub_files[i], strlen(sub_files[i]));
        close(fd);
        snprintf(buf, sizeof buf, "/tmp/tsub/%s", sub_files[i]);
        fd = open(buf, O_WRONLY | O_CREAT | O_EXCL, 0644);
        if (fd < 0) die(buf);
        write_all(fd, sub_files[i], strlen(sub_files[i]));
        close(fd);
    }
    list_dir("/data/sub", listing, sizeof listing);
    step("ls /data/sub: %s", listing);
    CHECK(strcmp(listing, "alpha mid zeta") == 0, "ls /data/sub: %s", listing);
    list_dir("/tmp/tsub", listing, sizeof listing);
    step("ls /tmp/tsub: %s", listing);
    CHECK(strcmp(listing, "alpha mid zeta") == 0, "ls /tmp/tsub: %s", listing);
    pause_point();
    CHECK(rmdir("/data/sub") != 0 && errno == ENOTEMPTY, "rmdir of a non-empty directory");
    for (int i = 0; i < 3; i++) {
        snprintf(buf, sizeof buf, "/data/sub/%s", sub_files[i]);
        if (unlink(buf) != 0) die(buf);
        snprintf(buf, sizeof buf, "/tmp/tsub/%s", sub_files[i]);
        if (unlink(buf) != 0) die(buf);
    }
    if (rmdir("/data/sub") != 0) die("rmdir /data/sub");
    if (rmdir("/tmp/tsub") != 0) die("rmdir /tmp/tsub");
    step("removed /data/sub and /tmp/tsub");
    pause_point();

    list_dir("/data", listing, sizeof listing);
    step("ls /data: %s", listing);
    CHECK(strcmp(listing, "a.txt c.txt log.txt") == 0, "ls /data: %s", listing);
    list_dir("/tmp", listing, sizeof listing);
    step("ls /tmp: %s", listing);
    CHECK(strcmp(listing, "b2.txt") == 0, "ls /tmp: %s", listing);
    pause_point();

    /* Truncate: shrink below the current offset, then extend with zeros. */
    if (ftruncate(fa, 200) != 0) die("ftruncate a.txt");
    model_truncate(&a, 200);
    step("truncated a.txt to 200 bytes");
    pause_point();
    verify_fd(fa, &a);
    if (ftruncate(fa, 300) != 0) die("ftruncate a.txt");
    model_truncate(&a, 300);
    verify_fd(fa, &a);
    /* Leave a.txt as printable text: overwrite the zero tail. */
    memset(buf, '.', 99);
    buf[99] = '\n';
    if (pwrite(fa, buf, 100, 200) != 100) die("pwrite a.txt");
    model_write_at(&a, 200, buf, 100);
    step("extended a.txt to 300 bytes");
    pause_point();

    /* Close and reopen: the contents are on the file system, not in the fd. */
    if (close(fb) != 0) die("close b2.txt");
    fb = open(b.name, O_RDONLY);
    if (fb < 0) die(b.name);
    verify_fd(fb, &b);
    close(fb);
    if (unlink("/tmp/b2.txt") != 0) die("unlink /tmp/b2.txt");
    step("reopened, checked and removed /tmp/b2.txt");
    pause_point();

    verify_fd(fa, &a);
    verify_fd(fc, &c);
    close(fa);
    close(fc);
    verify_path(a.name, &a);
    verify_path(c.name, &c);
    step("closed a.txt and c.txt");
    pause_point();

    /* The log holds every step line, in order, and nothing else. */
    verify_path(log_model.name, &log_model);
    step("verified /data/log.txt: %zu bytes", log_model.len);
    step("writing /data/result.txt");

    /* Summary: what a test compares in the host directory afterwards. */
    char summary[512];
    int k = 0;
    k += snprintf(summary + k, sizeof summary - k, "steps %d\n", step_no);
    k += snprintf(summary + k, sizeof summary - k, "a.txt %zu %08x\n", a.len, fnv1a(a.data, a.len));
    k += snprintf(summary + k, sizeof summary - k, "c.txt %zu %08x\n", c.len, fnv1a(c.data, c.len));
    k += snprintf(summary + k, sizeof summary - k, "b2.txt (removed) %zu %08x\n", b.len,
                  fnv1a(b.data, b.len));
    k += snprintf(summary + k, sizeof summary - k, "log.txt %zu %08x\n", log_model.len,
                  fnv1a(log_model.data, log_model.len));
    k += snprintf(summary + k, sizeof summary - k, "failures %d\n", failures);
    int fr = open("/data/result.txt", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fr < 0) die("/data/result.txt");
    write_all(fr, summary, (size_t)k);
    close(fr);
    close(log_fd);
    log_fd = -1;
    model result = {.name = "/data/result.txt"};
    model_write_at(&result, 0, summary, (size_t)k);
    verify_path(result.name, &result);
    verify_path(log_model.name, &log_model);
    fputs(summary, stdout);

    if (failures) {
        fprintf(stderr, "files: %d check(s) failed\n", failures);
        return 1;
    }
    printf("files: ok\n");
    return 0;
}
