/*
 * hello — the smallest guest: arguments, environment and exit code.
 *
 * Prints "hello from crvm", then argc and each argv[i] on its own line, then
 * the value of GREETING (or "(unset)"). An argument "exit=N" makes it exit
 * with code N after printing; otherwise it exits 0.
 *
 *   $ crvm run hello.wasm a exit=3     (GREETING=hi)
 *   hello from crvm
 *   argc=3
 *   argv[0]=hello
 *   argv[1]=a
 *   argv[2]=exit=3
 *   GREETING=hi
 *   (exit code 3)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    int code = 0;

    printf("hello from crvm\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d]=%s\n", i, argv[i]);
        if (strncmp(argv[i], "exit=", 5) == 0) code = atoi(argv[i] + 5);
    }
    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");

    /* exit() flushes stdout before the code reaches the host. */
    fflush(stdout);
    exit(code);
}
