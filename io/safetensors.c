/* safetensors.c — safetensors reader (mmap + full header validation) and atomic writer.
 *
 * Reading: a handle owns one mapping per file (one for a plain file, one per shard for an index) and
 * a flat table of tensors pointing into those mappings. Each file goes through load_file(): map it,
 * check the 8-byte length, check the header is UTF-8, parse it with cJSON from a NUL-terminated copy
 * (so a parser bug can never read past the header), then validate every entry and copy name, dtype,
 * shape, data pointer and size into the table. finish() sorts a by-name index for lookups and rejects
 * duplicate names. Nothing is exposed until every check has passed; on any error the partly built
 * handle is closed, which unmaps what was mapped.
 *
 * Writing follows the Python library's serializer (safetensors/src/tensor.rs, prepare()) byte for
 * byte: tensors sorted by dtype (its enum order, descending, which puts larger elements first) then
 * by name; offsets contiguous from 0; header = compact JSON with "__metadata__" first and the tensor
 * entries in data order, each {"dtype","shape","data_offsets"}; spaces pad it to a multiple of 8.
 * Metadata keys are sorted (Python's order is a hash map's, i.e. arbitrary).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include "safetensors.h"
#include "../kernels/alloc.h"
#include "errfmt.h"
#include "jsonfile.h"
#include "readfile.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------------- dtypes */

/* rank = position in the Rust library's Dtype enum; the writer sorts by it, descending. */
static const struct { const char *name; size_t size; int rank; } DTYPES[HB_ST_NDTYPES] = {
    [HB_ST_F64] = {"F64", 8, 12}, [HB_ST_F32] = {"F32", 4, 11}, [HB_ST_F16] = {"F16", 2, 7},
    [HB_ST_BF16] = {"BF16", 2, 8}, [HB_ST_I64] = {"I64", 8, 13}, [HB_ST_I32] = {"I32", 4, 9},
    [HB_ST_I16] = {"I16", 2, 5},   [HB_ST_I8] = {"I8", 1, 2},     [HB_ST_U8] = {"U8", 1, 1},
    [HB_ST_BOOL] = {"BOOL", 1, 0},
};

static int dtype_ok(int dt) { return dt >= 0 && dt < HB_ST_NDTYPES; }

size_t hb_st_dtype_size(hb_st_dtype dt) { return dtype_ok((int)dt) ? DTYPES[dt].size : 0; }

const char *hb_st_dtype_name(hb_st_dtype dt) { return dtype_ok((int)dt) ? DTYPES[dt].name : NULL; }

int hb_st_dtype_from_name(const char *name) {
    for (int i = 0; name && i < HB_ST_NDTYPES; i++)
        if (strcmp(name, DTYPES[i].name) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------- handle */

typedef struct {
    char *name;
    hb_st_dtype dtype;
    int ndim;
    int64_t *shape;          /* ndim entries (allocated with at least one) */
    int64_t numel;
    const unsigned char *data;
    size_t nbytes;
    int file;                /* index into files */
} st_tensor;

typedef struct {
    char *path;
    void *map;
    size_t size;
} st_file;

typedef struct {
    const char *key;
    int idx;
} st_sorted;                 /* (name, index) pairs sorted by name, for bsearch */

struct hb_safetensors {
    int nfiles, capfiles;
    st_file *files;
    int n, cap;
    st_tensor *t;
    st_sorted *byname;       /* n entries, built by finish() */
    int nmeta, capmeta;
    char **mkey, **mval;
    int *mfile;              /* which file each metadata pair came from */
    st_sorted *meta_byname;  /* nmeta entries, built by finish() */
};

/* Grow *p (elem bytes each) so that it holds at least need elements. */
static int grow(void *p, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int nc = *cap ? *cap : 16;
    while (nc < need) {
        if (nc > INT32_MAX / 2) return -1;
        nc *= 2;
    }
    void *np = hb_realloc(*(void **)p, (size_t)nc * elem);
    if (!np) return -1;
    *(void **)p = np;
    *cap = nc;
    return 0;
}

void hb_safetensors_close(hb_safetensors_t *st) {
    if (!st) return;
    for (int i = 0; i < st->nfiles; i++) {
        if (st->files[i].map) munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    for (int i = 0; i < st->n; i++) { free(st->t[i].name); free(st->t[i].shape); }
    for (int i = 0; i < st->nmeta; i++) { free(st->mkey[i]); free(st->mval[i]); }
    free(st->files); free(st->t); free(st->byname);
    free(st->mkey); free(st->mval); free(st->mfile); free(st->meta_byname);
    free(st);
}

/* ---------------------------------------------------------------- helpers for messages */

/* "an array", "a string", ... for messages about a JSON value of the wrong type. */
static const char *json_kind(const cJSON *j) {
    if (!j) return "missing";
    if (cJSON_IsObject(j)) return "an object";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    return "invalid";
}

/* "[2, 3]" into buf (truncated with "..." if long). */
static void fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t o = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < ndim && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%" PRId64, d ? ", " : "", shape[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
    else if (len >= 5) strcpy(buf + len - 5, "...]");
}

/* A JSON number that is an exact non-negative integer (cJSON holds numbers as doubles, which are
 * exact up to 2^53 — far beyond any real file). */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || d != (double)(uint64_t)d) return 0;
    *out = (uint64_t)d;
    return 1;
}

/* Strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF), like Rust's
 * str::from_utf8 which the Python library applies to the header. Returns the offset of the first bad
 * byte, or len if all is well. */
static size_t utf8_bad_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xbf;          /* allowed range of the first continuation byte */
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xc2 && c <= 0xdf) k = 1;
        else if (c >= 0xe0 && c <= 0xef) { k = 2; if (c == 0xe0) lo = 0xa0; if (c == 0xed) hi = 0x9f; }
        else if (c >= 0xf0 && c <= 0xf4) { k = 3; if (c == 0xf0) lo = 0x90; if (c == 0xf4) hi = 0x8f; }
        else return i;
        if (len - i <= k) return i;
        for (size_t j = 1; j <= k; j++) {
            unsigned b = s[i + j];
            if (j == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xbf)) return i;
        }
        i += k + 1;
    }
    return len;
}

/* ---------------------------------------------------------------- reading one file */

static int add_meta(hb_safetensors_t *st, const char *k, const char *v, int file) {
    if (grow(&st->mkey, &st->capmeta, st->nmeta + 1, sizeof(char *))) return -1;
    int cap = st->capmeta;   /* the three arrays share one capacity */
    char **nv = hb_realloc(st->mval, (size_t)cap * sizeof(char *));
    if (!nv) return -1;
    st->mval = nv;
    int *nf = hb_realloc(st->mfile, (size_t)cap * sizeof(int));
    if (!nf) return -1;
    st->mfile = nf;
    char *kc = hb_strdup(k), *vc = hb_strdup(v);
    if (!kc || !vc) { free(kc); free(vc); return -1; }
    st->mkey[st->nmeta] = kc;
    st->mval[st->nmeta] = vc;
    st->mfile[st->nmeta] = file;
    st->nmeta++;
    return 0;
}

/* Validate one header entry (name -> object) and append it to the table. data0/dsize: data section. */
static int add_tensor(hb_safetensors_t *st, const char *path, const cJSON *e, int file,
                      const unsigned char *data0, uint64_t dsize, char *err, size_t errlen) {
    const char *name = e->string;
    if (!cJSON_IsObject(e)) {
        hb_errfmt(err, errlen, "%s: tensor '%s': entry is %s, not an object", path, name, json_kind(e));
        return -1;
    }
    const cJSON *jd = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *js = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!cJSON_IsString(jd)) {
        hb_errfmt(err, errlen, "%s: tensor '%s': \"dtype\" is %s, not a string", path, name, json_kind(jd));
        return -1;
    }
    int dt = hb_st_dtype_from_name(jd->valuestring);
    if (dt < 0) {
        hb_errfmt(err, errlen, "%s: tensor '%s': unknown dtype '%s' (supported: F64, F32, F16, BF16, "
                  "I64, I32, I16, I8, U8, BOOL)", path, name, jd->valuestring);
        return -1;
    }
    if (!cJSON_IsArray(js)) {
        hb_errfmt(err, errlen, "%s: tensor '%s': \"shape\" is %s, not an array", path, name, json_kind(js));
        return -1;
    }
    int64_t shape[HB_ST_MAX_DIMS];
    int ndim = 0;
    uint64_t numel = 1;
    int overflow = 0;
    for (const cJSON *d = js->child; d; d = d->next, ndim++) {
        uint64_t v;
        if (ndim == HB_ST_MAX_DIMS) {
            hb_errfmt(err, errlen, "%s: tensor '%s': shape has more than %d dimensions", path, name,
                      HB_ST_MAX_DIMS);
            return -1;
        }
        if (!json_uint(d, &v)) {
            double x = cJSON_IsNumber(d) ? d->valuedouble : -1;
            char what[64];
            if (x > 9007199254740992.0)                 /* every double this large is an integer */
                hb_errfmt(err, errlen, x < 1e19 ? "%s: tensor '%s': shape[%d] is %.0f, more than 2^53"
                          : "%s: tensor '%s': shape[%d] is %.17g, more than 2^53", path, name, ndim, x);
            else {
                if (cJSON_IsNumber(d)) snprintf(what, sizeof what, "%.17g", x);
                else snprintf(what, sizeof what, "%s", json_kind(d));
                hb_errfmt(err, errlen, "%s: tensor '%s': shape[%d] is %s, not a non-negative integer",
                          path, name, ndim, what);
            }
            return -1;
        }
        shape[ndim] = (int64_t)v;
        if (v != 0 && numel > (uint64_t)INT64_MAX / v) overflow = 1;
        else numel *= v;
    }
    char shp[128];
    fmt_shape(shp, sizeof shp, ndim, shape);
    size_t es = DTYPES[dt].size;
    for (int d = 0; d < ndim; d++) if (shape[d] == 0) overflow = 0, numel = 0;
    if (overflow || numel > (uint64_t)INT64_MAX / es) {
        hb_errfmt(err, errlen, "%s: tensor '%s': shape %s of %s overflows 64-bit sizes", path, name,
                  shp, DTYPES[dt].name);
        return -1;
    }
    uint64_t need = numel * es, b, en;
    if (!cJSON_IsArray(jo) || cJSON_GetArraySize(jo) != 2 || !json_uint(jo->child, &b) ||
        !json_uint(jo->child->next, &en)) {
        hb_errfmt(err, errlen, "%s: tensor '%s': \"data_offsets\" must be [begin, end], two "
                  "non-negative integers", path, name);
        return -1;
    }
    if (en < b) {
        hb_errfmt(err, errlen, "%s: tensor '%s': data offsets [%" PRIu64 ", %" PRIu64 ") end before "
                  "they begin", path, name, b, en);
        return -1;
    }
    if (en > dsize) {
        hb_errfmt(err, errlen, "%s: tensor '%s': data offsets [%" PRIu64 ", %" PRIu64 ") exceed the "
                  "data section (%" PRIu64 " bytes)", path, name, b, en, dsize);
        return -1;
    }
    if (en - b != need) {
        hb_errfmt(err, errlen, "%s: tensor '%s': data offsets [%" PRIu64 ", %" PRIu64 ") hold %"
                  PRIu64 " bytes but shape %s of %s needs %" PRIu64, path, name, b, en, en - b, shp,
                  DTYPES[dt].name, need);
        return -1;
    }
    if (grow(&st->t, &st->cap, st->n + 1, sizeof(st_tensor))) goto oom;
    st_tensor *t = &st->t[st->n];
    t->name = hb_strdup(name);
    t->shape = hb_malloc(sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    if (!t->name || !t->shape) { free(t->name); free(t->shape); goto oom; }
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->dtype = (hb_st_dtype)dt;
    t->ndim = ndim;
    t->numel = (int64_t)numel;
    t->data = data0 + b;
    t->nbytes = (size_t)need;
    t->file = file;
    st->n++;
    return 0;
oom:
    hb_errfmt(err, errlen, "%s: out of memory", path);
    return -1;
}

typedef struct { uint64_t b, e; int i; } st_range;
static int cmp_range(const void *x, const void *y) {
    const st_range *a = x, *b = y;
    return a->b < b->b ? -1 : a->b > b->b ? 1 : a->i - b->i;
}

/* The byte ranges of the tensors st->t[first..n) (one file, data section at data0) must not overlap, as
 * the format requires: two tensors sharing bytes would alias each other. Empty tensors hold no bytes. */
static int check_overlap(hb_safetensors_t *st, int first, const char *path, const unsigned char *data0, char *err,
                         size_t errlen) {
    int n = st->n - first, k = 0;
    if (n < 2) return 0;
    st_range *r = hb_malloc(sizeof *r * (size_t)n);
    if (!r) { hb_errfmt(err, errlen, "%s: out of memory", path); return -1; }
    for (int i = first; i < st->n; i++)
        if (st->t[i].nbytes) {
            uint64_t b = (uint64_t)(st->t[i].data - data0);
            r[k++] = (st_range){b, b + st->t[i].nbytes, i};
        }
    qsort(r, (size_t)k, sizeof *r, cmp_range);
    for (int j = 1; j < k; j++)
        if (r[j].b < r[j - 1].e) {
            const st_range *a = &r[j - 1], *b = &r[j];
            hb_errfmt(err, errlen, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                      ") overlap in the data section (the format forbids it)", path, st->t[a->i].name, a->b, a->e,
                      st->t[b->i].name, b->b, b->e);
            free(r);
            return -1;
        }
    free(r);
    return 0;
}

/* Map path, validate its header, and append its tensors and metadata to st. */
static int load_file(hb_safetensors_t *st, const char *path, char *err, size_t errlen) {
    struct stat sb;
    int fd = hb_open_regular(path, &sb, err, errlen);   /* a FIFO or device is refused, never read */
    if (fd < 0) return -1;
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        if (size == 0) hb_errfmt(err, errlen, "%s: file is empty (a safetensors file starts with an "
                                 "8-byte header length)", path);
        else hb_errfmt(err, errlen, "%s: file is too short (%zu bytes) to hold the 8-byte header "
                       "length", path, size);
        return -1;
    }
    if (grow(&st->files, &st->capfiles, st->nfiles + 1, sizeof(st_file))) {
        close(fd);
        hb_errfmt(err, errlen, "%s: out of memory", path);
        return -1;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        hb_errfmt(err, errlen, "%s: cannot map: %s", path, strerror(map_errno));
        return -1;
    }
    int file = st->nfiles;
    st->files[file].map = map;          /* registered now so close() unmaps it on any error below */
    st->files[file].size = size;
    st->files[file].path = hb_strdup(path);
    st->nfiles++;
    if (!st->files[file].path) { hb_errfmt(err, errlen, "%s: out of memory", path); return -1; }

    const unsigned char *p = map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > size - 8) {
        /* the value is not shown: the first 8 bytes of a file that is no safetensors file (a password
           file behind a hostile index) must never reach a message */
        hb_errfmt(err, errlen, "%s: not a safetensors file: its 8-byte header length is larger than the "
                  "file (%zu bytes)", path, size);
        return -1;
    }
    if (hlen > HB_ST_MAX_HEADER) {
        hb_errfmt(err, errlen, "%s: not a safetensors file: its header length is over the limit of %d "
                  "bytes", path, HB_ST_MAX_HEADER);
        return -1;
    }
    if (hlen == 0) { hb_errfmt(err, errlen, "%s: header is empty (length 0)", path); return -1; }
    size_t bad = utf8_bad_at(p + 8, (size_t)hlen);
    if (bad != hlen) {
        hb_errfmt(err, errlen, "%s: header is not valid UTF-8 (byte %zu of the header)", path, bad);
        return -1;
    }
    char *text = hb_malloc((size_t)hlen + 1);
    if (!text) { hb_errfmt(err, errlen, "%s: out of memory", path); return -1; }
    memcpy(text, p + 8, (size_t)hlen);
    text[hlen] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)hlen, &end, 0);
    if (!root) {
        size_t at = (end && end >= text && end <= text + hlen) ? (size_t)(end - text) : 0;
        hb_errfmt(err, errlen, "%s: header is not valid JSON (error near byte %zu of the header)",
                  path, at);
        free(text);
        return -1;
    }
    size_t at = (size_t)(end - text);
    while (at < hlen && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' || text[at] == '\r'))
        at++;
    free(text);
    int rc = -1;
    if (at < hlen) {
        hb_errfmt(err, errlen, "%s: header has data after the JSON value (byte %zu of the header)",
                  path, at);
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        hb_errfmt(err, errlen, "%s: header is %s, not a JSON object", path, json_kind(root));
        goto out;
    }
    const unsigned char *data0 = p + 8 + hlen;
    uint64_t dsize = size - 8 - hlen;
    int seen_meta = 0, first = st->n;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") != 0) {
            if (add_tensor(st, path, e, file, data0, dsize, err, errlen)) goto out;
            continue;
        }
        if (seen_meta++) {
            hb_errfmt(err, errlen, "%s: \"__metadata__\" appears twice in the header", path);
            goto out;
        }
        if (!cJSON_IsObject(e)) {
            hb_errfmt(err, errlen, "%s: __metadata__ is %s, not an object of strings", path, json_kind(e));
            goto out;
        }
        for (const cJSON *m = e->child; m; m = m->next) {
            if (!cJSON_IsString(m)) {
                hb_errfmt(err, errlen, "%s: __metadata__ value of '%s' is %s, not a string", path,
                          m->string, json_kind(m));
                goto out;
            }
            if (add_meta(st, m->string, m->valuestring, file)) {
                hb_errfmt(err, errlen, "%s: out of memory", path);
                goto out;
            }
        }
    }
    rc = check_overlap(st, first, path, data0, err, errlen);
out:
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- lookup tables */

/* By key, ties by index so that the first occurrence comes first. */
static int cmp_sorted(const void *a, const void *b) {
    const st_sorted *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Build the name indexes; reject duplicate tensor names (and duplicate metadata keys within one
 * file; across shards the first one is kept). index_path (the file itself for a single file) names
 * the handle in messages that concern several files. */
static int finish(hb_safetensors_t *st, const char *index_path, char *err, size_t errlen) {
    st->byname = hb_malloc(sizeof(st_sorted) * (size_t)(st->n ? st->n : 1));
    st->meta_byname = hb_malloc(sizeof(st_sorted) * (size_t)(st->nmeta ? st->nmeta : 1));
    if (!st->byname || !st->meta_byname) { hb_errfmt(err, errlen, "%s: out of memory", index_path); return -1; }
    for (int i = 0; i < st->n; i++) st->byname[i] = (st_sorted){st->t[i].name, i};
    qsort(st->byname, (size_t)st->n, sizeof(st_sorted), cmp_sorted);
    for (int i = 1; i < st->n; i++) {
        const st_tensor *a = &st->t[st->byname[i - 1].idx], *b = &st->t[st->byname[i].idx];
        if (strcmp(a->name, b->name) != 0) continue;
        if (a->file == b->file)
            hb_errfmt(err, errlen, "%s: tensor '%s' appears twice in the header",
                      st->files[a->file].path, a->name);
        else
            hb_errfmt(err, errlen, "%s: tensor '%s' appears in two shards, '%s' and '%s'", index_path,
                      a->name, st->files[a->file].path, st->files[b->file].path);
        return -1;
    }
    /* metadata: sorted by (key, position); positions grow with the file, so a run of one key lists
     * its files in order. Two of a run in one file is an error; across shards the first is kept. */
    for (int i = 0; i < st->nmeta; i++) st->meta_byname[i] = (st_sorted){st->mkey[i], i};
    qsort(st->meta_byname, (size_t)st->nmeta, sizeof(st_sorted), cmp_sorted);
    int drop = 0;
    for (int i = 1; i < st->nmeta; i++) {
        int a = st->meta_byname[i - 1].idx, b = st->meta_byname[i].idx;
        if (strcmp(st->mkey[a], st->mkey[b]) != 0) continue;
        if (st->mfile[a] == st->mfile[b]) {
            hb_errfmt(err, errlen, "%s: __metadata__ key '%s' appears twice",
                      st->files[st->mfile[a]].path, st->mkey[a]);
            return -1;
        }
        drop = 1;
    }
    if (drop) {                                    /* keep the first of each run, in header order */
        for (int i = 1; i < st->nmeta; i++) {
            int a = st->meta_byname[i - 1].idx, b = st->meta_byname[i].idx;
            if (strcmp(st->mkey[a], st->mkey[b]) == 0) st->mfile[b] = -1;
        }
        int k = 0;
        for (int i = 0; i < st->nmeta; i++) {
            if (st->mfile[i] < 0) { free(st->mkey[i]); free(st->mval[i]); continue; }
            st->mkey[k] = st->mkey[i]; st->mval[k] = st->mval[i]; st->mfile[k] = st->mfile[i]; k++;
        }
        st->nmeta = k;
        for (int i = 0; i < k; i++) st->meta_byname[i] = (st_sorted){st->mkey[i], i};
        qsort(st->meta_byname, (size_t)k, sizeof(st_sorted), cmp_sorted);
    }
    return 0;
}

static int find_sorted(const st_sorted *arr, int n, const char *key) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(arr[mid].key, key);
        if (c == 0) return arr[mid].idx;
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

/* ---------------------------------------------------------------- public reading API */

hb_safetensors_t *hb_safetensors_open(const char *path, char *err, size_t errlen) {
    if (!path) { hb_errfmt(err, errlen, "hb_safetensors_open: path is NULL"); return NULL; }
    hb_safetensors_t *st = hb_calloc(1, sizeof *st);
    if (!st) { hb_errfmt(err, errlen, "%s: out of memory", path); return NULL; }
    if (load_file(st, path, err, errlen) || finish(st, path, err, errlen)) {
        hb_safetensors_close(st);
        return NULL;
    }
    return st;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static char *join(const char *dir, size_t dirlen, const char *name) {
    size_t n = strlen(name);
    char *s = hb_malloc(dirlen + n + 1);
    if (!s) return NULL;
    memcpy(s, dir, dirlen);
    memcpy(s + dirlen, name, n + 1);
    return s;
}

hb_safetensors_t *hb_safetensors_open_index(const char *dir_or_index, char *err, size_t errlen) {
    if (!dir_or_index) { hb_errfmt(err, errlen, "hb_safetensors_open_index: path is NULL"); return NULL; }
    struct stat sb;
    if (stat(dir_or_index, &sb) != 0) {
        hb_errfmt(err, errlen, "%s: cannot open: %s", dir_or_index, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(sb.st_mode)) {                 /* a folder: index first, single file second */
        size_t dl = strlen(dir_or_index);
        char *dir = join(dir_or_index, dl, "/");
        char *idx = dir ? join(dir, dl + 1, "model.safetensors.index.json") : NULL;
        char *one = dir ? join(dir, dl + 1, "model.safetensors") : NULL;
        hb_safetensors_t *st = NULL;
        if (!idx || !one) hb_errfmt(err, errlen, "%s: out of memory", dir_or_index);
        else if (stat(idx, &sb) == 0) st = hb_safetensors_open_index(idx, err, errlen);
        else if (stat(one, &sb) == 0) st = hb_safetensors_open(one, err, errlen);
        else hb_errfmt(err, errlen, "%s: folder holds neither model.safetensors.index.json nor "
                       "model.safetensors", dir_or_index);
        free(dir); free(idx); free(one);
        return st;
    }
    size_t pl = strlen(dir_or_index);
    if (pl >= 12 && strcmp(dir_or_index + pl - 12, ".safetensors") == 0)
        return hb_safetensors_open(dir_or_index, err, errlen);     /* a plain file after all */
    const char *ipath = dir_or_index;
    cJSON *root = hb_json_read_file(ipath, err, errlen);
    if (!root) return NULL;
    hb_safetensors_t *st = NULL;
    const char **shards = NULL;
    char *spath = NULL, *realdir = NULL;
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(wm)) {
        hb_errfmt(err, errlen, "%s: \"weight_map\" is %s, not an object", ipath,
                  cJSON_IsObject(root) ? json_kind(wm) : "missing (the file is not a JSON object)");
        goto fail;
    }
    int nmap = 0;
    for (const cJSON *m = wm->child; m; m = m->next, nmap++) {
        if (!cJSON_IsString(m)) {
            hb_errfmt(err, errlen, "%s: weight_map entry '%s' is %s, not a shard file name", ipath,
                      m->string, json_kind(m));
            goto fail;
        }
        /* a shard is a file beside the index: a plain name, no directory part, no "..", not absolute */
        const char *v = m->valuestring;
        if (v[0] == '\0' || strchr(v, '/') || !strcmp(v, ".") || !strcmp(v, "..")) {
            hb_errfmt(err, errlen, "%s: weight_map entry '%s' names shard '%s', which is not the name of a "
                      "file in the checkpoint directory (no '/', no '..')", ipath, m->string, v);
            goto fail;
        }
    }
    /* distinct shard names, sorted; shard k becomes file k of the handle */
    shards = hb_malloc(sizeof(char *) * (size_t)(nmap ? nmap : 1));
    st = hb_calloc(1, sizeof *st);
    if (!shards || !st) { hb_errfmt(err, errlen, "%s: out of memory", ipath); goto fail; }
    int ns = 0;
    for (const cJSON *m = wm->child; m; m = m->next) shards[ns++] = m->valuestring;
    qsort(shards, (size_t)ns, sizeof(char *), cmp_str);
    int k = 0;
    for (int i = 0; i < ns; i++) if (k == 0 || strcmp(shards[k - 1], shards[i]) != 0) shards[k++] = shards[i];
    ns = k;
    const char *slash = strrchr(ipath, '/');
    size_t dirlen = slash ? (size_t)(slash - ipath) + 1 : 0;
    char *dirpath = dirlen ? join(ipath, dirlen, ".") : hb_strdup(".");
    realdir = dirpath ? realpath(dirpath, NULL) : NULL;
    free(dirpath);
    if (!realdir) { hb_errfmt(err, errlen, "%s: cannot resolve its directory: %s", ipath, strerror(errno)); goto fail; }
    for (int s = 0; s < ns; s++) {
        spath = join(ipath, dirlen, shards[s]);
        if (!spath) { hb_errfmt(err, errlen, "%s: out of memory", ipath); goto fail; }
        char inner[768];
        /* a shard that is a symbolic link must stay inside the checkpoint directory */
        char *real = realpath(spath, NULL);
        size_t rl = strlen(realdir);
        int inside = !real || (strncmp(real, realdir, rl) == 0 && (real[rl] == '/' || (rl == 1 && realdir[0] == '/')));
        free(real);
        if (!inside) {
            hb_errfmt(err, errlen, "%s: shard '%s' is a link to a file outside the checkpoint directory", ipath, shards[s]);
            goto fail;
        }
        if (load_file(st, spath, inner, sizeof inner)) {
            const char *first = "";
            for (const cJSON *m = wm->child; m; m = m->next)
                if (strcmp(m->valuestring, shards[s]) == 0) { first = m->string; break; }
            hb_errfmt(err, errlen, "%s: shard '%s' (holding '%s'): %s", ipath, shards[s], first, inner);
            goto fail;
        }
        free(spath);
        spath = NULL;
    }
    if (finish(st, ipath, err, errlen)) goto fail;
    for (const cJSON *m = wm->child; m; m = m->next) {
        int i = find_sorted(st->byname, st->n, m->string);
        const char **sh = bsearch(&m->valuestring, shards, (size_t)ns, sizeof(char *), cmp_str);
        if (i < 0 || !sh || st->t[i].file != (int)(sh - shards)) {
            hb_errfmt(err, errlen, "%s: tensor '%s' is mapped to shard '%s', which does not contain it",
                      ipath, m->string, m->valuestring);
            goto fail;
        }
    }
    free(shards);
    free(realdir);
    cJSON_Delete(root);
    return st;
fail:
    free(spath);
    free(realdir);
    free(shards);
    hb_safetensors_close(st);
    cJSON_Delete(root);
    return NULL;
}

static const st_tensor *at(const hb_safetensors_t *st, int i) {
    return (st && i >= 0 && i < st->n) ? &st->t[i] : NULL;
}

int hb_safetensors_count(const hb_safetensors_t *st) { return st ? st->n : 0; }

const char *hb_safetensors_name(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->name : NULL;
}

hb_st_dtype hb_safetensors_dtype(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->dtype : (hb_st_dtype)-1;
}

int hb_safetensors_ndim(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->ndim : -1;
}

const int64_t *hb_safetensors_shape(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->shape : NULL;
}

int64_t hb_safetensors_numel(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->numel : -1;
}

const void *hb_safetensors_data(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->data : NULL;
}

size_t hb_safetensors_nbytes(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? t->nbytes : 0;
}

int hb_safetensors_aligned(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? (uintptr_t)t->data % DTYPES[t->dtype].size == 0 : 0;
}

const char *hb_safetensors_file(const hb_safetensors_t *st, int i) {
    const st_tensor *t = at(st, i);
    return t ? st->files[t->file].path : NULL;
}

int hb_safetensors_find(const hb_safetensors_t *st, const char *name) {
    return (st && name) ? find_sorted(st->byname, st->n, name) : -1;
}

int hb_safetensors_meta_count(const hb_safetensors_t *st) { return st ? st->nmeta : 0; }

const char *hb_safetensors_meta_key(const hb_safetensors_t *st, int i) {
    return (st && i >= 0 && i < st->nmeta) ? st->mkey[i] : NULL;
}

const char *hb_safetensors_meta_value(const hb_safetensors_t *st, int i) {
    return (st && i >= 0 && i < st->nmeta) ? st->mval[i] : NULL;
}

const char *hb_safetensors_meta_get(const hb_safetensors_t *st, const char *key) {
    int i = (st && key) ? find_sorted(st->meta_byname, st->nmeta, key) : -1;
    return i >= 0 ? st->mval[i] : NULL;
}

/* ---------------------------------------------------------------- writing */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 1024;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = hb_realloc(b->p, nc);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

/* A JSON string literal, escaped the way serde_json does it. */
static void sb_json(sbuf *b, const char *s) {
    sb_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        const char *r = NULL;
        switch (c) {
        case '"': r = "\\\""; break;
        case '\\': r = "\\\\"; break;
        case '\b': r = "\\b"; break;
        case '\f': r = "\\f"; break;
        case '\n': r = "\\n"; break;
        case '\r': r = "\\r"; break;
        case '\t': r = "\\t"; break;
        default:
            if (c < 0x20) { snprintf(esc, sizeof esc, "\\u%04x", c); r = esc; }
        }
        if (r) sb_str(b, r); else sb_put(b, (const char *)&c, 1);
    }
    sb_put(b, "\"", 1);
}

static void sb_u64(sbuf *b, uint64_t v) {
    char num[24];
    snprintf(num, sizeof num, "%" PRIu64, v);
    sb_str(b, num);
}

/* Writer order: dtype rank descending, then name (byte order). */
static int cmp_write(const void *a, const void *b) {
    const hb_st_entry *x = *(const hb_st_entry *const *)a, *y = *(const hb_st_entry *const *)b;
    int rx = DTYPES[x->dtype].rank, ry = DTYPES[y->dtype].rank;
    if (rx != ry) return ry - rx;
    return strcmp(x->name, y->name);
}

static int valid_utf8(const char *s) {
    size_t n = strlen(s);
    return utf8_bad_at((const unsigned char *)s, n) == n;
}

int hb_safetensors_write(const char *path, int n, const hb_st_entry *entries,
                         int nmeta, const char **meta_keys, const char **meta_vals,
                         char *err, size_t errlen) {
    if (!path) { hb_errfmt(err, errlen, "hb_safetensors_write: path is NULL"); return -1; }
    if (n < 0 || nmeta < 0 || (n > 0 && !entries) || (nmeta > 0 && (!meta_keys || !meta_vals))) {
        hb_errfmt(err, errlen, "%s: bad arguments (n = %d, nmeta = %d, or a NULL array)", path, n, nmeta);
        return -1;
    }
    /* check every argument before allocating anything */
    for (int i = 0; i < n; i++) {
        const hb_st_entry *e = &entries[i];
        if (!e->name) { hb_errfmt(err, errlen, "%s: tensor %d has no name", path, i); return -1; }
        const char *nm = e->name;
        if (strcmp(nm, "__metadata__") == 0) {
            hb_errfmt(err, errlen, "%s: tensor name '__metadata__' is reserved", path);
            return -1;
        }
        if (!valid_utf8(nm)) {
            hb_errfmt(err, errlen, "%s: tensor name '%s' is not valid UTF-8", path, nm);
            return -1;
        }
        if (!dtype_ok((int)e->dtype)) {
            hb_errfmt(err, errlen, "%s: tensor '%s': unknown dtype %d", path, nm, (int)e->dtype);
            return -1;
        }
        if (e->ndim < 0 || e->ndim > HB_ST_MAX_DIMS || (e->ndim > 0 && !e->shape)) {
            hb_errfmt(err, errlen, "%s: tensor '%s': ndim %d is outside [0, %d] or shape is NULL", path,
                      nm, e->ndim, HB_ST_MAX_DIMS);
            return -1;
        }
        uint64_t numel = 1;
        int overflow = 0, zero = 0;
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0) {
                hb_errfmt(err, errlen, "%s: tensor '%s': shape[%d] = %" PRId64 " is negative", path, nm,
                          d, e->shape[d]);
                return -1;
            }
            uint64_t v = (uint64_t)e->shape[d];
            if (v == 0) zero = 1;
            else if (numel > (uint64_t)INT64_MAX / v) overflow = 1;
            else numel *= v;
        }
        if (zero) numel = 0, overflow = 0;
        if (overflow || numel > (uint64_t)INT64_MAX / DTYPES[e->dtype].size) {
            hb_errfmt(err, errlen, "%s: tensor '%s': shape overflows 64-bit sizes", path, nm);
            return -1;
        }
        if (numel > 0 && !e->data) {
            hb_errfmt(err, errlen, "%s: tensor '%s': data is NULL but the tensor holds %" PRIu64
                      " bytes", path, nm, numel * DTYPES[e->dtype].size);
            return -1;
        }
    }
    for (int i = 0; i < nmeta; i++) {
        if (!meta_keys[i] || !meta_vals[i]) {
            hb_errfmt(err, errlen, "%s: metadata pair %d has a NULL key or value", path, i);
            return -1;
        }
        if (!valid_utf8(meta_keys[i]) || !valid_utf8(meta_vals[i])) {
            hb_errfmt(err, errlen, "%s: metadata key '%s' or its value is not valid UTF-8", path,
                      meta_keys[i]);
            return -1;
        }
    }

    int rc = -1;
    sbuf hb = {0};
    const hb_st_entry **ord = hb_malloc(sizeof(*ord) * (size_t)(n ? n : 1));
    st_sorted *mk = hb_malloc(sizeof(st_sorted) * (size_t)(nmeta ? nmeta : 1));
    if (!ord || !mk) { hb_errfmt(err, errlen, "%s: out of memory", path); goto out; }
    for (int i = 0; i < n; i++) ord[i] = &entries[i];
    qsort(ord, (size_t)n, sizeof(*ord), cmp_write);
    for (int i = 1; i < n; i++) {
        if (strcmp(ord[i - 1]->name, ord[i]->name) == 0) {
            hb_errfmt(err, errlen, "%s: tensor name '%s' is given twice", path, ord[i]->name);
            goto out;
        }
    }
    /* metadata keys sorted, remembering each key's slot for its value */
    for (int i = 0; i < nmeta; i++) mk[i] = (st_sorted){meta_keys[i], i};
    qsort(mk, (size_t)nmeta, sizeof(st_sorted), cmp_sorted);
    for (int i = 1; i < nmeta; i++) {
        if (strcmp(mk[i - 1].key, mk[i].key) == 0) {
            hb_errfmt(err, errlen, "%s: metadata key '%s' is given twice", path, mk[i].key);
            goto out;
        }
    }

    /* header */
    sb_str(&hb, "{");
    if (nmeta > 0) {
        sb_str(&hb, "\"__metadata__\":{");
        for (int i = 0; i < nmeta; i++) {
            if (i) sb_str(&hb, ",");
            sb_json(&hb, mk[i].key);
            sb_str(&hb, ":");
            sb_json(&hb, meta_vals[mk[i].idx]);
        }
        sb_str(&hb, "}");
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const hb_st_entry *e = ord[i];
        uint64_t nb = DTYPES[e->dtype].size;
        for (int d = 0; d < e->ndim; d++) nb *= (uint64_t)e->shape[d];
        if (i || nmeta > 0) sb_str(&hb, ",");
        sb_json(&hb, e->name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, DTYPES[e->dtype].name);
        sb_str(&hb, "\",\"shape\":[");
        for (int d = 0; d < e->ndim; d++) {
            if (d) sb_str(&hb, ",");
            sb_u64(&hb, (uint64_t)e->shape[d]);
        }
        sb_str(&hb, "],\"data_offsets\":[");
        sb_u64(&hb, off);
        sb_str(&hb, ",");
        sb_u64(&hb, off + nb);
        sb_str(&hb, "]}");
        off += nb;
    }
    sb_str(&hb, "}");
    while (!hb.oom && hb.n % 8) sb_str(&hb, " ");
    if (hb.oom) { hb_errfmt(err, errlen, "%s: out of memory building the header", path); goto out; }
    if (hb.n > HB_ST_MAX_HEADER) {
        hb_errfmt(err, errlen, "%s: header would be %zu bytes, over the limit of %d", path, hb.n,
                  HB_ST_MAX_HEADER);
        goto out;
    }

    /* file */
    char *tmp = NULL;
    FILE *f = hb_atomic_open(path, &tmp, err, errlen);
    if (!f) goto out;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hb.n >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hb.p, 1, hb.n, f) == hb.n;
    for (int i = 0; ok && i < n; i++) {
        const hb_st_entry *e = ord[i];
        size_t nb = DTYPES[e->dtype].size;
        for (int d = 0; d < e->ndim; d++) nb *= (size_t)e->shape[d];
        if (nb && fwrite(e->data, 1, nb, f) != nb) ok = 0;
    }
    if (!ok) {
        int e = errno;
        hb_atomic_abort(f, tmp);
        hb_errfmt(err, errlen, "%s: write failed: %s", path, strerror(e));
        goto out;
    }
    rc = hb_atomic_commit(f, tmp, path, err, errlen);
out:
    free(hb.p);
    free(ord);
    free(mk);
    return rc;
}
