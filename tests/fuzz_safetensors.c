/* fuzz_safetensors.c — libFuzzer target for the safetensors reader (and the index reader).
 *
 * Not part of `make test`. Build and run (from the repo root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined $(pkg-config --cflags libcjson) \
 *     tests/fuzz_safetensors.c core/safetensors.c core/jsonfile.c core/errfmt.c -o /tmp/fuzz_st $(pkg-config --libs libcjson)
 *   /tmp/fuzz_st -max_total_time=60 -max_len=4096 [CORPUS_DIR]
 *
 * The first input byte picks the mode, the rest is the file:
 *   even: the bytes are a .safetensors file, opened with hb_safetensors_open;
 *   odd:  the bytes are model.safetensors.index.json in a folder that also holds a valid shard
 *         "s.safetensors" (tensors "a", "b"), opened with hb_safetensors_open_index.
 * Besides "no crash, no sanitizer report", it checks properties and traps if one fails:
 *   - a failed open leaves a message that starts with the file's path;
 *   - on success every accessor agrees (nbytes == numel * dtype size, find(name(i)) names i, data
 *     readable end to end), and writing the tensors back and reopening gives the same bytes.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "../core/safetensors.h"
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[128], file[192], out[192], index_path[192];

static void cleanup(void) {
    char shard[192];
    snprintf(shard, sizeof shard, "%s/s.safetensors", dir);
    unlink(file); unlink(out); unlink(index_path); unlink(shard);
    rmdir(dir);
}

static void init(void) {
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/hb_fuzz_st.%ld", base, (long)getpid());
    mkdir(dir, 0700);
    snprintf(file, sizeof file, "%s/in.safetensors", dir);
    snprintf(out, sizeof out, "%s/out.safetensors", dir);
    snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir);
    char shard[192], err[512];
    snprintf(shard, sizeof shard, "%s/s.safetensors", dir);
    float a[2] = {1, 2};
    int64_t sa[1] = {2};
    hb_st_entry e[2] = {{"a", HB_ST_F32, 1, sa, a}, {"b", HB_ST_I8, 0, NULL, "x"}};
    if (hb_safetensors_write(shard, 2, e, 0, NULL, NULL, err, sizeof err)) __builtin_trap();
    atexit(cleanup);
}

static void put(const char *path, const uint8_t *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) __builtin_trap();
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) __builtin_trap();
        p += w;
        n -= (size_t)w;
    }
    close(fd);
}

static void check(hb_safetensors_t *st) {
    int n = hb_safetensors_count(st);
    volatile unsigned sum = 0;
    hb_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    for (int i = 0; i < n; i++) {
        const char *name = hb_safetensors_name(st, i);
        hb_st_dtype dt = hb_safetensors_dtype(st, i);
        size_t nb = hb_safetensors_nbytes(st, i);
        const unsigned char *d = hb_safetensors_data(st, i);
        if (!name || hb_st_dtype_size(dt) == 0 || hb_safetensors_ndim(st, i) < 0 ||
            (uint64_t)hb_safetensors_numel(st, i) * hb_st_dtype_size(dt) != nb)
            __builtin_trap();
        int j = hb_safetensors_find(st, name);
        if (j < 0 || strcmp(hb_safetensors_name(st, j), name) != 0) __builtin_trap();
        for (size_t k = 0; k < nb; k++) sum += d[k];
        e[i] = (hb_st_entry){name, dt, hb_safetensors_ndim(st, i), hb_safetensors_shape(st, i), d};
    }
    (void)sum;
    int nm = hb_safetensors_meta_count(st);
    const char **mk = calloc((size_t)nm + 1, sizeof *mk), **mv = calloc((size_t)nm + 1, sizeof *mv);
    for (int i = 0; i < nm; i++) {
        mk[i] = hb_safetensors_meta_key(st, i);
        mv[i] = hb_safetensors_meta_value(st, i);
        if (!mk[i] || !mv[i] || hb_safetensors_meta_get(st, mk[i]) != mv[i]) __builtin_trap();
    }
    /* round trip: whatever we can read, we can write and read back identically */
    char err[1024];
    if (hb_safetensors_write(out, n, e, nm, mk, mv, err, sizeof err)) __builtin_trap();
    hb_safetensors_t *back = hb_safetensors_open(out, err, sizeof err);
    if (!back || hb_safetensors_count(back) != n || hb_safetensors_meta_count(back) != nm) __builtin_trap();
    for (int i = 0; i < n; i++) {
        int j = hb_safetensors_find(back, e[i].name);
        if (j < 0 || hb_safetensors_nbytes(back, j) != hb_safetensors_nbytes(st, i) ||
            memcmp(hb_safetensors_data(back, j), e[i].data, hb_safetensors_nbytes(st, i)) != 0)
            __builtin_trap();
    }
    hb_safetensors_close(back);
    free(e);
    free(mk);
    free(mv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready = 0;
    if (!ready) { init(); ready = 1; }
    if (size == 0) return 0;
    int index_mode = data[0] & 1;
    const char *path = index_mode ? index_path : file;
    put(path, data + 1, size - 1);
    char err[1024];
    err[0] = '\0';
    hb_safetensors_t *st = index_mode ? hb_safetensors_open_index(path, err, sizeof err)
                                      : hb_safetensors_open(path, err, sizeof err);
    if (!st) {
        if (strncmp(err, path, strlen(path)) != 0) __builtin_trap();
        return 0;
    }
    check(st);
    hb_safetensors_close(st);
    return 0;
}
