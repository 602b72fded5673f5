/* fuzz.h — helpers shared by the fuzz targets in tests/fuzz/ (header-only; each target is one program).
 *
 * A target is a file defining LLVMFuzzerTestOneInput. It is built two ways (tests/fuzz/fuzz.mk):
 *   make fuzz   clang -fsanitize=fuzzer,address,undefined: libFuzzer's main drives it with mutated inputs;
 *   make test   $(CC) + tests/fuzz/replay.c's main: every committed seed and regression file is run once.
 * So a target must not depend on libFuzzer: state is set up lazily on the first input, files go to a
 * private scratch folder removed at exit, and a broken property is reported by FZ_CHECK, which prints
 * what failed and aborts (libFuzzer saves the input as a crash; the replay test fails).
 *
 *   fz_file("config.json")          → path of that name in the scratch folder (static storage per name)
 *   fz_put(path, bytes, n)          → writes the file (traps if the scratch folder is unwritable)
 *   fz_split(&data, &size, &n)      → cuts the next part off the input: a 2-byte little-endian length
 *                                      (clamped to what is left), then that many bytes; the last part
 *                                      of a multi-file input is simply what remains.
 */
#ifndef HB_FUZZ_H
#define HB_FUZZ_H
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FZ_CHECK(cond, ...)                                                                               \
    do {                                                                                                  \
        if (!(cond)) {                                                                                    \
            fprintf(stderr, "fuzz property failed at %s:%d: %s\n  ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                                 \
            fputc('\n', stderr);                                                                          \
            abort();                                                                                      \
        }                                                                                                 \
    } while (0)

static char fz_dirname[128];

/* Removes the folder at path and everything below it (targets may create subfolders). */
static void fz_rmtree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
                snprintf(p, sizeof p, "%s/%s", path, e->d_name);
                struct stat st;
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) fz_rmtree(p);
                else unlink(p);
            }
        closedir(d);
    }
    rmdir(path);
}

static void fz_cleanup(void) { fz_rmtree(fz_dirname); }

/* The scratch folder, created on first use: /dev/shm (or /tmp)/hb_fuzz.<pid>. */
__attribute__((unused)) static const char *fz_dir(void) {
    if (!fz_dirname[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        snprintf(fz_dirname, sizeof fz_dirname, "%s/hb_fuzz.%ld", base, (long)getpid());
        if (mkdir(fz_dirname, 0700) != 0) {
            perror(fz_dirname);
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dirname;
}

/* "<scratch>/<name>"; the string lives until exit (a small table of names). */
__attribute__((unused)) static const char *fz_file(const char *name) {
    static struct { char name[64]; char path[256]; } tab[16];
    for (int i = 0; i < 16; i++) {
        if (!tab[i].name[0]) {
            snprintf(tab[i].name, sizeof tab[i].name, "%s", name);
            snprintf(tab[i].path, sizeof tab[i].path, "%s/%s", fz_dir(), name);
        }
        if (!strcmp(tab[i].name, name)) return tab[i].path;
    }
    abort(); /* more than 16 names: a bug in the target */
}

__attribute__((unused)) static void fz_put(const char *path, const uint8_t *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        perror(path);
        abort();
    }
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) {
            perror(path);
            abort();
        }
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

/* The next length-prefixed part of the input (see the top comment); advances *data / *size. */
__attribute__((unused)) static const uint8_t *fz_split(const uint8_t **data, size_t *size, size_t *n) {
    size_t len = 0;
    if (*size >= 2) len = (size_t)(*data)[0] | (size_t)(*data)[1] << 8;
    size_t skip = *size < 2 ? *size : 2;
    *data += skip;
    *size -= skip;
    if (len > *size) len = *size;
    const uint8_t *part = *data;
    *data += len;
    *size -= len;
    *n = len;
    return part;
}

#endif
