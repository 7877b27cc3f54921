/*
 * ticker — a long-running guest that spends its time blocked in sleeps.
 *
 * Prints "tick N" (N from 1) every 5 ms for COUNT ticks (argv[1], default
 * 400, about 2 s wall clock), then "ticker: ok". A VM can freeze it while it
 * sleeps or between ticks; after a restore the ticks must continue from the
 * next number, with none lost or repeated (a test compares stdout with the
 * plain run's). Only the sequence is printed, never a time, so the output
 * does not depend on how long the sleeps really took.
 *
 * Self-checks: the counter kept in a global and the one kept in a local
 * agree at every tick, and each sleep returned success.
 *
 * Exit: 0 after "ticker: ok"; 1 if a check failed; 2 on a bad argument.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Lives in linear memory (data segment); the local `n` lives in a wasm local
 * or on the shadow stack. Both must come back from a restore unchanged. */
static volatile long ticks_done = 0;

int main(int argc, char **argv) {
    long count = 400;
    if (argc > 1) {
        char *end;
        count = strtol(argv[1], &end, 10);
        if (*argv[1] == '\0' || *end != '\0' || count < 0) {
            fprintf(stderr, "ticker: bad COUNT \"%s\" (want a non-negative integer)\n", argv[1]);
            return 2;
        }
    }

    int failures = 0;
    const struct timespec period = {0, 5 * 1000 * 1000};
    for (long n = 1; n <= count; n++) {
        if (nanosleep(&period, NULL) != 0) {
            fprintf(stderr, "ticker: nanosleep failed before tick %ld\n", n);
            failures++;
        }
        ticks_done++;
        if (ticks_done != n) {
            fprintf(stderr, "ticker: tick %ld but %ld ticks counted\n", n, (long)ticks_done);
            failures++;
        }
        /* One write per tick, so a freeze never sits between half-lines. */
        printf("tick %ld\n", n);
        fflush(stdout);
    }

    if (failures) {
        fprintf(stderr, "ticker: %d check(s) failed\n", failures);
        return 1;
    }
    printf("ticker: ok\n");
    return 0;
}
