/*
 * dirty — a guest with a large memory that keeps writing a small part of it,
 * for live migration (pre-copy rounds send what changed since the last round).
 *
 *   dirty [MIB=16] [STEPS=200] [HOT_KIB=256]
 *
 * Allocates MIB MiB and fills every word with a value computed from its
 * index (every 64 KiB page differs from every other and none is zero), then
 * runs STEPS steps: step s rewrites the first HOT_KIB KiB from s, sleeps
 * 2 ms and prints "step s <fnv of the hot part>". Every 32 steps, and at the
 * end, it checks one word of every 4 KiB of the cold part, and at the end
 * every word of the whole buffer. Prints "dirty: ok" if everything held.
 * The output depends only on the arguments, so a migrated run prints the
 * same as a plain one.
 *
 * Exit: 0 after "dirty: ok"; 1 if a check failed; 2 on a bad argument.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint32_t mix(uint32_t i, uint32_t salt) {
    uint32_t x = i * 0x9e3779b1u ^ salt * 0x85ebca77u;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return x | 1; /* never zero: no page is elided as a zero page */
}

static long arg(int argc, char **argv, int i, long dflt, long max) {
    if (argc <= i) return dflt;
    char *end;
    long v = strtol(argv[i], &end, 10);
    if (*argv[i] == '\0' || *end != '\0' || v < 0 || v > max) {
        fprintf(stderr, "dirty: bad argument %d \"%s\" (want an integer from 0 to %ld)\n", i, argv[i], max);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    long mib = arg(argc, argv, 1, 16, 1024);
    long steps = arg(argc, argv, 2, 200, 1000000);
    long hot_kib = arg(argc, argv, 3, 256, 1024 * 1024);
    size_t words = (size_t)mib * 1024 * 1024 / 4;
    size_t hot = (size_t)hot_kib * 1024 / 4;
    if (hot > words) hot = words;

    uint32_t *buf = malloc(words * 4);
    if (!buf) {
        fprintf(stderr, "dirty: cannot allocate %ld MiB\n", mib);
        return 1;
    }
    for (size_t i = 0; i < words; i++) buf[i] = mix((uint32_t)i, 0);
    printf("dirty: %ld MiB, %ld steps, %ld KiB hot\n", mib, steps, hot_kib);
    fflush(stdout);

    int failures = 0;
    const struct timespec pause = {0, 2 * 1000 * 1000};
    for (long s = 1; s <= steps; s++) {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < hot; i++) {
            buf[i] = mix((uint32_t)i, (uint32_t)s);
            h = (h ^ buf[i]) * 16777619u;
        }
        if (nanosleep(&pause, NULL) != 0) {
            fprintf(stderr, "dirty: nanosleep failed at step %ld\n", s);
            failures++;
        }
        /* The hot part is still what this step wrote. */
        for (size_t i = 0; i < hot; i += 1024) {
            if (buf[i] != mix((uint32_t)i, (uint32_t)s)) {
                fprintf(stderr, "dirty: step %ld: hot word %zu changed\n", s, i);
                failures++;
                break;
            }
        }
        if (s % 32 == 0) {
            for (size_t i = hot; i < words; i += 1024) {
                if (buf[i] != mix((uint32_t)i, 0)) {
                    fprintf(stderr, "dirty: step %ld: cold word %zu changed\n", s, i);
                    failures++;
                    break;
                }
            }
        }
        printf("step %ld %08x\n", s, h);
        fflush(stdout);
    }

    for (size_t i = 0; i < words; i++) {
        uint32_t want = i < hot && steps > 0 ? mix((uint32_t)i, (uint32_t)steps) : mix((uint32_t)i, 0);
        if (buf[i] != want) {
            fprintf(stderr, "dirty: word %zu is %08x, want %08x\n", i, buf[i], want);
            failures++;
            break;
        }
    }
    free(buf);
    if (failures) {
        fprintf(stderr, "dirty: %d check(s) failed\n", failures);
        return 1;
    }
    printf("dirty: ok\n");
    return 0;
}
