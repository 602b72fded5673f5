/* safetensors.c — fuzz target: the safetensors reader (io/safetensors.c: 8-byte header length, header
 * JSON, dtypes, shapes, data offsets, __metadata__) and the sharded-checkpoint index reader.
 *
 * Entry points: hb_safetensors_open and hb_safetensors_open_index. The first input byte picks the mode,
 * the rest is the file:
 *   even: the bytes are a .safetensors file, opened with hb_safetensors_open;
 *   odd:  the bytes are model.safetensors.index.json in a folder that also holds a valid shard
 *         "s.safetensors" (tensors "a", "b"), opened with hb_safetensors_open_index.
 * Besides "no crash, no sanitizer report, no leak", it checks (FZ_CHECK aborts when one fails):
 *   - a failed open leaves a message that starts with the file's path;
 *   - on success every accessor agrees (nbytes == numel * dtype size, find(name(i)) names i, data
 *     readable end to end, metadata keys find their values), and writing the tensors back and
 *     reopening gives the same names, sizes and bytes.
 * Run: make fuzz FUZZ_TARGETS=safetensors (seeds: tests/fuzz/corpus/safetensors; -max_len 4096).
 */
#include "../../io/safetensors.h"
#include "fuzz.h"

static const char *file, *out, *index_path;

static void init(void) {
    file = fz_file("in.safetensors");
    out = fz_file("out.safetensors");
    index_path = fz_file("model.safetensors.index.json");
    char err[512];
    float a[2] = {1, 2};
    int64_t sa[1] = {2};
    hb_st_entry e[2] = {{"a", HB_ST_F32, 1, sa, a}, {"b", HB_ST_I8, 0, NULL, "x"}};
    FZ_CHECK(hb_safetensors_write(fz_file("s.safetensors"), 2, e, 0, NULL, NULL, err, sizeof err) == 0, "%s", err);
}

static void check(hb_safetensors_t *st) {
    int n = hb_safetensors_count(st);
    volatile unsigned sum = 0;
    hb_st_entry *e = calloc((size_t)n + 1, sizeof *e);
    FZ_CHECK(e, "out of memory");
    for (int i = 0; i < n; i++) {
        const char *name = hb_safetensors_name(st, i);
        hb_st_dtype dt = hb_safetensors_dtype(st, i);
        size_t nb = hb_safetensors_nbytes(st, i);
        const unsigned char *d = hb_safetensors_data(st, i);
        FZ_CHECK(name && hb_st_dtype_size(dt) != 0 && hb_safetensors_ndim(st, i) >= 0 &&
                     (uint64_t)hb_safetensors_numel(st, i) * hb_st_dtype_size(dt) == nb,
                 "tensor %d: accessors disagree", i);
        int j = hb_safetensors_find(st, name);
        FZ_CHECK(j >= 0 && strcmp(hb_safetensors_name(st, j), name) == 0, "find('%s') gave %d", name, j);
        for (size_t k = 0; k < nb; k++) sum += d[k];
        e[i] = (hb_st_entry){name, dt, hb_safetensors_ndim(st, i), hb_safetensors_shape(st, i), d};
    }
    (void)sum;
    int nm = hb_safetensors_meta_count(st);
    const char **mk = calloc((size_t)nm + 1, sizeof *mk), **mv = calloc((size_t)nm + 1, sizeof *mv);
    FZ_CHECK(mk && mv, "out of memory");
    for (int i = 0; i < nm; i++) {
        mk[i] = hb_safetensors_meta_key(st, i);
        mv[i] = hb_safetensors_meta_value(st, i);
        FZ_CHECK(mk[i] && mv[i] && hb_safetensors_meta_get(st, mk[i]) == mv[i], "metadata entry %d", i);
    }
    /* round trip: whatever we can read, we can write and read back identically */
    char err[1024];
    FZ_CHECK(hb_safetensors_write(out, n, e, nm, mk, mv, err, sizeof err) == 0, "write back: %s", err);
    hb_safetensors_t *back = hb_safetensors_open(out, err, sizeof err);
    FZ_CHECK(back, "reopen: %s", err);
    FZ_CHECK(hb_safetensors_count(back) == n && hb_safetensors_meta_count(back) == nm, "reopened counts differ");
    for (int i = 0; i < n; i++) {
        int j = hb_safetensors_find(back, e[i].name);
        FZ_CHECK(j >= 0 && hb_safetensors_nbytes(back, j) == hb_safetensors_nbytes(st, i) &&
                     memcmp(hb_safetensors_data(back, j), e[i].data, hb_safetensors_nbytes(st, i)) == 0,
                 "tensor '%s' differs after the round trip", e[i].name);
    }
    hb_safetensors_close(back);
    free(e);
    free(mk);
    free(mv);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready = 0;
    if (!ready) {
        init();
        ready = 1;
    }
    if (size == 0) return 0;
    int index_mode = data[0] & 1;
    const char *path = index_mode ? index_path : file;
    fz_put(path, data + 1, size - 1);
    char err[1024];
    err[0] = '\0';
    hb_safetensors_t *st = index_mode ? hb_safetensors_open_index(path, err, sizeof err)
                                      : hb_safetensors_open(path, err, sizeof err);
    if (!st) {
        FZ_CHECK(strncmp(err, path, strlen(path)) == 0, "the message does not start with the path: %s", err);
        return 0;
    }
    check(st);
    hb_safetensors_close(st);
    return 0;
}
