/* data.c — token shards: an atomic writer (io/jsonfile.h's protocol), an mmap reader that checks the
 * header, and the (seed, step) → batch function. See data.h for the file format and the exact batch
 * definition; changing either changes every training stream, so both are versioned.
 */
#include "data.h"
#include "../kernels/alloc.h"
#include "errfmt.h"
#include "jsonfile.h"
#include "readfile.h"
#include "../core/tensor.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token shards are little-endian; this reader needs a little-endian host"
#endif

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint64_t get64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- writer ------------------------------------------------------------------------------------------ */
struct hb_shard_writer {
    FILE *f;
    char *tmp;
    char *path;
    int64_t vocab;
    int width;
    int64_t count;
    int failed;
};

hb_shard_writer_t *hb_shard_writer_open(const char *path, int64_t vocab_size, int token_bytes, char *err,
                                        size_t errlen) {
    if (!path) { hb_errfmt(err, errlen, "hb_shard_writer_open: NULL path"); return NULL; }
    if (vocab_size < 0 || vocab_size > ((int64_t)1 << 32)) {
        hb_errfmt(err, errlen, "%s: vocab_size %lld is out of range (0..2^32)", path, (long long)vocab_size);
        return NULL;
    }
    if (token_bytes == 0) token_bytes = vocab_size > 0 && vocab_size <= 65536 ? 2 : 4;
    if (token_bytes != 2 && token_bytes != 4) {
        hb_errfmt(err, errlen, "%s: token width must be 2 or 4 bytes, got %d", path, token_bytes);
        return NULL;
    }
    if (token_bytes == 2 && vocab_size > 65536) {
        hb_errfmt(err, errlen, "%s: vocab_size %lld does not fit 16-bit tokens", path, (long long)vocab_size);
        return NULL;
    }
    hb_shard_writer_t *w = hb_calloc(1, sizeof *w);
    if (!w || !(w->path = hb_strdup(path))) {
        free(w);
        hb_errfmt(err, errlen, "%s: out of memory", path);
        return NULL;
    }
    w->vocab = vocab_size;
    w->width = token_bytes;
    w->f = hb_atomic_open(path, &w->tmp, err, errlen);
    if (!w->f) {
        free(w->path);
        free(w);
        return NULL;
    }
    unsigned char hdr[HB_SHARD_HEADER] = {0}; /* the real header is written at close */
    if (fwrite(hdr, 1, sizeof hdr, w->f) != sizeof hdr) {
        hb_errfmt(err, errlen, "%s: write failed: %s", path, strerror(errno));
        hb_shard_writer_abort(w);
        return NULL;
    }
    return w;
}

int hb_shard_writer_append(hb_shard_writer_t *w, const int64_t *ids, size_t n, char *err, size_t errlen) {
    if (w->failed) { hb_errfmt(err, errlen, "%s: the writer failed earlier", w->path); return -1; }
    int64_t limit = w->vocab > 0 ? w->vocab : (int64_t)1 << (8 * w->width);
    unsigned char buf[8192];
    size_t per = sizeof buf / (size_t)w->width;
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        for (size_t j = 0; j < m; j++) {
            int64_t id = ids[i + j];
            if (id < 0 || id >= limit) {
                w->failed = 1;
                if (w->vocab > 0)
                    hb_errfmt(err, errlen, "%s: token %lld (position %lld) is outside the vocabulary 0..%lld", w->path,
                              (long long)id, (long long)(w->count + (int64_t)(i + j)), (long long)(w->vocab - 1));
                else
                    hb_errfmt(err, errlen, "%s: token %lld (position %lld) does not fit %d-byte tokens", w->path,
                              (long long)id, (long long)(w->count + (int64_t)(i + j)), w->width);
                return -1;
            }
            if (w->width == 2) { uint16_t v = (uint16_t)id; memcpy(buf + 2 * j, &v, 2); }
            else { uint32_t v = (uint32_t)id; memcpy(buf + 4 * j, &v, 4); }
        }
        if (fwrite(buf, (size_t)w->width, m, w->f) != m) {
            w->failed = 1;
            hb_errfmt(err, errlen, "%s: write failed: %s", w->path, strerror(errno));
            return -1;
        }
    }
    w->count += (int64_t)n;
    return 0;
}

int64_t hb_shard_writer_count(const hb_shard_writer_t *w) { return w ? w->count : 0; }

void hb_shard_writer_abort(hb_shard_writer_t *w) {
    if (!w) return;
    hb_atomic_abort(w->f, w->tmp);
    free(w->path);
    free(w);
}

int hb_shard_writer_close(hb_shard_writer_t *w, char *err, size_t errlen) {
    if (w->failed) {
        hb_errfmt(err, errlen, "%s: the writer failed earlier", w->path);
        hb_shard_writer_abort(w);
        return -1;
    }
    unsigned char hdr[HB_SHARD_HEADER] = {0};
    memcpy(hdr, "HBTK", 4);
    put32(hdr + 4, HB_SHARD_VERSION);
    put32(hdr + 8, (uint32_t)w->width);
    put32(hdr + 12, (uint32_t)w->vocab); /* 2^32 itself wraps to 0: "unknown", still correct */
    put64(hdr + 16, (uint64_t)w->count);
    if (fseek(w->f, 0, SEEK_SET) != 0 || fwrite(hdr, 1, sizeof hdr, w->f) != sizeof hdr) {
        hb_errfmt(err, errlen, "%s: write failed: %s", w->path, strerror(errno));
        hb_shard_writer_abort(w);
        return -1;
    }
    int rc = hb_atomic_commit(w->f, w->tmp, w->path, err, errlen);
    free(w->path);
    free(w);
    return rc;
}

int hb_shard_write(const char *path, const int64_t *ids, size_t n, int64_t vocab_size, int token_bytes, char *err,
                   size_t errlen) {
    hb_shard_writer_t *w = hb_shard_writer_open(path, vocab_size, token_bytes, err, errlen);
    if (!w) return -1;
    if (hb_shard_writer_append(w, ids, n, err, errlen)) {
        hb_shard_writer_abort(w);
        return -1;
    }
    return hb_shard_writer_close(w, err, errlen);
}

/* ---- reader ------------------------------------------------------------------------------------------ */
struct hb_shard {
    char *path;
    void *map;
    size_t map_len;
    const unsigned char *tokens;
    int64_t count, vocab;
    int width;
};

hb_shard_t *hb_shard_open(const char *path, char *err, size_t errlen) {
    if (!path) { hb_errfmt(err, errlen, "hb_shard_open: NULL path"); return NULL; }
    struct stat st;
    int fd = hb_open_regular(path, &st, err, errlen);   /* a FIFO or device is refused, never read */
    if (fd == -1) hb_errfmt(err, errlen, "%s: %s", path, strerror(errno));
    if (fd < 0) return NULL;
    size_t size = (size_t)st.st_size;
    if (size < HB_SHARD_HEADER) {
        hb_errfmt(err, errlen, "%s: not a hyblua token shard (%zu bytes, shorter than the %d-byte header)", path, size,
                  HB_SHARD_HEADER);
        close(fd);
        return NULL;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED) { hb_errfmt(err, errlen, "%s: mmap failed: %s", path, strerror(e)); return NULL; }
    const unsigned char *h = map;
    const char *problem = NULL;
    char pb[160];
    uint32_t version = get32(h + 4), width = get32(h + 8);
    uint64_t count = get64(h + 16);
    if (memcmp(h, "HBTK", 4)) {
        char m[5];
        for (int i = 0; i < 4; i++) m[i] = h[i] >= 32 && h[i] < 127 ? (char)h[i] : '.';
        m[4] = 0;
        snprintf(pb, sizeof pb, "not a hyblua token shard (magic '%s', expected 'HBTK')", m);
        problem = pb;
    } else if (version != HB_SHARD_VERSION) {
        snprintf(pb, sizeof pb, "shard format version %u is not supported (this build reads version %d)", version,
                 HB_SHARD_VERSION);
        problem = pb;
    } else if (width != 2 && width != 4) {
        snprintf(pb, sizeof pb, "bad shard header: token width %u (expected 2 or 4)", width);
        problem = pb;
    } else if (count > (size - HB_SHARD_HEADER) / width) {
        snprintf(pb, sizeof pb, "truncated shard: the header promises %llu tokens of %u bytes, the file holds %zu",
                 (unsigned long long)count, width, (size - HB_SHARD_HEADER) / width);
        problem = pb;
    } else if (HB_SHARD_HEADER + count * width != size) {
        snprintf(pb, sizeof pb, "bad shard: %zu bytes after the %llu tokens the header promises",
                 size - HB_SHARD_HEADER - (size_t)count * width, (unsigned long long)count);
        problem = pb;
    }
    hb_shard_t *s = problem ? NULL : hb_calloc(1, sizeof *s);
    if (!problem && (!s || !(s->path = hb_strdup(path)))) {
        free(s);
        s = NULL;
        problem = "out of memory";
    }
    if (problem) {
        hb_errfmt(err, errlen, "%s: %s", path, problem);
        munmap(map, size);
        return NULL;
    }
    madvise(map, size, MADV_RANDOM);
    s->map = map;
    s->map_len = size;
    s->tokens = h + HB_SHARD_HEADER;
    s->count = (int64_t)count;
    s->vocab = get32(h + 12);
    s->width = (int)width;
    return s;
}

void hb_shard_close(hb_shard_t *s) {
    if (!s) return;
    munmap(s->map, s->map_len);
    free(s->path);
    free(s);
}

int64_t hb_shard_len(const hb_shard_t *s) { return s->count; }
int64_t hb_shard_vocab_size(const hb_shard_t *s) { return s->vocab; }
int hb_shard_token_bytes(const hb_shard_t *s) { return s->width; }
const char *hb_shard_path(const hb_shard_t *s) { return s->path; }

/* tokens [pos, pos+n) → out (the range is the caller's to check). Every id is checked against the
 * vocabulary the header records: a shard whose bytes were damaged, or written for another tokenizer,
 * must not feed out-of-range ids to an embedding. Returns 0, or -1 with a message naming the position. */
static int copy_tokens(const hb_shard_t *s, int64_t pos, int64_t n, int64_t *out, char *err, size_t errlen) {
    uint32_t bad = 0;
    if (s->width == 2) {
        const unsigned char *p = s->tokens + 2 * pos;
        for (int64_t i = 0; i < n; i++) {
            uint16_t v;
            memcpy(&v, p + 2 * i, 2);
            out[i] = v;
        }
    } else {
        const unsigned char *p = s->tokens + 4 * pos;
        for (int64_t i = 0; i < n; i++) {
            uint32_t v;
            memcpy(&v, p + 4 * i, 4);
            out[i] = v;
        }
    }
    if (s->vocab <= 0) return 0;
    for (int64_t i = 0; i < n; i++) bad |= out[i] >= s->vocab;
    if (!bad) return 0;
    for (int64_t i = 0; i < n; i++)
        if (out[i] >= s->vocab) {
            hb_errfmt(err, errlen, "%s: token %lld at offset %lld is outside the shard's vocabulary 0..%lld (a damaged "
                      "shard, or one written for another tokenizer)", s->path, (long long)out[i], (long long)(pos + i),
                      (long long)(s->vocab - 1));
            break;
        }
    return -1;
}

int hb_shard_read(const hb_shard_t *s, int64_t pos, int64_t n, int64_t *out, char *err, size_t errlen) {
    if (pos < 0 || n < 0 || pos > s->count || n > s->count - pos) {
        hb_errfmt(err, errlen, "%s: tokens [%lld, %lld) are outside the shard (%lld tokens)", s->path, (long long)pos,
                  (long long)(pos + n), (long long)s->count);
        return -1;
    }
    return copy_tokens(s, pos, n, out, err, errlen);
}

uint64_t hb_data_batch_seed(uint64_t seed, uint64_t k) {
    /* two rounds of the splitmix64 finaliser over (seed, k): nearby seeds and steps give unrelated streams */
    uint64_t z = seed ^ 0x6a09e667f3bcc909ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    z += (k + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in 0..n-1 (n >= 1) without modulo bias */
static uint64_t uniform(hb_rng_t *r, uint64_t n) {
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* accept x < limit: a whole number of copies of 0..n-1 */
    uint64_t x;
    do x = hb_rng_next(r);
    while (x >= limit);
    return x % n;
}

int hb_shard_batch(const hb_shard_t *s, int64_t B, int64_t T, uint64_t seed, uint64_t k, int64_t *out, char *err,
                   size_t errlen) {
    if (B < 1 || T < 1) {
        hb_errfmt(err, errlen, "%s: batch needs B >= 1 and T >= 1 (got B=%lld, T=%lld)", s->path, (long long)B,
                  (long long)T);
        return -1;
    }
    if (s->count < T + 1) {
        hb_errfmt(err, errlen, "%s: %lld tokens are too few for a sequence of T+1 = %lld", s->path, (long long)s->count,
                  (long long)(T + 1));
        return -1;
    }
    hb_rng_t r;
    hb_rng_seed(&r, hb_data_batch_seed(seed, k));
    uint64_t n = (uint64_t)(s->count - T); /* offsets 0..len-T-1 leave room for T+1 tokens */
    for (int64_t b = 0; b < B; b++)
        if (copy_tokens(s, (int64_t)uniform(&r, n), T + 1, out + b * (T + 1), err, errlen)) return -1;
    return 0;
}

int64_t hb_shard_num_windows(const hb_shard_t *s, int64_t T) {
    if (T < 1 || s->count < 2) return 0;
    return (s->count - 1 + T - 1) / T;
}

int hb_shard_window(const hb_shard_t *s, int64_t i, int64_t T, int64_t *out, int64_t *n_out, char *err,
                    size_t errlen) {
    int64_t nw = hb_shard_num_windows(s, T);
    if (T < 1 || i < 0 || i >= nw) {
        hb_errfmt(err, errlen, "%s: window %lld of T=%lld is out of range (the shard has %lld windows)", s->path,
                  (long long)i, (long long)T, (long long)nw);
        return -1;
    }
    int64_t start = i * T, end = start + T < s->count - 1 ? start + T : s->count - 1;
    *n_out = end - start + 1;
    return copy_tokens(s, start, end - start + 1, out, err, errlen);
}
