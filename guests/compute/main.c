/*
 * compute — pure compute, no system calls between the first and last line
 * of each phase, so a VM can only stop it by instrumentation (fuel checks),
 * never at a syscall. Four phases, each checked against a value obtained
 * another way:
 *
 *   loop    an LCG step plus a running sum, N steps in a tight loop;
 *           checked by jumping ahead with a 2x2 matrix power (O(log N))
 *   recurse a recursion 12,000 deep whose frames keep locals (one of them in
 *           linear memory, on the shadow stack) that are used after the
 *           recursive call returns; checked against the same fold done
 *           iteratively.
 *   sieve   Eratosthenes up to 1,000,000 over a malloc'd array, repeated;
 *           checked against pi(10^6) = 78498, the sum of those primes
 *           (37550402023) and trial division of a sample.
 *   qsort   libc qsort() (a comparator called through a function pointer)
 *           on pseudo-random numbers; checked for order and, with two
 *           order-independent fingerprints, that it is a permutation.
 *
 * Usage: compute [SCALE]   SCALE is a decimal (default 1, e.g. 0.05, 2.5);
 * it multiplies the work of every phase. Output is identical for a given
 * SCALE on every host (no time, address or random value is printed).
 *
 * Timing (node:wasi, Node 20.20, this 2-core machine, uninstrumented, wall
 * clock including ~0.15 s of Node start-up): SCALE 1 takes 1.4-1.5 s
 * (loop 0.45 s, recurse 0.3 s, sieve 0.25 s, qsort 0.3 s); SCALE 0.05
 * 0.2 s; SCALE 3 4.4 s.
 *
 * Exit: 0 and "compute: ok" if every check held; 1 and a message on stderr
 * otherwise; 2 on a bad argument.
 *
 * Built with a 1 MiB shadow stack (guests/build.sh): 12,000 frames with a
 * local in linear memory need more than wasm-ld's 64 KiB default (with it,
 * the recursion traps out of bounds).
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "compute: check failed: " __VA_ARGS__);        \
            fputc('\n', stderr);                                           \
            failures++;                                                    \
        }                                                                  \
    } while (0)

/* Work of a phase at SCALE 1, multiplied by scale_milli / 1000 (at least 1). */
static uint64_t scaled(uint64_t base, uint64_t scale_milli) {
    uint64_t n = base * scale_milli / 1000;
    return n == 0 ? 1 : n;
}

/* Parses "2", "0.05", "1.5" into thousandths; -1 if malformed. Integer
 * arithmetic so that every host computes the same amount of work. */
static int64_t parse_scale_milli(const char *s) {
    int64_t whole = 0, frac = 0, digits = 0;
    const char *p = s;
    if (*p == '\0') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        whole = whole * 10 + (*p - '0');
        if (whole > 1000000) return -1;
    }
    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) {
            if (digits < 3) { frac = frac * 10 + (*p - '0'); digits++; }
        }
    }
    if (*p != '\0') return -1;
    while (digits < 3) { frac *= 10; digits++; }
    return whole * 1000 + frac;
}

/* ---- phase 1: LCG loop --------------------------------------------------- */

#define LCG_A UINT64_C(6364136223846793005)
#define LCG_C UINT64_C(1442695040888963407)

/* The loop a fuel check must interrupt: no calls, no memory traffic. */
__attribute__((noinline)) static void lcg_loop(uint64_t n, uint64_t *x_io,
                                               uint64_t *sum_io) {
    uint64_t x = *x_io, sum = *sum_io;
    for (uint64_t i = 0; i < n; i++) {
        sum += x ^ (sum >> 17);   /* non-linear: no closed form for the compiler */
        x = x * LCG_A + LCG_C;
    }
    *x_io = x;
    *sum_io = sum;
}

/* 2x2 matrices over Z/2^64 acting on (x, 1): the affine LCG step as a matrix. */
typedef struct { uint64_t m[2][2]; } mat2;

static mat2 mat2_mul(mat2 a, mat2 b) {
    mat2 r;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            r.m[i][j] = a.m[i][0] * b.m[0][j] + a.m[i][1] * b.m[1][j];
    return r;
}

/* x_n = A^n x_0 + C (A^(n-1) + ... + 1), by squaring the affine map. */
static uint64_t lcg_jump(uint64_t x0, uint64_t n) {
    mat2 r = {{{1, 0}, {0, 1}}};
    mat2 b = {{{LCG_A, LCG_C}, {0, 1}}};
    while (n) {
        if (n & 1) r = mat2_mul(r, b);
        b = mat2_mul(b, b);
        n >>= 1;
    }
    return r.m[0][0] * x0 + r.m[0][1];
}

static void phase_loop(uint64_t scale_milli) {
    uint64_t n = scaled(180000000, scale_milli);
    uint64_t x = 12345, sum = 0;
    lcg_loop(n, &x, &sum);
    printf("loop: steps=%" PRIu64 " x=%016" PRIx64 " sum=%016" PRIx64 "\n", n, x, sum);
    CHECK(x == lcg_jump(12345, n), "loop: x differs from jump-ahead");

    /* The sum has no closed form; recompute it in two halves instead, which
     * also checks that resuming from a saved (x, sum) pair is exact. */
    uint64_t x2 = 12345, sum2 = 0;
    lcg_loop(n / 2, &x2, &sum2);
    CHECK(x2 == lcg_jump(12345, n / 2), "loop: half-way x differs from jump-ahead");
    lcg_loop(n - n / 2, &x2, &sum2);
    CHECK(x2 == x && sum2 == sum, "loop: two halves differ from one run");
}

/* ---- phase 2: deep recursion --------------------------------------------- */

#define DEPTH 12000

static uint32_t mix32(uint32_t v) {
    v ^= v >> 16; v *= 0x7feb352dU;
    v ^= v >> 15; v *= 0x846ca68bU;
    v ^= v >> 16;
    return v;
}

/* Takes the address of the caller's local, so that local must live in linear
 * memory (the shadow stack) rather than in a wasm local. */
__attribute__((noinline)) static void fill(uint32_t *slot, uint32_t seed) {
    slot[0] = mix32(seed);
    slot[1] = mix32(seed ^ 0x9e3779b9U);
}

/* Each frame keeps `a` (wasm local) and `slot` (shadow stack) live across the
 * recursive call and combines them with its result afterwards, so neither the
 * compiler (no tail call) nor a VM (must restore both stacks) can cheat. */
__attribute__((noinline)) static uint32_t recurse(uint32_t depth, uint32_t seed) {
    uint32_t slot[2];
    uint32_t a = mix32(seed + depth);
    fill(slot, a);
    if (depth == 0) return a ^ slot[0];
    uint32_t r = recurse(depth - 1, slot[1]);
    return (r * 31u + a) ^ (slot[0] >> (depth & 7));
}

/* The same computation with an explicit array instead of the call stack. */
static uint32_t recurse_iterative(uint32_t depth, uint32_t seed,
                                  uint32_t *a_arr, uint32_t *s0_arr) {
    for (uint32_t d = depth;; d--) {
        uint32_t a = mix32(seed + d);
        uint32_t s0 = mix32(a), s1 = mix32(a ^ 0x9e3779b9U);
        a_arr[d] = a;
        s0_arr[d] = s0;
        seed = s1;
        if (d == 0) break;
    }
    uint32_t r = a_arr[0] ^ s0_arr[0];
    for (uint32_t d = 1; d <= depth; d++)
        r = (r * 31u + a_arr[d]) ^ (s0_arr[d] >> (d & 7));
    return r;
}

static void phase_recurse(uint64_t scale_milli) {
    uint64_t reps = scaled(1000, scale_milli);
    uint32_t *a_arr = malloc((DEPTH + 1) * sizeof *a_arr);
    uint32_t *s0_arr = malloc((DEPTH + 1) * sizeof *s0_arr);
    if (!a_arr || !s0_arr) { CHECK(0, "recurse: out of memory"); return; }
    uint32_t acc = 0, acc_iter = 0;
    for (uint64_t i = 0; i < reps; i++) {
        acc = mix32(acc ^ recurse(DEPTH, (uint32_t)i));
        acc_iter = mix32(acc_iter ^ recurse_iterative(DEPTH, (uint32_t)i, a_arr, s0_arr));
    }
    printf("recurse: depth=%d reps=%" PRIu64 " acc=%08" PRIx32 "\n", DEPTH, reps, acc);
    CHECK(acc == acc_iter, "recurse: %08" PRIx32 " != iterative %08" PRIx32, acc, acc_iter);
    free(a_arr);
    free(s0_arr);
}

/* ---- phase 3: sieve ------------------------------------------------------ */

#define SIEVE_N 1000000
#define PI_1E6 78498
#define SUM_PRIMES_1E6 UINT64_C(37550402023)

static int is_prime_trial(uint32_t n) {
    if (n < 2) return 0;
    for (uint32_t d = 2; d * d <= n; d++)
        if (n % d == 0) return 0;
    return 1;
}

static void phase_sieve(uint64_t scale_milli) {
    uint64_t reps = scaled(30, scale_milli);
    unsigned char *composite = malloc(SIEVE_N + 1);
    if (!composite) { CHECK(0, "sieve: out of memory"); return; }
    uint64_t count = 0, sum = 0;
    for (uint64_t rep = 0; rep < reps; rep++) {
        memset(composite, 0, SIEVE_N + 1);
        composite[0] = composite[1] = 1;
        for (uint32_t p = 2; (uint64_t)p * p <= SIEVE_N; p++)
            if (!composite[p])
                for (uint32_t m = p * p; m <= SIEVE_N; m += p) composite[m] = 1;
        count = 0;
        sum = 0;
        for (uint32_t i = 0; i <= SIEVE_N; i++)
            if (!composite[i]) { count++; sum += i; }
    }
    printf("sieve: n=%d reps=%" PRIu64 " primes=%" PRIu64 " sum=%" PRIu64 "\n",
           SIEVE_N, reps, count, sum);
    CHECK(count == PI_1E6, "sieve: pi(10^6)=%" PRIu64 ", expected %d", count, PI_1E6);
    CHECK(sum == SUM_PRIMES_1E6, "sieve: sum of primes %" PRIu64 " is wrong", sum);
    /* Trial division on a spread sample: every 997th number. */
    for (uint32_t i = 0; i <= SIEVE_N; i += 997)
        CHECK((composite[i] == 0) == is_prime_trial(i), "sieve: %" PRIu32 " misclassified", i);
    free(composite);
}

/* ---- phase 4: qsort ------------------------------------------------------ */

static int cmp_u32(const void *pa, const void *pb) {
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

static void phase_qsort(uint64_t scale_milli) {
    size_t n = (size_t)scaled(300000, scale_milli);
    if (n > 16000000) n = 16000000;   /* keep the array within 64 MiB */
    uint32_t *v = malloc(n * sizeof *v);
    if (!v) { CHECK(0, "qsort: out of memory"); return; }
    uint64_t x = 42, sum_before = 0, fp_before = 0;
    for (size_t i = 0; i < n; i++) {
        x = x * LCG_A + LCG_C;
        v[i] = (uint32_t)(x >> 32);
        sum_before += v[i];
        fp_before += mix32(v[i]);
    }
    qsort(v, n, sizeof *v, cmp_u32);
    uint64_t sum_after = 0, fp_after = 0, weighted = 0;
    size_t unordered = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && v[i - 1] > v[i]) unordered++;
        sum_after += v[i];
        fp_after += mix32(v[i]);
        weighted += (uint64_t)v[i] * (i + 1);
    }
    printf("qsort: n=%zu min=%08" PRIx32 " max=%08" PRIx32 " weighted=%016" PRIx64 "\n",
           n, v[0], v[n - 1], weighted);
    CHECK(unordered == 0, "qsort: %zu pairs out of order", unordered);
    CHECK(sum_after == sum_before && fp_after == fp_before,
          "qsort: result is not a permutation of the input");
    free(v);
}

int main(int argc, char **argv) {
    int64_t scale_milli = 1000;
    if (argc > 1) {
        scale_milli = parse_scale_milli(argv[1]);
        if (scale_milli <= 0) {
            fprintf(stderr, "compute: bad SCALE \"%s\" (want a positive decimal, e.g. 0.05)\n",
                    argv[1]);
            return 2;
        }
    }
    printf("compute: scale=%" PRId64 "/1000\n", scale_milli);
    fflush(stdout);
    phase_loop((uint64_t)scale_milli);
    fflush(stdout);
    phase_recurse((uint64_t)scale_milli);
    fflush(stdout);
    phase_sieve((uint64_t)scale_milli);
    fflush(stdout);
    phase_qsort((uint64_t)scale_milli);

    if (failures) {
        fprintf(stderr, "compute: %d check(s) failed\n", failures);
        return 1;
    }
    printf("compute: ok\n");
    return 0;
}
