/*
 * stdin — a filter: copies standard input to standard output unchanged.
 *
 * Reads fd 0 to end of file in 4 KiB chunks with read(2), writes each chunk
 * to fd 1 with write(2) (no stdio buffering, so what the host has received
 * is exactly what was read so far), then prints to stderr
 *
 *     stdin: <bytes> bytes, fnv1a=<8 hex digits>
 *
 * (32-bit FNV-1a over all the bytes) and exits 0. Frozen while blocked in a
 * read, it must resume without losing or repeating input: a test compares
 * stdout with stdin, and the count and hash with its own.
 *
 * Exit: 0; 1 if a read or write failed.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(void) {
    static unsigned char buf[4096];
    uint64_t total = 0;
    uint32_t hash = 2166136261u;

    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            fprintf(stderr, "stdin: read failed after %llu bytes: %s\n",
                    (unsigned long long)total, strerror(errno));
            return 1;
        }
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) { hash ^= buf[i]; hash *= 16777619u; }
        total += (uint64_t)n;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(1, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                fprintf(stderr, "stdin: write failed: %s\n", strerror(errno));
                return 1;
            }
            off += w;
        }
    }
    fprintf(stderr, "stdin: %llu bytes, fnv1a=%08x\n", (unsigned long long)total, hash);
    return 0;
}
