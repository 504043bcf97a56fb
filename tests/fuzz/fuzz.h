/* fuzz.h -- what every fuzz target shares: the libFuzzer entry point
 * each defines, and (without libFuzzer) a main that runs the entry point
 * once over every file named on the command line or found in a named
 * directory, printing TAP: `make test` runs each target over its seed
 * corpus this way, under ASan and UBSan, with gcc; `make fuzz` links
 * the same file with clang's libFuzzer and explores from that corpus. */
#ifndef LF_FUZZ_H
#define LF_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#ifndef LF_LIBFUZZER
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int lf_fuzz_file(const char *path, int *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        printf("not ok %d - %s: cannot open\n", ++*n, path);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* An exact-size copy: ASan then sees any read past the input. */
    uint8_t *buf = malloc(len > 0 ? (size_t)len : 1);
    size_t got = len > 0 ? fread(buf, 1, (size_t)len, f) : 0;
    fclose(f);
    LLVMFuzzerTestOneInput(buf, got);
    free(buf);
    printf("ok %d - %s\n", ++*n, path);
    return 0;
}

int main(int argc, char **argv) {
    int n = 0, bad = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            struct dirent **names;
            int k = scandir(argv[i], &names, NULL, alphasort);
            for (int j = 0; j < k; j++) {
                char path[4096];
                snprintf(path, sizeof path, "%s/%s", argv[i], names[j]->d_name);
                if (names[j]->d_name[0] != '.') bad |= lf_fuzz_file(path, &n);
                free(names[j]);
            }
            free(names);
        } else {
            bad |= lf_fuzz_file(argv[i], &n);
        }
    }
    printf("1..%d\n", n);
    return bad || n == 0;
}
#endif

#endif
