/* A guest for capture tests (capture_test.ts): a loop, a recursion with
 * frames on the shadow stack, malloc, qsort through a function pointer and
 * output through write(2). No printf: it keeps the module (and the
 * transform) small. Output is the same on every host. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void put(const char *label, uint64_t v) {
    char buf[64];
    size_t n = strlen(label);
    memcpy(buf, label, n);
    buf[n++] = ' ';
    char digits[24];
    int d = 0;
    do { digits[d++] = (char)('0' + v % 10); v /= 10; } while (v);
    while (d) buf[n++] = digits[--d];
    buf[n++] = '\n';
    write(1, buf, n);
}

/* the volatile array keeps each frame's locals in linear memory across the calls */
static uint64_t tree(int depth, uint64_t seed) {
    volatile uint64_t local[4] = { seed, seed * 3, seed ^ 0x5555, (uint64_t)depth };
    if (depth == 0) return seed % 1000003;
    uint64_t a = tree(depth - 1, seed * 6364136223846793005ull + 1);
    uint64_t b = tree(depth - 1, seed ^ (seed >> 7));
    return (a * 31 + b + local[0] + local[1] + local[2] + local[3]) % 1000000007ull;
}

static int cmp(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

int main(void) {
    uint64_t x = 1;
    for (int i = 0; i < 300000; i++) x = x * 2862933555777941757ull + 3037000493ull;
    put("loop", x);
    put("tree", tree(13, 42));
    int n = 20000;
    uint32_t *v = malloc(n * sizeof *v);
    for (int i = 0; i < n; i++) { x = x * 2862933555777941757ull + 1; v[i] = (uint32_t)(x >> 33); }
    qsort(v, n, sizeof *v, cmp);
    uint64_t h = 0;
    for (int i = 0; i < n; i++) h = h * 1099511628211ull ^ v[i];
    put("sorted", v[0] <= v[n / 2] && v[n / 2] <= v[n - 1]);
    put("hash", h);
    free(v);
    return 0;
}
