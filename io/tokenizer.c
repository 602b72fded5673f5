/* tokenizer.c — byte, GPT-2 and Hugging Face BPE tokenizers, BPE training, tokenizer.json output.
 *
 * One representation serves every kind. Ids 0..n-1 (holes allowed) each have the string the file
 * gives them (str: id_to_token, save) and the bytes they decode to (raw). A merge table maps
 * (left id, right id) -> (rank, merged id). Added tokens are matched verbatim in the input first.
 *
 *   encode: split the input on added tokens; per piece: byte-level -> GPT-2 pre-tokenisation into
 *           words whose bytes are the initial symbols; sentencepiece style -> normalise (Prepend "▁",
 *           Replace " " by "▁", or Metaspace), the characters are the initial symbols (<0xNN> byte
 *           tokens or unk for those the vocabulary lacks); then BPE each word in id space.
 *   decode: concatenate raw bytes (and strip the leading space a Prepend normaliser added).
 *
 * BPE on a word: symbols in a linked list, candidate merges in a binary heap ordered by (rank,
 * position). For vocabularies whose merges only combine tokens made by earlier merges (all real ones)
 * this is GPT-2's "merge every occurrence of the best pair, repeat", in O(n log n) rather than O(n^2),
 * which matters for sentencepiece-style inputs where a whole text segment is one word. Results for
 * words of up to CACHE_MAX_WORD bytes are cached (a mutex guards the cache).
 *
 * GPT-2 pre-tokenisation is the regex
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * matched by hand (gpt2_next). Approximations, all at the edges of Unicode:
 *   - \p{L} and \p{N} come from the tables below, generated from Unicode 17 (Node's /\p{L}/u and
 *     /\p{N}/u), with unassigned code points lying between two ranges of one class folded into it.
 *   - \s is the Unicode White_Space property, as in Oniguruma (Hugging Face tokenizers); JavaScript's
 *     \s differs at U+0085 (not space there) and U+FEFF (space there).
 *   - A byte that does not start a valid shortest-form UTF-8 sequence is one character of class
 *     "other" ([^\s\p{L}\p{N}]), so arbitrary bytes are split, encoded and decoded losslessly.
 *
 * Files are read with hb_json_read_file and written with hb_json_write_file (io/jsonfile.h:
 * messages name the file and the line; writes replace the file atomically).
 *
 * Training (hb_tokenizer_train_bpe): distinct pre-split words with counts; pair counts in a hash map,
 * each pair with the list of words containing it; a max-heap of (count, pair) with lazy deletion (an
 * entry whose count is stale is re-pushed with the current count). Merging a pair rewrites only the
 * words on its list. Ties: larger count first, then smaller (left id, right id).
 */
#define _POSIX_C_SOURCE 200809L
#include "tokenizer.h"
#include "../kernels/alloc.h"
#include "errfmt.h"
#include "jsonfile.h"
#include "readfile.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ID (1 << 24)            /* ids in a file must be below this */
#define CACHE_MAX_WORD 256          /* words up to this many bytes are cached */
#define CACHE_BUCKETS (1 << 16)
#define CACHE_MAX_ENTRIES 200000    /* the cache is emptied when it grows past this */
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define META "\xe2\x96\x81"         /* U+2581 "▁", sentencepiece's space */

/* ---- growable buffers ------------------------------------------------------------------------ */

typedef struct { char *p; size_t n, cap; } buf_t;            /* bytes, always NUL-terminated */
typedef struct { int64_t *v; size_t n, cap; } ivec_t;

static int buf_put(buf_t *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = hb_realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

static int iv_push(ivec_t *a, int64_t x) {
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 256;
        int64_t *v = hb_realloc(a->v, cap * sizeof *v);
        if (!v) return -1;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

/* Reads a whole regular file (at most max bytes) into a malloc'd NUL-terminated buffer. */
static char *read_file(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    return hb_read_file(path, max, len, err, errlen);
}

/* ---- hash maps --------------------------------------------------------------------------------- */

static uint64_t hash_bytes(const void *p, size_t n) {   /* FNV-1a */
    const uint8_t *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* Byte string -> int32 (>= 0). Keys are borrowed: they must outlive the map. */
typedef struct { const char *key; uint32_t len; int32_t val; } smslot_t;
typedef struct { smslot_t *slot; size_t cap, count; } strmap_t;

static int32_t sm_get(const strmap_t *m, const char *k, size_t n) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1;
    for (size_t i = hash_bytes(k, n) & mask;; i = (i + 1) & mask) {
        const smslot_t *s = &m->slot[i];
        if (!s->key) return -1;
        if (s->len == n && memcmp(s->key, k, n) == 0) return s->val;
    }
}

/* Inserts k -> val unless k is present. Returns 1 inserted, 0 already present, -1 out of memory. */
static int sm_put(strmap_t *m, const char *k, size_t n, int32_t val) {
    if (2 * (m->count + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 64;
        smslot_t *slot = hb_calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t j = 0; j < m->cap; j++) {
            if (!m->slot[j].key) continue;
            size_t i = hash_bytes(m->slot[j].key, m->slot[j].len) & (cap - 1);
            while (slot[i].key) i = (i + 1) & (cap - 1);
            slot[i] = m->slot[j];
        }
        free(m->slot);
        m->slot = slot;
        m->cap = cap;
    }
    size_t mask = m->cap - 1, i = hash_bytes(k, n) & mask;
    for (; m->slot[i].key; i = (i + 1) & mask)
        if (m->slot[i].len == n && memcmp(m->slot[i].key, k, n) == 0) return 0;
    m->slot[i] = (smslot_t){k, (uint32_t)n, val};
    m->count++;
    return 1;
}

/* (a, b) id pair -> two int32 values. */
#define PM_EMPTY UINT64_MAX
typedef struct { uint64_t key; int32_t v1, v2; } pmslot_t;
typedef struct { pmslot_t *slot; size_t cap, count; } pairmap_t;

static uint64_t pkey(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static pmslot_t *pm_get(const pairmap_t *m, int32_t a, int32_t b) {
    if (!m->cap) return NULL;
    uint64_t key = pkey(a, b);
    size_t mask = m->cap - 1;
    for (size_t i = mix64(key) & mask;; i = (i + 1) & mask) {
        if (m->slot[i].key == key) return &m->slot[i];
        if (m->slot[i].key == PM_EMPTY) return NULL;
    }
}

/* Finds or inserts (a, b); *created tells which. The pointer is valid until the next insert. */
static pmslot_t *pm_put(pairmap_t *m, int32_t a, int32_t b, int *created) {
    if (2 * (m->count + 1) > m->cap) {
        size_t cap = m->cap ? 2 * m->cap : 256;
        pmslot_t *slot = hb_malloc(cap * sizeof *slot);
        if (!slot) return NULL;
        for (size_t i = 0; i < cap; i++) slot[i].key = PM_EMPTY;
        for (size_t j = 0; j < m->cap; j++) {
            if (m->slot[j].key == PM_EMPTY) continue;
            size_t i = mix64(m->slot[j].key) & (cap - 1);
            while (slot[i].key != PM_EMPTY) i = (i + 1) & (cap - 1);
            slot[i] = m->slot[j];
        }
        free(m->slot);
        m->slot = slot;
        m->cap = cap;
    }
    uint64_t key = pkey(a, b);
    size_t mask = m->cap - 1, i = mix64(key) & mask;
    for (; m->slot[i].key != PM_EMPTY; i = (i + 1) & mask)
        if (m->slot[i].key == key) {
            *created = 0;
            return &m->slot[i];
        }
    m->slot[i] = (pmslot_t){key, 0, 0};
    m->count++;
    *created = 1;
    return &m->slot[i];
}

/* ---- UTF-8, character classes, the GPT-2 byte <-> character map -------------------------------- */

/* Decodes the character at s (n > 0 bytes left): returns its length and sets *cp. A byte that does
 * not start a valid shortest-form sequence is a 1-byte character with *cp = UINT32_MAX. */
static size_t u8dec(const uint8_t *s, size_t n, uint32_t *cp) {
    uint8_t c = s[0];
    size_t len;
    uint32_t v, min;
    *cp = UINT32_MAX;
    if (c < 0x80) { *cp = c; return 1; }
    if ((c & 0xE0) == 0xC0) { len = 2; v = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { len = 3; v = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 1;
    if (len > n) return 1;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 1;
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 1;
    *cp = v;
    return len;
}

static size_t u8enc(uint32_t cp, char *out) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes map in
 * order to U+0100..U+0143 (so space is "Ġ" U+0120 and newline "Ċ" U+010A). */
static uint32_t byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    if (b <= 0x20) return 0x100 + b;
    if (b <= 0xA0) return 0x121 + (b - 0x7F);
    return 0x143; /* 0xAD */
}

static int cp_to_byte(uint32_t cp) {
    if ((cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF)) return cp;
    if (cp >= 0x100 && cp <= 0x120) return cp - 0x100;
    if (cp >= 0x121 && cp <= 0x142) return cp - 0x121 + 0x7F;
    if (cp == 0x143) return 0xAD;
    return -1;
}

enum { C_OTHER, C_LETTER, C_NUMBER, C_SPACE };
typedef struct { uint32_t lo, hi; } urange_t;

/* \p{L} (letters) and \p{N} (numbers), Unicode 17, generated with Node:
 *   for each code point c: /\p{L}/u, /\p{N}/u and /\p{Cn}/u (unassigned) on String.fromCodePoint(c);
 *   runs of one class, merged across gaps that are entirely unassigned. */
static const urange_t letters[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xAA, 0xAA}, {0xB5, 0xB5}, {0xBA, 0xBA}, {0xC0, 0xD6}, {0xD8, 0xF6},
    {0xF8, 0x2C1}, {0x2C6, 0x2D1}, {0x2E0, 0x2E4}, {0x2EC, 0x2EC}, {0x2EE, 0x2EE}, {0x370, 0x374},
    {0x376, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x559},
    {0x560, 0x588}, {0x5D0, 0x5F2}, {0x620, 0x64A}, {0x66E, 0x66F}, {0x671, 0x6D3}, {0x6D5, 0x6D5},
    {0x6E5, 0x6E6}, {0x6EE, 0x6EF}, {0x6FA, 0x6FC}, {0x6FF, 0x6FF}, {0x710, 0x710}, {0x712, 0x72F},
    {0x74D, 0x7A5}, {0x7B1, 0x7B1}, {0x7CA, 0x7EA}, {0x7F4, 0x7F5}, {0x7FA, 0x7FA}, {0x800, 0x815},
    {0x81A, 0x81A}, {0x824, 0x824}, {0x828, 0x828}, {0x840, 0x858}, {0x860, 0x887}, {0x889, 0x88F},
    {0x8A0, 0x8C9}, {0x904, 0x939}, {0x93D, 0x93D}, {0x950, 0x950}, {0x958, 0x961}, {0x971, 0x980},
    {0x985, 0x9B9}, {0x9BD, 0x9BD}, {0x9CE, 0x9CE}, {0x9DC, 0x9E1}, {0x9F0, 0x9F1}, {0x9FC, 0x9FC},
    {0xA05, 0xA39}, {0xA59, 0xA5E}, {0xA72, 0xA74}, {0xA85, 0xAB9}, {0xABD, 0xABD}, {0xAD0, 0xAE1},
    {0xAF9, 0xAF9}, {0xB05, 0xB39}, {0xB3D, 0xB3D}, {0xB5C, 0xB61}, {0xB71, 0xB71}, {0xB83, 0xBB9},
    {0xBD0, 0xBD0}, {0xC05, 0xC39}, {0xC3D, 0xC3D}, {0xC58, 0xC61}, {0xC80, 0xC80}, {0xC85, 0xCB9},
    {0xCBD, 0xCBD}, {0xCDC, 0xCE1}, {0xCF1, 0xCF2}, {0xD04, 0xD3A}, {0xD3D, 0xD3D}, {0xD4E, 0xD4E},
    {0xD54, 0xD56}, {0xD5F, 0xD61}, {0xD7A, 0xD7F}, {0xD85, 0xDC6}, {0xE01, 0xE30}, {0xE32, 0xE33},
    {0xE40, 0xE46}, {0xE81, 0xEB0}, {0xEB2, 0xEB3}, {0xEBD, 0xEC6}, {0xEDC, 0xF00}, {0xF40, 0xF6C},
    {0xF88, 0xF8C}, {0x1000, 0x102A}, {0x103F, 0x103F}, {0x1050, 0x1055}, {0x105A, 0x105D},
    {0x1061, 0x1061}, {0x1065, 0x1066}, {0x106E, 0x1070}, {0x1075, 0x1081}, {0x108E, 0x108E},
    {0x10A0, 0x10FA}, {0x10FC, 0x135A}, {0x1380, 0x138F}, {0x13A0, 0x13FD}, {0x1401, 0x166C},
    {0x166F, 0x167F}, {0x1681, 0x169A}, {0x16A0, 0x16EA}, {0x16F1, 0x1711}, {0x171F, 0x1731},
    {0x1740, 0x1751}, {0x1760, 0x1770}, {0x1780, 0x17B3}, {0x17D7, 0x17D7}, {0x17DC, 0x17DC},
    {0x1820, 0x1884}, {0x1887, 0x18A8}, {0x18AA, 0x191E}, {0x1950, 0x19C9}, {0x1A00, 0x1A16},
    {0x1A20, 0x1A54}, {0x1AA7, 0x1AA7}, {0x1B05, 0x1B33}, {0x1B45, 0x1B4C}, {0x1B83, 0x1BA0},
    {0x1BAE, 0x1BAF}, {0x1BBA, 0x1BE5}, {0x1C00, 0x1C23}, {0x1C4D, 0x1C4F}, {0x1C5A, 0x1C7D},
    {0x1C80, 0x1CBF}, {0x1CE9, 0x1CEC}, {0x1CEE, 0x1CF3}, {0x1CF5, 0x1CF6}, {0x1CFA, 0x1DBF},
    {0x1E00, 0x1FBC}, {0x1FBE, 0x1FBE}, {0x1FC2, 0x1FCC}, {0x1FD0, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F}, {0x2090, 0x209C}, {0x2102, 0x2102},
    {0x2107, 0x2107}, {0x210A, 0x2113}, {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124},
    {0x2126, 0x2126}, {0x2128, 0x2128}, {0x212A, 0x212D}, {0x212F, 0x2139}, {0x213C, 0x213F},
    {0x2145, 0x2149}, {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0x2D00, 0x2D6F}, {0x2D80, 0x2DDE}, {0x2E2F, 0x2E2F}, {0x3005, 0x3006},
    {0x3031, 0x3035}, {0x303B, 0x303C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA},
    {0x30FC, 0x318E}, {0x31A0, 0x31BF}, {0x31F0, 0x31FF}, {0x3400, 0x4DBF}, {0x4E00, 0xA48C},
    {0xA4D0, 0xA4FD}, {0xA500, 0xA60C}, {0xA610, 0xA61F}, {0xA62A, 0xA66E}, {0xA67F, 0xA69D},
    {0xA6A0, 0xA6E5}, {0xA717, 0xA71F}, {0xA722, 0xA788}, {0xA78B, 0xA801}, {0xA803, 0xA805},
    {0xA807, 0xA80A}, {0xA80C, 0xA822}, {0xA840, 0xA873}, {0xA882, 0xA8B3}, {0xA8F2, 0xA8F7},
    {0xA8FB, 0xA8FB}, {0xA8FD, 0xA8FE}, {0xA90A, 0xA925}, {0xA930, 0xA946}, {0xA960, 0xA97C},
    {0xA984, 0xA9B2}, {0xA9CF, 0xA9CF}, {0xA9E0, 0xA9E4}, {0xA9E6, 0xA9EF}, {0xA9FA, 0xAA28},
    {0xAA40, 0xAA42}, {0xAA44, 0xAA4B}, {0xAA60, 0xAA76}, {0xAA7A, 0xAA7A}, {0xAA7E, 0xAAAF},
    {0xAAB1, 0xAAB1}, {0xAAB5, 0xAAB6}, {0xAAB9, 0xAABD}, {0xAAC0, 0xAAC0}, {0xAAC2, 0xAADD},
    {0xAAE0, 0xAAEA}, {0xAAF2, 0xAAF4}, {0xAB01, 0xAB5A}, {0xAB5C, 0xAB69}, {0xAB70, 0xABE2},
    {0xAC00, 0xD7FB}, {0xF900, 0xFB1D}, {0xFB1F, 0xFB28}, {0xFB2A, 0xFBB1}, {0xFBD3, 0xFD3D},
    {0xFD50, 0xFD8F}, {0xFD92, 0xFDC7}, {0xFDF0, 0xFDFB}, {0xFE70, 0xFEFC}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0xFF66, 0xFFDC}, {0x10000, 0x100FA}, {0x10280, 0x102D0}, {0x10300, 0x1031F},
    {0x1032D, 0x10340}, {0x10342, 0x10349}, {0x10350, 0x10375}, {0x10380, 0x1039D}, {0x103A0, 0x103CF},
    {0x10400, 0x1049D}, {0x104B0, 0x10563}, {0x10570, 0x10855}, {0x10860, 0x10876}, {0x10880, 0x1089E},
    {0x108E0, 0x108F5}, {0x10900, 0x10915}, {0x10920, 0x10939}, {0x10940, 0x109B7}, {0x109BE, 0x109BF},
    {0x10A00, 0x10A00}, {0x10A10, 0x10A35}, {0x10A60, 0x10A7C}, {0x10A80, 0x10A9C}, {0x10AC0, 0x10AC7},
    {0x10AC9, 0x10AE4}, {0x10B00, 0x10B35}, {0x10B40, 0x10B55}, {0x10B60, 0x10B72}, {0x10B80, 0x10B91},
    {0x10C00, 0x10CF2}, {0x10D00, 0x10D23}, {0x10D4A, 0x10D65}, {0x10D6F, 0x10D85}, {0x10E80, 0x10EA9},
    {0x10EB0, 0x10EC7}, {0x10F00, 0x10F1C}, {0x10F27, 0x10F45}, {0x10F70, 0x10F81}, {0x10FB0, 0x10FC4},
    {0x10FE0, 0x10FF6}, {0x11003, 0x11037}, {0x11071, 0x11072}, {0x11075, 0x11075}, {0x11083, 0x110AF},
    {0x110D0, 0x110E8}, {0x11103, 0x11126}, {0x11144, 0x11144}, {0x11147, 0x11172}, {0x11176, 0x11176},
    {0x11183, 0x111B2}, {0x111C1, 0x111C4}, {0x111DA, 0x111DA}, {0x111DC, 0x111DC}, {0x11200, 0x1122B},
    {0x1123F, 0x11240}, {0x11280, 0x112A8}, {0x112B0, 0x112DE}, {0x11305, 0x11339}, {0x1133D, 0x1133D},
    {0x11350, 0x11350}, {0x1135D, 0x11361}, {0x11380, 0x113B7}, {0x113D1, 0x113D1}, {0x113D3, 0x113D3},
    {0x11400, 0x11434}, {0x11447, 0x1144A}, {0x1145F, 0x114AF}, {0x114C4, 0x114C5}, {0x114C7, 0x114C7},
    {0x11580, 0x115AE}, {0x115D8, 0x115DB}, {0x11600, 0x1162F}, {0x11644, 0x11644}, {0x11680, 0x116AA},
    {0x116B8, 0x116B8}, {0x11700, 0x1171A}, {0x11740, 0x1182B}, {0x118A0, 0x118DF}, {0x118FF, 0x1192F},
    {0x1193F, 0x1193F}, {0x11941, 0x11941}, {0x119A0, 0x119D0}, {0x119E1, 0x119E1}, {0x119E3, 0x119E3},
    {0x11A00, 0x11A00}, {0x11A0B, 0x11A32}, {0x11A3A, 0x11A3A}, {0x11A50, 0x11A50}, {0x11A5C, 0x11A89},
    {0x11A9D, 0x11A9D}, {0x11AB0, 0x11AF8}, {0x11BC0, 0x11BE0}, {0x11C00, 0x11C2E}, {0x11C40, 0x11C40},
    {0x11C72, 0x11C8F}, {0x11D00, 0x11D30}, {0x11D46, 0x11D46}, {0x11D60, 0x11D89}, {0x11D98, 0x11D98},
    {0x11DB0, 0x11DDB}, {0x11EE0, 0x11EF2}, {0x11F02, 0x11F02}, {0x11F04, 0x11F33}, {0x11FB0, 0x11FB0},
    {0x12000, 0x12399}, {0x12480, 0x12FF0}, {0x13000, 0x1342F}, {0x13441, 0x13446}, {0x13460, 0x1611D},
    {0x16800, 0x16A5E}, {0x16A70, 0x16ABE}, {0x16AD0, 0x16AED}, {0x16B00, 0x16B2F}, {0x16B40, 0x16B43},
    {0x16B63, 0x16D6C}, {0x16E40, 0x16E7F}, {0x16EA0, 0x16F4A}, {0x16F50, 0x16F50}, {0x16F93, 0x16FE1},
    {0x16FE3, 0x16FE3}, {0x16FF2, 0x16FF3}, {0x17000, 0x1BC99}, {0x1D400, 0x1D6C0}, {0x1D6C2, 0x1D6DA},
    {0x1D6DC, 0x1D6FA}, {0x1D6FC, 0x1D714}, {0x1D716, 0x1D734}, {0x1D736, 0x1D74E}, {0x1D750, 0x1D76E},
    {0x1D770, 0x1D788}, {0x1D78A, 0x1D7A8}, {0x1D7AA, 0x1D7C2}, {0x1D7C4, 0x1D7CB}, {0x1DF00, 0x1DF2A},
    {0x1E030, 0x1E06D}, {0x1E100, 0x1E12C}, {0x1E137, 0x1E13D}, {0x1E14E, 0x1E14E}, {0x1E290, 0x1E2AD},
    {0x1E2C0, 0x1E2EB}, {0x1E4D0, 0x1E4EB}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0}, {0x1E6C0, 0x1E6E2},
    {0x1E6E4, 0x1E6E5}, {0x1E6E7, 0x1E6ED}, {0x1E6F0, 0x1E6F4}, {0x1E6FE, 0x1E8C4}, {0x1E900, 0x1E943},
    {0x1E94B, 0x1E94B}, {0x1EE00, 0x1EEBB}, {0x20000, 0x33479},
};
static const urange_t numbers[] = {
    {0x30, 0x39}, {0xB2, 0xB3}, {0xB9, 0xB9}, {0xBC, 0xBE}, {0x660, 0x669}, {0x6F0, 0x6F9},
    {0x7C0, 0x7C9}, {0x966, 0x96F}, {0x9E6, 0x9EF}, {0x9F4, 0x9F9}, {0xA66, 0xA6F}, {0xAE6, 0xAEF},
    {0xB66, 0xB6F}, {0xB72, 0xB77}, {0xBE6, 0xBF2}, {0xC66, 0xC6F}, {0xC78, 0xC7E}, {0xCE6, 0xCEF},
    {0xD58, 0xD5E}, {0xD66, 0xD78}, {0xDE6, 0xDEF}, {0xE50, 0xE59}, {0xED0, 0xED9}, {0xF20, 0xF33},
    {0x1040, 0x1049}, {0x1090, 0x1099}, {0x1369, 0x137C}, {0x16EE, 0x16F0}, {0x17E0, 0x17F9},
    {0x1810, 0x1819}, {0x1946, 0x194F}, {0x19D0, 0x19DA}, {0x1A80, 0x1A99}, {0x1B50, 0x1B59},
    {0x1BB0, 0x1BB9}, {0x1C40, 0x1C49}, {0x1C50, 0x1C59}, {0x2070, 0x2070}, {0x2074, 0x2079},
    {0x2080, 0x2089}, {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF},
    {0x2776, 0x2793}, {0x2CFD, 0x2CFD}, {0x3007, 0x3007}, {0x3021, 0x3029}, {0x3038, 0x303A},
    {0x3192, 0x3195}, {0x3220, 0x3229}, {0x3248, 0x324F}, {0x3251, 0x325F}, {0x3280, 0x3289},
    {0x32B1, 0x32BF}, {0xA620, 0xA629}, {0xA6E6, 0xA6EF}, {0xA830, 0xA835}, {0xA8D0, 0xA8D9},
    {0xA900, 0xA909}, {0xA9D0, 0xA9D9}, {0xA9F0, 0xA9F9}, {0xAA50, 0xAA59}, {0xABF0, 0xABF9},
    {0xFF10, 0xFF19}, {0x10107, 0x10133}, {0x10140, 0x10178}, {0x1018A, 0x1018B}, {0x102E1, 0x102FB},
    {0x10320, 0x10323}, {0x10341, 0x10341}, {0x1034A, 0x1034A}, {0x103D1, 0x103D5}, {0x104A0, 0x104A9},
    {0x10858, 0x1085F}, {0x10879, 0x1087F}, {0x108A7, 0x108AF}, {0x108FB, 0x108FF}, {0x10916, 0x1091B},
    {0x109BC, 0x109BD}, {0x109C0, 0x109FF}, {0x10A40, 0x10A48}, {0x10A7D, 0x10A7E}, {0x10A9D, 0x10A9F},
    {0x10AEB, 0x10AEF}, {0x10B58, 0x10B5F}, {0x10B78, 0x10B7F}, {0x10BA9, 0x10BAF}, {0x10CFA, 0x10CFF},
    {0x10D30, 0x10D49}, {0x10E60, 0x10E7E}, {0x10F1D, 0x10F26}, {0x10F51, 0x10F54}, {0x10FC5, 0x10FCB},
    {0x11052, 0x1106F}, {0x110F0, 0x110F9}, {0x11136, 0x1113F}, {0x111D0, 0x111D9}, {0x111E1, 0x111F4},
    {0x112F0, 0x112F9}, {0x11450, 0x11459}, {0x114D0, 0x114D9}, {0x11650, 0x11659}, {0x116C0, 0x116E3},
    {0x11730, 0x1173B}, {0x118E0, 0x118F2}, {0x11950, 0x11959}, {0x11BF0, 0x11BF9}, {0x11C50, 0x11C6C},
    {0x11D50, 0x11D59}, {0x11DA0, 0x11DA9}, {0x11DE0, 0x11DE9}, {0x11F50, 0x11F59}, {0x11FC0, 0x11FD4},
    {0x12400, 0x1246E}, {0x16130, 0x16139}, {0x16A60, 0x16A69}, {0x16AC0, 0x16AC9}, {0x16B50, 0x16B61},
    {0x16D70, 0x16D79}, {0x16E80, 0x16E96}, {0x16FF4, 0x16FF6}, {0x1CCF0, 0x1CCF9}, {0x1D2C0, 0x1D2F3},
    {0x1D360, 0x1D378}, {0x1D7CE, 0x1D7FF}, {0x1E140, 0x1E149}, {0x1E2F0, 0x1E2F9}, {0x1E4F0, 0x1E4F9},
    {0x1E5F1, 0x1E5FA}, {0x1E8C7, 0x1E8CF}, {0x1E950, 0x1E959}, {0x1EC71, 0x1ECAB}, {0x1ECAD, 0x1ECAF},
    {0x1ECB1, 0x1ED2D}, {0x1ED2F, 0x1ED3D}, {0x1F100, 0x1F10C}, {0x1FBF0, 0x1FBF9},
};

static int in_ranges(const urange_t *r, size_t n, uint32_t cp) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return 1;
    }
    return 0;
}

static int uclass(uint32_t cp) {
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') return C_LETTER;
        if (cp >= '0' && cp <= '9') return C_NUMBER;
        if (cp == ' ' || (cp >= 0x09 && cp <= 0x0D)) return C_SPACE;
        return C_OTHER;
    }
    if (cp == UINT32_MAX) return C_OTHER;
    if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
        cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return C_SPACE;
    if (in_ranges(letters, sizeof letters / sizeof *letters, cp)) return C_LETTER;
    if (in_ranges(numbers, sizeof numbers / sizeof *numbers, cp)) return C_NUMBER;
    return C_OTHER;
}

static int class_at(const uint8_t *s, size_t n, size_t i, size_t *len) {
    uint32_t cp;
    *len = u8dec(s + i, n - i, &cp);
    return uclass(cp);
}

/* End of the GPT-2 pre-token that starts at s[i] (i < n): the alternatives of the pattern tried in
 * order, with the backtracking a regex engine would do. */
static size_t gpt2_next(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {                                   /* 's 't 're 've 'm 'll 'd */
        uint8_t c = s[i + 1];
        if (c == 's' || c == 't' || c == 'm' || c == 'd') return i + 2;
        if (i + 2 < n && ((c == 'r' && s[i + 2] == 'e') || (c == 'v' && s[i + 2] == 'e') ||
                          (c == 'l' && s[i + 2] == 'l')))
            return i + 3;
    }
    size_t len, start = i;
    int cls = class_at(s, n, i, &len);
    if (s[i] == ' ' && i + 1 < n) {                  /* " ?" before a letter, number or other run */
        int next = class_at(s, n, i + 1, &len);
        if (next != C_SPACE) cls = next, start = i + 1;
    }
    if (cls != C_SPACE) {                            /* ?\p{L}+ | ?\p{N}+ | ?[^\s\p{L}\p{N}]+ */
        size_t j = start;
        while (j < n && class_at(s, n, j, &len) == cls) j += len;
        return j;
    }
    size_t j = i, last = i;                          /* \s+(?!\S) | \s+ */
    while (j < n && class_at(s, n, j, &len) == C_SPACE) last = j, j += len;
    if (j == n || last == i) return j;               /* at the end, or one space before a non-space */
    return last;                                     /* leave the last space to the next token */
}

/* ---- the tokenizer ----------------------------------------------------------------------------- */

enum { K_BYTE, K_BYTELEVEL, K_SP };
enum { F_VOCAB = 1, F_ADDED = 2, F_SPECIAL = 4, F_BYTEFB = 8 };   /* flags[id] */
enum { PREPEND_NEVER, PREPEND_FIRST, PREPEND_ALWAYS };             /* Metaspace prepend_scheme */

typedef struct { char *from, *to; } repl_t;    /* replace from by to; from == NULL: prepend to */

typedef struct centry {                        /* cached word: ids, then the word's bytes */
    struct centry *next;
    uint64_t hash;
    uint32_t klen, nid;
    int32_t ids[];
} centry_t;

struct hb_tokenizer {
    int kind;
    int32_t n;                    /* ids are 0 .. n-1 */
    char **str;                   /* [n] token as written in the vocabulary (NUL-terminated), or NULL */
    char **raw;                   /* [n] bytes the id decodes to */
    uint32_t *rawlen;             /* [n] */
    uint8_t *flags;               /* [n] F_* */
    strmap_t vocab;               /* str -> id for the model vocabulary (F_VOCAB) */
    pairmap_t merges;             /* (left, right) -> v1 rank, v2 merged id */
    int32_t *mleft, *mright;      /* merges by rank, for save */
    int32_t nmerges, mcap;
    int32_t byte_id[256];         /* byte-level: the id of each byte; sentencepiece: <0xNN>; or -1 */
    int32_t unk, bos, eos;        /* or -1 */
    int byte_fallback, fuse_unk, ignore_merges;
    int prefix_space, use_regex;  /* byte-level pre-tokenizer options */
    repl_t *norm;                 /* sentencepiece normaliser steps, in order */
    int nnorm;
    int meta, meta_prepend, meta_split;   /* sentencepiece Metaspace pre-tokenizer */
    char meta_rep[8];
    repl_t *dec;                  /* sentencepiece decoder Replace steps, applied to each token */
    int ndec;
    char word_mark[8];            /* sentencepiece: cut the text before each run of this, as no
                                     token has it after another character (empty: never) */
    char strip_char[8];           /* decoder Strip: remove up to strip_lead leading strip_char */
    int strip_lead;
    int32_t *added;               /* added token ids, longest content first */
    int nadded;
    uint8_t added_first[256];     /* first bytes of added tokens */
    int parse_special;
    pthread_mutex_t mu;           /* guards the cache */
    centry_t **cache;             /* [CACHE_BUCKETS] or NULL */
    size_t ncache;
};

static void cache_clear(hb_tokenizer_t *t) {
    if (!t->cache) return;
    for (size_t i = 0; i < CACHE_BUCKETS; i++)
        for (centry_t *e = t->cache[i], *next; e; e = next) next = e->next, free(e);
    memset(t->cache, 0, CACHE_BUCKETS * sizeof *t->cache);
    t->ncache = 0;
}

static void free_repl(repl_t *r, int n) {
    for (int i = 0; i < n; i++) free(r[i].from), free(r[i].to);
    free(r);
}

void hb_tokenizer_free(hb_tokenizer_t *t) {
    if (!t) return;
    for (int32_t i = 0; i < t->n; i++) free(t->str[i]), free(t->raw[i]);
    free(t->str), free(t->raw), free(t->rawlen), free(t->flags);
    free(t->vocab.slot), free(t->merges.slot), free(t->mleft), free(t->mright);
    free_repl(t->norm, t->nnorm);
    free_repl(t->dec, t->ndec);
    free(t->added);
    cache_clear(t);
    free(t->cache);
    pthread_mutex_destroy(&t->mu);
    free(t);
}

/* Grows the id arrays to n ids (new ids are holes). */
static int tok_resize(hb_tokenizer_t *t, int32_t n) {
    if (n <= t->n) return 0;
    char **str = hb_realloc(t->str, n * sizeof *str);
    if (str) t->str = str;
    char **raw = hb_realloc(t->raw, n * sizeof *raw);
    if (raw) t->raw = raw;
    uint32_t *rawlen = hb_realloc(t->rawlen, n * sizeof *rawlen);
    if (rawlen) t->rawlen = rawlen;
    uint8_t *flags = hb_realloc(t->flags, n);
    if (flags) t->flags = flags;
    if (!str || !raw || !rawlen || !flags) return -1;
    for (int32_t i = t->n; i < n; i++) str[i] = raw[i] = NULL, rawlen[i] = 0, flags[i] = 0;
    t->n = n;
    return 0;
}

static hb_tokenizer_t *tok_new(int kind, int32_t n) {
    hb_tokenizer_t *t = hb_calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->mu, NULL);
    t->kind = kind;
    t->unk = t->bos = t->eos = -1;
    t->use_regex = 1;
    t->parse_special = 1;
    memset(t->byte_id, -1, sizeof t->byte_id);
    if (tok_resize(t, n)) {
        hb_tokenizer_free(t);
        return NULL;
    }
    return t;
}

static char *dup_bytes(const char *s, size_t n) {
    char *p = hb_malloc(n + 1);
    if (p) {
        if (n) memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

/* Sets the string of id (a copy). */
static int tok_set(hb_tokenizer_t *t, int32_t id, const char *s, size_t n, int flags) {
    char *p = dup_bytes(s, n);
    if (!p) return -1;
    free(t->str[id]);
    t->str[id] = p;
    t->flags[id] |= flags;
    return 0;
}

/* Builds the vocabulary map over the F_VOCAB ids. */
static int tok_index_vocab(hb_tokenizer_t *t, const char *path, char *err, size_t errlen) {
    for (int32_t i = 0; i < t->n; i++) {
        if (!(t->flags[i] & F_VOCAB)) continue;
        int r = sm_put(&t->vocab, t->str[i], strlen(t->str[i]), i);
        if (r < 0) {
            hb_errfmt(err, errlen, "%s: out of memory", path);
            return -1;
        }
        if (r == 0) {
            hb_errfmt(err, errlen, "%s: token '%s' appears twice in the vocabulary", path, t->str[i]);
            return -1;
        }
    }
    return 0;
}

/* Records merge (a, b) -> c with the next rank; a repeated pair keeps its first rank. */
static int add_merge(hb_tokenizer_t *t, int32_t a, int32_t b, int32_t c) {
    int created;
    pmslot_t *s = pm_put(&t->merges, a, b, &created);
    if (!s) return -1;
    if (!created) return 0;
    s->v1 = t->nmerges;
    s->v2 = c;
    if (t->nmerges == t->mcap) {
        int32_t cap = t->mcap ? 2 * t->mcap : 1024;
        int32_t *l = hb_realloc(t->mleft, cap * sizeof *l);
        if (l) t->mleft = l;
        int32_t *r = hb_realloc(t->mright, cap * sizeof *r);
        if (r) t->mright = r;
        if (!l || !r) return -1;
        t->mcap = cap;
    }
    t->mleft[t->nmerges] = a;
    t->mright[t->nmerges] = b;
    t->nmerges++;
    return 0;
}

/* Merge "a" + "b" given as vocabulary strings; where names it in messages ("line 7", "merge 3"). */
static int add_merge_str(hb_tokenizer_t *t, const char *a, size_t na, const char *b, size_t nb,
                         buf_t *tmp, const char *path, const char *where, char *err, size_t errlen) {
    int32_t ia = sm_get(&t->vocab, a, na), ib = sm_get(&t->vocab, b, nb);
    if (ia < 0 || ib < 0) {
        hb_errfmt(err, errlen, "%s: %s ('%.*s %.*s') references unknown token '%.*s'", path, where,
                  (int)na, a, (int)nb, b, ia < 0 ? (int)na : (int)nb, ia < 0 ? a : b);
        return -1;
    }
    tmp->n = 0;
    if (buf_put(tmp, a, na) || buf_put(tmp, b, nb)) {
        hb_errfmt(err, errlen, "%s: out of memory", path);
        return -1;
    }
    int32_t ic = sm_get(&t->vocab, tmp->p, tmp->n);
    if (ic < 0) {
        hb_errfmt(err, errlen, "%s: %s ('%.*s %.*s'): the merged token '%s' is not in the vocabulary",
                  path, where, (int)na, a, (int)nb, b, tmp->p);
        return -1;
    }
    if (add_merge(t, ia, ib, ic)) {
        hb_errfmt(err, errlen, "%s: out of memory", path);
        return -1;
    }
    return 0;
}

int64_t hb_tokenizer_token_to_id(const hb_tokenizer_t *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    for (int i = 0; i < t->nadded; i++)
        if (strcmp(t->str[t->added[i]], token) == 0) return t->added[i];
    return sm_get(&t->vocab, token, n);
}

/* Bytes of a byte-level vocabulary string: each character through the inverse GPT-2 map, or, when
 * some character is outside the map, the string itself (as Hugging Face's ByteLevel decoder). */
static int bytelevel_raw(const char *s, buf_t *out) {
    size_t n = strlen(s);
    out->n = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += u8dec((const uint8_t *)s + i, n - i, &cp);
        int b = cp == UINT32_MAX ? -1 : cp_to_byte(cp);
        if (b < 0) {
            out->n = 0;
            return buf_put(out, s, n);
        }
        char c = (char)b;
        if (buf_put(out, &c, 1)) return -1;
    }
    return buf_put(out, "", 0);
}

static int is_byte_token(const char *s, int *byte) {   /* "<0xNN>" */
    static const char hex[] = "0123456789ABCDEF";
    if (strlen(s) != 6 || strncmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
    const char *h = strchr(hex, s[3]), *l = strchr(hex, s[4]);
    if (!s[3] || !s[4] || !h || !l) return 0;
    *byte = (int)((h - hex) * 16 + (l - hex));
    return 1;
}

static int replace_all(buf_t *out, const char *s, size_t n, const char *from, const char *to) {
    size_t nf = strlen(from), nt = strlen(to);
    out->n = 0;
    if (buf_put(out, "", 0)) return -1;
    for (size_t i = 0; i < n;) {
        if (nf && i + nf <= n && memcmp(s + i, from, nf) == 0) {
            if (buf_put(out, to, nt)) return -1;
            i += nf;
        } else {
            if (buf_put(out, s + i, 1)) return -1;
            i++;
        }
    }
    return 0;
}

typedef struct { size_t len; int32_t id; } lenid_t;
static int by_len_desc(const void *x, const void *y) {
    const lenid_t *a = x, *b = y;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* After str/flags/merges are set: per-id bytes, byte ids, the added-token list, bos/eos. */
static int tok_finish(hb_tokenizer_t *t, const char *path, char *err, size_t errlen) {
    buf_t tmp = {0};
    lenid_t *order = NULL;
    int nadded = 0;
    for (int32_t i = 0; i < t->n; i++) {
        if (!t->str[i]) continue;
        const char *s = t->str[i];
        int byte;
        tmp.n = 0;
        int rc;
        if (t->flags[i] & F_ADDED) rc = buf_put(&tmp, s, strlen(s));
        else if (t->kind != K_SP) rc = bytelevel_raw(s, &tmp);
        else if (t->byte_fallback && is_byte_token(s, &byte)) {
            char c = (char)byte;
            rc = buf_put(&tmp, &c, 1);
            t->flags[i] |= F_BYTEFB;
            if (t->byte_id[byte] < 0) t->byte_id[byte] = i;
        } else {
            rc = buf_put(&tmp, s, strlen(s));
            for (int k = 0; k < t->ndec && !rc; k++) {
                buf_t r = {0};
                rc = replace_all(&r, tmp.p, tmp.n, t->dec[k].from, t->dec[k].to);
                free(tmp.p);
                tmp = r;
            }
        }
        char *raw = rc ? NULL : dup_bytes(tmp.p, tmp.n);
        if (!raw) goto oom;
        free(t->raw[i]);
        t->raw[i] = raw;
        t->rawlen[i] = (uint32_t)tmp.n;
        if ((t->flags[i] & F_ADDED) && s[0]) nadded++;
    }
    if (t->kind == K_SP) {   /* the space marker: Replace " " -> "▁", or an unsplit Metaspace */
        const char *mark = t->meta && !t->meta_split ? t->meta_rep : "";
        for (int k = 0; k < t->nnorm; k++)
            if (t->norm[k].from && strcmp(t->norm[k].from, " ") == 0) mark = t->norm[k].to;
        size_t nm = strlen(mark);
        int cross = nm == 0 || nm >= sizeof t->word_mark;
        for (int32_t i = 0; i < t->n && !cross; i++) {
            const char *s = t->str[i];
            if (!s || !s[0] || !(t->flags[i] & F_VOCAB) || (t->flags[i] & F_ADDED)) continue; /* "" has no s + 1 */
            for (const char *m = strstr(s + 1, mark); m && !cross; m = strstr(m + 1, mark))
                cross = m - s < (ptrdiff_t)nm || memcmp(m - nm, mark, nm) != 0;
        }
        strcpy(t->word_mark, cross ? "" : mark);
    } else {
        for (int b = 0; b < 256; b++) {
            char c[4];
            t->byte_id[b] = sm_get(&t->vocab, c, u8enc(byte_to_cp(b), c));
        }
    }
    order = hb_malloc((nadded + 1) * sizeof *order);
    t->added = hb_malloc((nadded + 1) * sizeof *t->added);
    if (!order || !t->added) goto oom;
    t->nadded = 0;
    for (int32_t i = 0; i < t->n; i++)
        if (t->str[i] && (t->flags[i] & F_ADDED) && t->str[i][0])
            order[t->nadded++] = (lenid_t){strlen(t->str[i]), i};
    qsort(order, t->nadded, sizeof *order, by_len_desc);
    memset(t->added_first, 0, sizeof t->added_first);
    for (int i = 0; i < t->nadded; i++) {
        t->added[i] = order[i].id;
        t->added_first[(uint8_t)t->str[order[i].id][0]] = 1;
    }
    if (t->bos < 0 && t->eos < 0) {
        static const char *bos[] = {"<s>", "<|begin_of_text|>", "<|startoftext|>", "<bos>"};
        static const char *eos[] = {"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"};
        for (int i = 0; i < 4 && t->bos < 0; i++) t->bos = (int32_t)hb_tokenizer_token_to_id(t, bos[i]);
        for (int i = 0; i < 4 && t->eos < 0; i++) t->eos = (int32_t)hb_tokenizer_token_to_id(t, eos[i]);
        if (t->bos < 0 && t->eos >= 0 && strcmp(t->str[t->eos], "<|endoftext|>") == 0) t->bos = t->eos;
    }
    free(order);
    free(tmp.p);
    return 0;
oom:
    free(order);
    free(tmp.p);
    hb_errfmt(err, errlen, "%s: out of memory", path);
    return -1;
}

hb_tokenizer_t *hb_tokenizer_byte(void) {
    hb_tokenizer_t *t = tok_new(K_BYTE, 256);
    if (!t) return NULL;
    for (int b = 0; b < 256; b++) {
        char c[4];
        if (tok_set(t, b, c, u8enc(byte_to_cp(b), c), F_VOCAB)) goto fail;
    }
    if (tok_index_vocab(t, "byte tokenizer", NULL, 0) || tok_finish(t, "byte tokenizer", NULL, 0))
        goto fail;
    return t;
fail:
    hb_tokenizer_free(t);
    return NULL;
}

/* ---- BPE on one word ----------------------------------------------------------------------------- */

typedef struct { int32_t id, prev, next; } sym_t;              /* id -1: merged into its left */
typedef struct { int32_t rank, pos, a, b, c; } cand_t;          /* merge sym[pos] (a) + next (b) -> c */

typedef struct {               /* scratch space for one encode call */
    sym_t *sym;
    size_t nsym, csym;
    cand_t *heap;
    size_t nheap, cheap;
    buf_t norm, norm2, tmp;
} work_t;

static void work_free(work_t *w) {
    free(w->sym), free(w->heap), free(w->norm.p), free(w->norm2.p), free(w->tmp.p);
}

static int cand_less(const cand_t *x, const cand_t *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(work_t *w, cand_t c) {
    size_t i = w->nheap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}

static cand_t heap_pop(work_t *w) {
    cand_t top = w->heap[0], last = w->heap[--w->nheap];
    size_t i = 0, n = w->nheap;
    for (;;) {
        size_t m = 2 * i + 1;
        if (m >= n) break;
        if (m + 1 < n && cand_less(&w->heap[m + 1], &w->heap[m])) m++;
        if (!cand_less(&w->heap[m], &last)) break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

static void try_pair(const hb_tokenizer_t *t, work_t *w, int32_t l) {
    int32_t r = w->sym[l].next;
    if (r < 0) return;
    const pmslot_t *s = pm_get(&t->merges, w->sym[l].id, w->sym[r].id);
    if (s) heap_push(w, (cand_t){s->v1, l, w->sym[l].id, w->sym[r].id, s->v2});
}

static int push_sym(work_t *w, int32_t id) {
    if (w->nsym == w->csym) {
        size_t cap = w->csym ? 2 * w->csym : 64;
        sym_t *s = hb_realloc(w->sym, cap * sizeof *s);
        if (!s) return -1;
        w->sym = s;
        w->csym = cap;
    }
    int32_t i = (int32_t)w->nsym++;
    w->sym[i] = (sym_t){id, i - 1, -1};
    if (i > 0) w->sym[i - 1].next = i;
    return 0;
}

/* Applies the merges to w->sym[0..nsym), best rank first, leftmost first among equals. */
static int bpe_run(const hb_tokenizer_t *t, work_t *w) {
    if (w->cheap < 3 * w->nsym) {
        cand_t *h = hb_realloc(w->heap, 3 * w->nsym * sizeof *h);
        if (!h) return -1;
        w->heap = h;
        w->cheap = 3 * w->nsym;
    }
    w->nheap = 0;
    for (size_t i = 0; i + 1 < w->nsym; i++) try_pair(t, w, (int32_t)i);
    while (w->nheap) {
        cand_t c = heap_pop(w);
        sym_t *l = &w->sym[c.pos];
        if (l->id != c.a || l->next < 0 || w->sym[l->next].id != c.b) continue;   /* stale */
        sym_t *r = &w->sym[l->next];
        l->id = c.c;
        r->id = -1;
        l->next = r->next;
        if (r->next >= 0) w->sym[r->next].prev = c.pos;
        if (l->prev >= 0) try_pair(t, w, l->prev);
        try_pair(t, w, c.pos);
    }
    return 0;
}

static int cache_get(hb_tokenizer_t *t, uint64_t h, const uint8_t *s, size_t n, ivec_t *out, int *found) {
    int rc = 0;
    *found = 0;
    pthread_mutex_lock(&t->mu);
    if (t->cache)
        for (centry_t *e = t->cache[h & (CACHE_BUCKETS - 1)]; e; e = e->next) {
            if (e->hash != h || e->klen != n || memcmp(e->ids + e->nid, s, n) != 0) continue;
            for (uint32_t i = 0; i < e->nid && !rc; i++) rc = iv_push(out, e->ids[i]);
            *found = 1;
            break;
        }
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static void cache_put(hb_tokenizer_t *t, uint64_t h, const uint8_t *s, size_t n, const int64_t *ids,
                      size_t nid) {
    centry_t *e = hb_malloc(sizeof *e + nid * sizeof(int32_t) + n);
    if (!e) return;   /* the cache is only an optimisation */
    e->hash = h;
    e->klen = (uint32_t)n;
    e->nid = (uint32_t)nid;
    for (size_t i = 0; i < nid; i++) e->ids[i] = (int32_t)ids[i];
    memcpy(e->ids + nid, s, n);
    pthread_mutex_lock(&t->mu);
    if (!t->cache) t->cache = hb_calloc(CACHE_BUCKETS, sizeof *t->cache);
    if (!t->cache) {
        pthread_mutex_unlock(&t->mu);
        free(e);
        return;
    }
    if (t->ncache >= CACHE_MAX_ENTRIES) cache_clear(t);
    e->next = t->cache[h & (CACHE_BUCKETS - 1)];
    t->cache[h & (CACHE_BUCKETS - 1)] = e;
    t->ncache++;
    pthread_mutex_unlock(&t->mu);
}

/* The initial symbols of a word: its bytes (byte-level) or its characters (sentencepiece style);
 * a character missing from the vocabulary becomes <0xNN> byte tokens (byte_fallback) or unk (one
 * for a run of them with fuse_unk). */
static int initial_symbols(const hb_tokenizer_t *t, const uint8_t *s, size_t n, work_t *w, char *err,
                           size_t errlen) {
    w->nsym = 0;
    for (size_t i = 0, len; i < n; i += len) {
        uint32_t cp = s[i];
        int32_t id;
        if (t->kind == K_SP) {
            len = u8dec(s + i, n - i, &cp);
            id = cp != UINT32_MAX ? sm_get(&t->vocab, (const char *)s + i, len) : -1;
        } else {
            len = 1;
            id = t->byte_id[s[i]];
        }
        if (id >= 0) {
            if (push_sym(w, id)) goto oom;
            continue;
        }
        int fallback = t->kind == K_SP && t->byte_fallback;
        for (size_t k = 0; fallback && k < len; k++) fallback = t->byte_id[s[i + k]] >= 0;
        if (fallback) {
            for (size_t k = 0; k < len; k++)
                if (push_sym(w, t->byte_id[s[i + k]])) goto oom;
            continue;
        }
        if (t->unk < 0) {
            if (t->kind != K_SP)
                hb_errfmt(err, errlen, "tokenizer: byte 0x%02X has no token in the vocabulary and there is "
                          "no unk_token", s[i]);
            else if (cp == UINT32_MAX)
                hb_errfmt(err, errlen, "tokenizer: byte 0x%02X (not valid UTF-8) has no token and there is "
                          "no byte_fallback or unk_token", s[i]);
            else
                hb_errfmt(err, errlen, "tokenizer: character U+%04X has no token and there is no "
                          "byte_fallback or unk_token", (unsigned)cp);
            return -1;
        }
        if (!(t->fuse_unk && w->nsym && w->sym[w->nsym - 1].id == t->unk) && push_sym(w, t->unk)) goto oom;
    }
    return 0;
oom:
    hb_errfmt(err, errlen, "tokenizer: out of memory");
    return -1;
}

/* Appends the ids of one pre-tokenised word. */
static int encode_word(hb_tokenizer_t *t, const uint8_t *s, size_t n, work_t *w, ivec_t *out,
                       char *err, size_t errlen) {
    if (!n) return 0;
    uint64_t h = 0;
    if (n <= CACHE_MAX_WORD) {
        int found;
        h = hash_bytes(s, n);
        if (cache_get(t, h, s, n, out, &found)) goto oom;
        if (found) return 0;
    }
    if (t->ignore_merges) {   /* a word that is a token is taken whole */
        w->tmp.n = 0;
        for (size_t i = 0; i < n; i++) {
            char c[4];
            int rc = t->kind == K_SP ? buf_put(&w->tmp, s + i, 1)
                                     : buf_put(&w->tmp, c, u8enc(byte_to_cp(s[i]), c));
            if (rc) goto oom;
        }
        int32_t id = sm_get(&t->vocab, w->tmp.p, w->tmp.n);
        if (id >= 0) return iv_push(out, id) ? -1 : 0;
    }
    if (initial_symbols(t, s, n, w, err, errlen)) return -1;
    if (bpe_run(t, w)) goto oom;
    size_t start = out->n;
    for (int32_t i = 0; i >= 0; i = w->sym[i].next)
        if (iv_push(out, w->sym[i].id)) goto oom;
    if (n <= CACHE_MAX_WORD) cache_put(t, h, s, n, out->v + start, out->n - start);
    return 0;
oom:
    hb_errfmt(err, errlen, "tokenizer: out of memory");
    return -1;
}

/* Encodes text that contains no added token; first: it starts the input (Metaspace "first"). */
static int encode_plain(hb_tokenizer_t *t, const uint8_t *s, size_t n, int first, work_t *w,
                        ivec_t *out, char *err, size_t errlen) {
    if (t->kind == K_BYTE) {
        for (size_t i = 0; i < n; i++)
            if (iv_push(out, s[i])) goto oom;
        return 0;
    }
    if (t->kind == K_BYTELEVEL) {
        if (t->prefix_space && s[0] != ' ') {
            w->norm.n = 0;
            if (buf_put(&w->norm, " ", 1) || buf_put(&w->norm, s, n)) goto oom;
            s = (const uint8_t *)w->norm.p;
            n = w->norm.n;
        }
        if (!t->use_regex) return encode_word(t, s, n, w, out, err, errlen);
        for (size_t i = 0; i < n;) {
            size_t j = gpt2_next(s, n, i);
            if (encode_word(t, s + i, j - i, w, out, err, errlen)) return -1;
            i = j;
        }
        return 0;
    }
    /* sentencepiece style: normaliser steps, then Metaspace */
    buf_t *cur = &w->norm, *next = &w->norm2, *swap;
    cur->n = 0;
    if (buf_put(cur, s, n)) goto oom;
    for (int k = 0; k < t->nnorm; k++) {
        const repl_t *r = &t->norm[k];
        if (r->from) {
            if (replace_all(next, cur->p, cur->n, r->from, r->to)) goto oom;
        } else {
            next->n = 0;
            if (cur->n && (buf_put(next, r->to, strlen(r->to)) || buf_put(next, cur->p, cur->n))) goto oom;
        }
        swap = cur, cur = next, next = swap;
    }
    if (t->meta) {
        size_t nr = strlen(t->meta_rep);
        if (replace_all(next, cur->p, cur->n, " ", t->meta_rep)) goto oom;
        swap = cur, cur = next, next = swap;
        int pre = t->meta_prepend == PREPEND_ALWAYS || (t->meta_prepend == PREPEND_FIRST && first);
        if (pre && !(cur->n >= nr && memcmp(cur->p, t->meta_rep, nr) == 0)) {
            next->n = 0;
            if (buf_put(next, t->meta_rep, nr) || buf_put(next, cur->p, cur->n)) goto oom;
            swap = cur, cur = next, next = swap;
        }
        if (t->meta_split) {   /* a word starts at each replacement character */
            const uint8_t *p = (const uint8_t *)cur->p;
            size_t start = 0;
            for (size_t i = 1; i <= cur->n; i++) {
                if (i < cur->n && !(i + nr <= cur->n && memcmp(p + i, t->meta_rep, nr) == 0)) continue;
                if (encode_word(t, p + start, i - start, w, out, err, errlen)) return -1;
                start = i;
            }
            return 0;
        }
    }
    /* Words: cut before each run of word_mark, which no merge crosses (same result as one word, but
     * the cache works and BPE runs on short words). encode_word only uses w->tmp, so cur stays valid. */
    const uint8_t *p = (const uint8_t *)cur->p;
    size_t nm = strlen(t->word_mark), start = 0;
    for (size_t i = 1; nm && i + nm <= cur->n; i++) {
        if (memcmp(p + i, t->word_mark, nm) != 0) continue;
        if (i >= nm && memcmp(p + i - nm, t->word_mark, nm) == 0) continue;   /* inside a run */
        if (encode_word(t, p + start, i - start, w, out, err, errlen)) return -1;
        start = i;
    }
    return encode_word(t, p + start, cur->n - start, w, out, err, errlen);
oom:
    hb_errfmt(err, errlen, "tokenizer: out of memory");
    return -1;
}

int hb_tokenizer_encode(hb_tokenizer_t *t, const char *text, size_t len, int64_t **ids_out,
                        size_t *n_out, char *err, size_t errlen) {
    if (!t || !ids_out || !n_out || (!text && len)) {
        hb_errfmt(err, errlen, "hb_tokenizer_encode: NULL argument");
        return -1;
    }
    *ids_out = NULL;
    *n_out = 0;
    const uint8_t *s = (const uint8_t *)text;
    ivec_t out = {0};
    work_t w = {0};
    size_t start = 0, i = 0;
    while (i < len) {   /* split on added tokens, longest first */
        int32_t hit = -1;
        if (t->nadded && t->added_first[s[i]])
            for (int k = 0; k < t->nadded && hit < 0; k++) {
                int32_t id = t->added[k];
                size_t m = t->rawlen[id];
                if ((t->flags[id] & F_SPECIAL) && !t->parse_special) continue;
                if (m <= len - i && memcmp(s + i, t->raw[id], m) == 0) hit = id;
            }
        if (hit < 0) {
            i++;
            continue;
        }
        if (i > start && encode_plain(t, s + start, i - start, start == 0, &w, &out, err, errlen)) goto fail;
        if (iv_push(&out, hit)) goto oom;
        i += t->rawlen[hit];
        start = i;
    }
    if (start < len && encode_plain(t, s + start, len - start, start == 0, &w, &out, err, errlen)) goto fail;
    if (!out.v && !(out.v = hb_malloc(sizeof *out.v))) goto oom;
    work_free(&w);
    *ids_out = out.v;
    *n_out = out.n;
    return 0;
oom:
    hb_errfmt(err, errlen, "hb_tokenizer_encode: out of memory");
fail:
    work_free(&w);
    free(out.v);
    return -1;
}

int hb_tokenizer_decode(const hb_tokenizer_t *t, const int64_t *ids, size_t n, char **text_out,
                        size_t *len_out, char *err, size_t errlen) {
    if (!t || !text_out || !len_out || (!ids && n)) {
        hb_errfmt(err, errlen, "hb_tokenizer_decode: NULL argument");
        return -1;
    }
    *text_out = NULL;
    *len_out = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t id = ids[i];
        if (id < 0 || id >= t->n) {
            hb_errfmt(err, errlen, "hb_tokenizer_decode: id %lld at position %zu is out of range "
                      "(vocabulary size %d)", (long long)id, i, (int)t->n);
            return -1;
        }
        if (!t->str[id]) {
            hb_errfmt(err, errlen, "hb_tokenizer_decode: id %lld at position %zu is not in the "
                      "vocabulary (unused id)", (long long)id, i);
            return -1;
        }
        total += t->rawlen[id];
    }
    char *out = hb_malloc(total + 1);
    if (!out) {
        hb_errfmt(err, errlen, "hb_tokenizer_decode: out of memory");
        return -1;
    }
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + pos, t->raw[ids[i]], t->rawlen[ids[i]]);
        pos += t->rawlen[ids[i]];
    }
    size_t cut = 0, nc = strlen(t->strip_char);
    for (int k = 0; k < t->strip_lead && nc && total - cut >= nc; k++, cut += nc)
        if (memcmp(out + cut, t->strip_char, nc) != 0) break;
    memmove(out, out + cut, total - cut);
    out[total - cut] = 0;
    *text_out = out;
    *len_out = total - cut;
    return 0;
}

int64_t hb_tokenizer_vocab_size(const hb_tokenizer_t *t) { return t ? t->n : 0; }

const char *hb_tokenizer_id_to_token(const hb_tokenizer_t *t, int64_t id) {
    return t && id >= 0 && id < t->n ? t->str[id] : NULL;
}

int64_t hb_tokenizer_bos_id(const hb_tokenizer_t *t) { return t ? t->bos : -1; }
int64_t hb_tokenizer_eos_id(const hb_tokenizer_t *t) { return t ? t->eos : -1; }

const char *hb_tokenizer_kind(const hb_tokenizer_t *t) {
    if (!t) return "none";
    return t->kind == K_BYTE ? "byte" : t->kind == K_BYTELEVEL ? "bpe-bytelevel" : "bpe-sentencepiece";
}

void hb_tokenizer_set_parse_special(hb_tokenizer_t *t, int on) {
    if (t) t->parse_special = on != 0;
}

/* ---- loading ----------------------------------------------------------------------------------- */

/* Fills the vocabulary from a JSON object {"token": id, ...}; what names it in messages. */
static int load_vocab(hb_tokenizer_t *t, const cJSON *obj, const char *path, const char *what,
                      char *err, size_t errlen) {
    int32_t maxid = -1;
    for (const cJSON *c = obj->child; c; c = c->next) {
        double d = cJSON_IsNumber(c) ? c->valuedouble : -1;
        if (!(d >= 0 && d < MAX_ID) || d != (double)(int32_t)d) {
            hb_errfmt(err, errlen, "%s: %stoken '%s' has id %s, not an integer in [0, %d)", path, what,
                      c->string, cJSON_IsNumber(c) ? "out of range" : "that is not a number", MAX_ID);
            return -1;
        }
        if ((int32_t)d > maxid) maxid = (int32_t)d;
    }
    if (tok_resize(t, maxid + 1)) goto oom;
    for (const cJSON *c = obj->child; c; c = c->next) {
        int32_t id = (int32_t)c->valuedouble;
        if (t->str[id]) {
            hb_errfmt(err, errlen, "%s: %stokens '%s' and '%s' both have id %d", path, what, t->str[id],
                      c->string, (int)id);
            return -1;
        }
        if (tok_set(t, id, c->string, strlen(c->string), F_VOCAB)) goto oom;
    }
    return 0;
oom:
    hb_errfmt(err, errlen, "%s: out of memory", path);
    return -1;
}

hb_tokenizer_t *hb_tokenizer_load_gpt2(const char *encoder_json_path, const char *vocab_bpe_path,
                                       char *err, size_t errlen) {
    if (!encoder_json_path || !vocab_bpe_path) {
        hb_errfmt(err, errlen, "hb_tokenizer_load_gpt2: NULL path");
        return NULL;
    }
    hb_tokenizer_t *t = NULL;
    char *text = NULL;
    buf_t tmp = {0};
    cJSON *root = hb_json_read_file(encoder_json_path, err, errlen);
    if (!root) return NULL;
    if (!cJSON_IsObject(root)) {
        hb_errfmt(err, errlen, "%s: expected a JSON object mapping tokens to ids", encoder_json_path);
        goto fail;
    }
    if (!(t = tok_new(K_BYTELEVEL, 0))) goto oom;
    if (load_vocab(t, root, encoder_json_path, "", err, errlen) ||
        tok_index_vocab(t, encoder_json_path, err, errlen))
        goto fail;
    size_t len;
    if (!(text = read_file(vocab_bpe_path, HB_READ_MAX_JSON, &len, err, errlen))) goto fail;
    int line = 0;
    for (char *p = text, *end = text + len; p < end;) {
        char *nl = memchr(p, '\n', end - p), *e = nl ? nl : end;
        line++;
        size_t n = e - p;
        if (n && p[n - 1] == '\r') n--;
        if (n && !(line == 1 && strncmp(p, "#version", 8) == 0)) {
            char *sp = memchr(p, ' ', n);
            if (!sp || sp == p || sp == p + n - 1 || memchr(sp + 1, ' ', p + n - sp - 1)) {
                hb_errfmt(err, errlen, "%s: line %d is not two tokens separated by one space: '%.*s'",
                          vocab_bpe_path, line, (int)(n > 80 ? 80 : n), p);
                goto fail;
            }
            char where[32];
            snprintf(where, sizeof where, "line %d", line);
            if (add_merge_str(t, p, sp - p, sp + 1, p + n - sp - 1, &tmp, vocab_bpe_path, where, err, errlen))
                goto fail;
        }
        p = e + 1;
    }
    int32_t eot = sm_get(&t->vocab, "<|endoftext|>", 13);
    if (eot >= 0) {
        t->flags[eot] |= F_ADDED | F_SPECIAL;
        t->bos = t->eos = eot;
    }
    if (tok_finish(t, vocab_bpe_path, err, errlen)) goto fail;
    cJSON_Delete(root);
    free(text);
    free(tmp.p);
    return t;
oom:
    hb_errfmt(err, errlen, "%s: out of memory", encoder_json_path);
fail:
    cJSON_Delete(root);
    free(text);
    free(tmp.p);
    hb_tokenizer_free(t);
    return NULL;
}

static const char *jstr(const cJSON *o, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int jbool(const cJSON *o, const char *key, int dflt) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

/* Flattens a normaliser / pre-tokenizer / decoder (listkey: its Sequence's member list) into
 * parts[0..return); null gives 0; more than max parts, or a part without "type", gives -1. */
static int components(const cJSON *c, const char *listkey, const cJSON **parts, int n, int max) {
    if (!c || cJSON_IsNull(c)) return n;
    const char *type = jstr(c, "type");
    if (!type) return -1;
    if (strcmp(type, "Sequence") == 0) {
        const cJSON *list = cJSON_GetObjectItemCaseSensitive(c, listkey);
        if (!cJSON_IsArray(list)) return -1;
        for (const cJSON *e = list->child; e && n >= 0; e = e->next)
            n = components(e, listkey, parts, n, max);
        return n;
    }
    if (n >= max) return -1;
    parts[n] = c;
    return n + 1;
}

static int has_type(const cJSON **parts, int n, const char *type) {
    for (int i = 0; i < n; i++)
        if (strcmp(jstr(parts[i], "type"), type) == 0) return 1;
    return 0;
}

/* A Replace step's pattern: only {"String": "..."} is supported. */
static const char *replace_pattern(const cJSON *c) {
    return jstr(cJSON_GetObjectItemCaseSensitive(c, "pattern"), "String");
}

static int push_repl(repl_t **list, int *n, const char *from, const char *to) {
    repl_t *r = hb_realloc(*list, (*n + 1) * sizeof *r);
    if (!r) return -1;
    *list = r;
    r[*n].from = from ? dup_bytes(from, strlen(from)) : NULL;
    r[*n].to = dup_bytes(to, strlen(to));
    (*n)++;
    return (from && !r[*n - 1].from) || !r[*n - 1].to ? -1 : 0;
}

static int prepend_scheme(const cJSON *c) {
    const char *s = jstr(c, "prepend_scheme");
    if (s && strcmp(s, "always") == 0) return PREPEND_ALWAYS;
    if (s && strcmp(s, "first") == 0) return PREPEND_FIRST;
    if (s) return PREPEND_NEVER;
    return jbool(c, "add_prefix_space", 1) ? PREPEND_ALWAYS : PREPEND_NEVER;
}

/* Reads the normaliser, pre-tokenizer and decoder of a tokenizer.json into t. */
static int load_pipeline(hb_tokenizer_t *t, const cJSON *root, const char *path, char *err, size_t errlen) {
    const cJSON *norm[16], *pre[16], *dec[16];
    int nn = components(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "normalizers", norm, 0, 16);
    int np = components(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "pretokenizers", pre, 0, 16);
    int nd = components(cJSON_GetObjectItemCaseSensitive(root, "decoder"), "decoders", dec, 0, 16);
    if (nn < 0 || np < 0 || nd < 0) {
        hb_errfmt(err, errlen, "%s: malformed %s (each part needs a \"type\")", path,
                  nn < 0 ? "normalizer" : np < 0 ? "pre_tokenizer" : "decoder");
        return -1;
    }
    t->kind = has_type(pre, np, "ByteLevel") || has_type(dec, nd, "ByteLevel") ? K_BYTELEVEL : K_SP;
    if (t->kind == K_BYTELEVEL) {
        if (nn) {
            hb_errfmt(err, errlen, "%s: normalizer '%s' is not supported with a ByteLevel tokenizer",
                      path, jstr(norm[0], "type"));
            return -1;
        }
        int level = 0, split = 0;
        for (int i = 0; i < np; i++) {
            const char *type = jstr(pre[i], "type");
            if (strcmp(type, "ByteLevel") == 0) {
                level = 1;
                t->prefix_space = jbool(pre[i], "add_prefix_space", 1);
                t->use_regex = jbool(pre[i], "use_regex", 1);
            } else if (strcmp(type, "Split") == 0) {
                const char *re = jstr(cJSON_GetObjectItemCaseSensitive(pre[i], "pattern"), "Regex");
                const char *behavior = jstr(pre[i], "behavior");
                if (!re || strcmp(re, GPT2_PATTERN) != 0 || !behavior || strcmp(behavior, "Isolated") != 0 ||
                    jbool(pre[i], "invert", 0)) {
                    hb_errfmt(err, errlen, "%s: pre_tokenizer Split with pattern '%s' is not supported "
                              "(only the GPT-2 pattern, behavior Isolated)", path, re ? re : "(not a Regex)");
                    return -1;
                }
                split = 1;
            } else {
                hb_errfmt(err, errlen, "%s: pre_tokenizer '%s' is not supported", path, type);
                return -1;
            }
        }
        if (!level) {
            hb_errfmt(err, errlen, "%s: a ByteLevel decoder needs a ByteLevel pre_tokenizer", path);
            return -1;
        }
        t->use_regex |= split;
        return 0;
    }
    for (int i = 0; i < nn; i++) {
        const char *type = jstr(norm[i], "type"), *to = jstr(norm[i], "content");
        int rc = 0;
        if (strcmp(type, "Prepend") == 0 && jstr(norm[i], "prepend"))
            rc = push_repl(&t->norm, &t->nnorm, NULL, jstr(norm[i], "prepend"));
        else if (strcmp(type, "Replace") == 0 && replace_pattern(norm[i]) && to)
            rc = push_repl(&t->norm, &t->nnorm, replace_pattern(norm[i]), to);
        else {
            hb_errfmt(err, errlen, "%s: normalizer '%s' is not supported (only Prepend, and Replace of a "
                      "String)", path, type);
            return -1;
        }
        if (rc) goto oom;
    }
    for (int i = 0; i < np; i++) {
        const char *type = jstr(pre[i], "type"), *rep = jstr(pre[i], "replacement");
        if (strcmp(type, "Metaspace") != 0 || np > 1 || !rep || strlen(rep) >= sizeof t->meta_rep) {
            hb_errfmt(err, errlen, "%s: pre_tokenizer '%s' is not supported (only ByteLevel or one Metaspace)",
                      path, type);
            return -1;
        }
        t->meta = 1;
        strcpy(t->meta_rep, rep);
        t->meta_prepend = prepend_scheme(pre[i]);
        t->meta_split = jbool(pre[i], "split", 1);
    }
    for (int i = 0; i < nd; i++) {
        const char *type = jstr(dec[i], "type");
        if (strcmp(type, "Replace") == 0 && replace_pattern(dec[i]) && jstr(dec[i], "content")) {
            if (push_repl(&t->dec, &t->ndec, replace_pattern(dec[i]), jstr(dec[i], "content"))) goto oom;
        } else if (strcmp(type, "Metaspace") == 0 && jstr(dec[i], "replacement")) {
            if (push_repl(&t->dec, &t->ndec, jstr(dec[i], "replacement"), " ")) goto oom;
            if (prepend_scheme(dec[i]) != PREPEND_NEVER) strcpy(t->strip_char, " "), t->strip_lead = 1;
        } else if (strcmp(type, "Strip") == 0) {
            const char *c = jstr(dec[i], "content");
            const cJSON *start = cJSON_GetObjectItemCaseSensitive(dec[i], "start");
            const cJSON *stop = cJSON_GetObjectItemCaseSensitive(dec[i], "stop");
            if (!c || strlen(c) >= sizeof t->strip_char || !cJSON_IsNumber(start) ||
                (cJSON_IsNumber(stop) && stop->valuedouble != 0)) {
                hb_errfmt(err, errlen, "%s: decoder Strip is only supported with a content character, "
                          "start, and stop 0", path);
                return -1;
            }
            strcpy(t->strip_char, c);
            t->strip_lead = start->valueint;
        } else if (strcmp(type, "ByteFallback") != 0 && strcmp(type, "Fuse") != 0) {
            hb_errfmt(err, errlen, "%s: decoder '%s' is not supported (only Replace of a String, "
                      "ByteFallback, Fuse, Strip, Metaspace)", path, type);
            return -1;
        }
    }
    return 0;
oom:
    hb_errfmt(err, errlen, "%s: out of memory", path);
    return -1;
}

hb_tokenizer_t *hb_tokenizer_load_hf(const char *path, char *err, size_t errlen) {
    if (!path) {
        hb_errfmt(err, errlen, "hb_tokenizer_load_hf: NULL path");
        return NULL;
    }
    hb_tokenizer_t *t = NULL;
    buf_t tmp = {0};
    cJSON *root = hb_json_read_file(path, err, errlen);
    if (!root) return NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(root) || !cJSON_IsObject(model)) {
        hb_errfmt(err, errlen, "%s: no \"model\" object (not a Hugging Face tokenizer.json?)", path);
        goto fail;
    }
    const char *type = jstr(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (type && strcmp(type, "BPE") != 0) {
        hb_errfmt(err, errlen, "%s: model type '%s' is not supported (only BPE)", path, type);
        goto fail;
    }
    if (!cJSON_IsObject(vocab)) {
        hb_errfmt(err, errlen, "%s: model.vocab is missing or not an object", path);
        goto fail;
    }
    if (!cJSON_IsArray(merges)) {
        hb_errfmt(err, errlen, "%s: model.merges is missing or not an array%s", path,
                  type ? "" : " (and model.type is missing: only BPE is supported)");
        goto fail;
    }
    const char *opt[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++)
        if (jstr(model, opt[i]) && jstr(model, opt[i])[0]) {
            hb_errfmt(err, errlen, "%s: model.%s is not supported", path, opt[i]);
            goto fail;
        }
    if (!(t = tok_new(K_SP, 0))) goto oom;
    t->byte_fallback = jbool(model, "byte_fallback", 0);
    t->fuse_unk = jbool(model, "fuse_unk", 0);
    t->ignore_merges = jbool(model, "ignore_merges", 0);
    if (load_pipeline(t, root, path, err, errlen) || load_vocab(t, vocab, path, "model.vocab: ", err, errlen))
        goto fail;
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    int k = 0;
    for (const cJSON *a = cJSON_IsArray(added) ? added->child : NULL; a; a = a->next, k++) {
        const cJSON *idv = cJSON_GetObjectItemCaseSensitive(a, "id");
        const char *content = jstr(a, "content");
        double d = cJSON_IsNumber(idv) ? idv->valuedouble : -1;
        if (!content || !(d >= 0 && d < MAX_ID) || d != (double)(int32_t)d) {
            hb_errfmt(err, errlen, "%s: added_tokens[%d] needs an integer \"id\" in [0, %d) and a string "
                      "\"content\"", path, k, MAX_ID);
            goto fail;
        }
        int32_t id = (int32_t)d;
        if (tok_resize(t, id + 1)) goto oom;
        if (t->str[id] && strcmp(t->str[id], content) != 0) {
            hb_errfmt(err, errlen, "%s: added token %d '%s' conflicts with vocabulary token '%s'", path,
                      (int)id, content, t->str[id]);
            goto fail;
        }
        int flags = F_ADDED | (jbool(a, "special", 0) ? F_SPECIAL : 0);
        if (t->str[id]) t->flags[id] |= flags;
        else if (tok_set(t, id, content, strlen(content), flags)) goto oom;
    }
    if (tok_index_vocab(t, path, err, errlen)) goto fail;
    const char *unk = jstr(model, "unk_token");
    if (unk && (t->unk = (int32_t)hb_tokenizer_token_to_id(t, unk)) < 0) {
        hb_errfmt(err, errlen, "%s: model.unk_token '%s' is not in the vocabulary", path, unk);
        goto fail;
    }
    k = 0;
    for (const cJSON *m = merges->child; m; m = m->next, k++) {
        const char *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        char where[32];
        snprintf(where, sizeof where, "merge %d", k);
        if (cJSON_IsString(m)) {
            const char *s = m->valuestring, *sp = strchr(s, ' ');
            if (sp && sp != s && sp[1] && !strchr(sp + 1, ' '))
                a = s, na = sp - s, b = sp + 1, nb = strlen(b);
        } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
                   cJSON_IsString(m->child->next)) {
            a = m->child->valuestring, na = strlen(a);
            b = m->child->next->valuestring, nb = strlen(b);
        }
        if (!a) {
            hb_errfmt(err, errlen, "%s: %s is neither \"left right\" nor [\"left\", \"right\"]", path, where);
            goto fail;
        }
        if (add_merge_str(t, a, na, b, nb, &tmp, path, where, err, errlen)) goto fail;
    }
    if (tok_finish(t, path, err, errlen)) goto fail;
    cJSON_Delete(root);
    free(tmp.p);
    return t;
oom:
    hb_errfmt(err, errlen, "%s: out of memory", path);
fail:
    cJSON_Delete(root);
    free(tmp.p);
    hb_tokenizer_free(t);
    return NULL;
}

/* ---- saving ------------------------------------------------------------------------------------ */

/* Adds v to obj under key (or to an array when key is NULL); remembers a failure in *bad. */
static cJSON *jadd(cJSON *obj, const char *key, cJSON *v, int *bad) {
    if (!v || !obj || !(key ? cJSON_AddItemToObject(obj, key, v) : cJSON_AddItemToArray(obj, v))) {
        cJSON_Delete(v);
        *bad = 1;
        return NULL;
    }
    return v;
}

static cJSON *jtyped(const char *type, int *bad) {
    cJSON *o = cJSON_CreateObject();
    jadd(o, "type", cJSON_CreateString(type), bad);
    return o;
}

static cJSON *jreplace(const char *from, const char *to, int *bad) {
    cJSON *o = jtyped("Replace", bad), *pat = jadd(o, "pattern", cJSON_CreateObject(), bad);
    jadd(pat, "String", cJSON_CreateString(from), bad);
    jadd(o, "content", cJSON_CreateString(to), bad);
    return o;
}

static cJSON *jbytelevel(int prefix, int trim, int regex, int *bad) {
    cJSON *o = jtyped("ByteLevel", bad);
    jadd(o, "add_prefix_space", cJSON_CreateBool(prefix), bad);
    jadd(o, "trim_offsets", cJSON_CreateBool(trim), bad);
    jadd(o, "use_regex", cJSON_CreateBool(regex), bad);
    return o;
}

int hb_tokenizer_save(const hb_tokenizer_t *t, const char *path, char *err, size_t errlen) {
    if (!t || !path) {
        hb_errfmt(err, errlen, "hb_tokenizer_save: NULL argument");
        return -1;
    }
    int bad = 0, sp = t->kind == K_SP;
    cJSON *root = cJSON_CreateObject();
    jadd(root, "version", cJSON_CreateString("1.0"), &bad);
    jadd(root, "truncation", cJSON_CreateNull(), &bad);
    jadd(root, "padding", cJSON_CreateNull(), &bad);
    cJSON *added = jadd(root, "added_tokens", cJSON_CreateArray(), &bad);
    for (int32_t i = 0; i < t->n; i++) {
        if (!t->str[i] || !(t->flags[i] & F_ADDED)) continue;
        cJSON *a = jadd(added, NULL, cJSON_CreateObject(), &bad);
        jadd(a, "id", cJSON_CreateNumber(i), &bad);
        jadd(a, "content", cJSON_CreateString(t->str[i]), &bad);
        const char *no[] = {"single_word", "lstrip", "rstrip", "normalized"};
        for (int k = 0; k < 4; k++) jadd(a, no[k], cJSON_CreateFalse(), &bad);
        jadd(a, "special", cJSON_CreateBool(t->flags[i] & F_SPECIAL), &bad);
    }
    cJSON *norm = cJSON_CreateNull();
    if (sp && t->nnorm) {
        cJSON_Delete(norm);
        norm = jtyped("Sequence", &bad);
        cJSON *list = jadd(norm, "normalizers", cJSON_CreateArray(), &bad);
        for (int k = 0; k < t->nnorm; k++) {
            if (t->norm[k].from) {
                jadd(list, NULL, jreplace(t->norm[k].from, t->norm[k].to, &bad), &bad);
            } else {
                cJSON *p = jadd(list, NULL, jtyped("Prepend", &bad), &bad);
                jadd(p, "prepend", cJSON_CreateString(t->norm[k].to), &bad);
            }
        }
    }
    jadd(root, "normalizer", norm, &bad);
    cJSON *pre = cJSON_CreateNull();
    if (!sp) {
        cJSON_Delete(pre);
        pre = jbytelevel(t->prefix_space, 1, t->use_regex, &bad);
    } else if (t->meta) {
        static const char *scheme[] = {"never", "first", "always"};
        cJSON_Delete(pre);
        pre = jtyped("Metaspace", &bad);
        jadd(pre, "replacement", cJSON_CreateString(t->meta_rep), &bad);
        jadd(pre, "prepend_scheme", cJSON_CreateString(scheme[t->meta_prepend]), &bad);
        jadd(pre, "split", cJSON_CreateBool(t->meta_split), &bad);
    }
    jadd(root, "pre_tokenizer", pre, &bad);
    jadd(root, "post_processor", sp ? cJSON_CreateNull() : jbytelevel(1, 0, 1, &bad), &bad);
    cJSON *dec;
    if (!sp) {
        dec = jbytelevel(1, 1, 1, &bad);
    } else {
        dec = jtyped("Sequence", &bad);
        cJSON *list = jadd(dec, "decoders", cJSON_CreateArray(), &bad);
        for (int k = 0; k < t->ndec; k++)
            jadd(list, NULL, jreplace(t->dec[k].from, t->dec[k].to, &bad), &bad);
        if (t->byte_fallback) jadd(list, NULL, jtyped("ByteFallback", &bad), &bad);
        jadd(list, NULL, jtyped("Fuse", &bad), &bad);
        if (t->strip_lead) {
            cJSON *s = jadd(list, NULL, jtyped("Strip", &bad), &bad);
            jadd(s, "content", cJSON_CreateString(t->strip_char), &bad);
            jadd(s, "start", cJSON_CreateNumber(t->strip_lead), &bad);
            jadd(s, "stop", cJSON_CreateNumber(0), &bad);
        }
    }
    jadd(root, "decoder", dec, &bad);
    cJSON *model = jadd(root, "model", jtyped("BPE", &bad), &bad);
    jadd(model, "dropout", cJSON_CreateNull(), &bad);
    jadd(model, "unk_token", t->unk >= 0 ? cJSON_CreateString(t->str[t->unk]) : cJSON_CreateNull(), &bad);
    jadd(model, "continuing_subword_prefix", cJSON_CreateNull(), &bad);
    jadd(model, "end_of_word_suffix", cJSON_CreateNull(), &bad);
    jadd(model, "fuse_unk", cJSON_CreateBool(t->fuse_unk), &bad);
    jadd(model, "byte_fallback", cJSON_CreateBool(t->byte_fallback), &bad);
    jadd(model, "ignore_merges", cJSON_CreateBool(t->ignore_merges), &bad);
    cJSON *vocab = jadd(model, "vocab", cJSON_CreateObject(), &bad);
    for (int32_t i = 0; i < t->n; i++)
        if (t->str[i] && (t->flags[i] & F_VOCAB)) jadd(vocab, t->str[i], cJSON_CreateNumber(i), &bad);
    int pairs = 0;   /* "a b" strings unless a token is empty or contains a space */
    for (int32_t k = 0; k < t->nmerges; k++) {
        const char *a = t->str[t->mleft[k]], *b = t->str[t->mright[k]];
        if (!a[0] || !b[0] || strchr(a, ' ') || strchr(b, ' ')) pairs = 1;
    }
    cJSON *merges = jadd(model, "merges", cJSON_CreateArray(), &bad);
    buf_t tmp = {0};
    for (int32_t k = 0; k < t->nmerges && !bad; k++) {
        const char *a = t->str[t->mleft[k]], *b = t->str[t->mright[k]];
        if (pairs) {
            const char *ab[2] = {a, b};
            jadd(merges, NULL, cJSON_CreateStringArray(ab, 2), &bad);
        } else {
            tmp.n = 0;
            if (buf_put(&tmp, a, strlen(a)) || buf_put(&tmp, " ", 1) || buf_put(&tmp, b, strlen(b))) bad = 1;
            else jadd(merges, NULL, cJSON_CreateString(tmp.p), &bad);
        }
    }
    free(tmp.p);
    int rc = -1;
    if (bad) hb_errfmt(err, errlen, "%s: out of memory building the JSON", path);
    else rc = hb_json_write_file(path, root, err, errlen);
    cJSON_Delete(root);
    return rc;
}

/* ---- training ---------------------------------------------------------------------------------- */

typedef struct { int32_t *s; int32_t len; int64_t cnt; } tword_t;        /* distinct word, its count */
typedef struct {
    int32_t a, b;
    int64_t cnt;                 /* occurrences in the corpus */
    int32_t *wl;                 /* words that contain (or once contained) the pair; may repeat */
    int32_t wn, wcap;
    uint32_t stamp;
} tpair_t;
typedef struct { int64_t cnt; int32_t a, b; } tcand_t;

typedef struct {
    tword_t *w;
    size_t nw, cw;
    tpair_t *p;
    size_t np, cp;
    pairmap_t pm;                /* (a, b) -> v1 index in p */
    tcand_t *h;
    size_t nh, ch;
} trainer_t;

static int tcand_better(const tcand_t *x, const tcand_t *y) {
    if (x->cnt != y->cnt) return x->cnt > y->cnt;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static int th_push(trainer_t *T, tcand_t c) {
    if (T->nh == T->ch) {
        size_t cap = T->ch ? 2 * T->ch : 4096;
        tcand_t *h = hb_realloc(T->h, cap * sizeof *h);
        if (!h) return -1;
        T->h = h;
        T->ch = cap;
    }
    size_t i = T->nh++;
    while (i > 0 && tcand_better(&c, &T->h[(i - 1) / 2])) T->h[i] = T->h[(i - 1) / 2], i = (i - 1) / 2;
    T->h[i] = c;
    return 0;
}

static tcand_t th_pop(trainer_t *T) {
    tcand_t top = T->h[0], last = T->h[--T->nh];
    size_t i = 0, n = T->nh;
    for (;;) {
        size_t m = 2 * i + 1;
        if (m >= n) break;
        if (m + 1 < n && tcand_better(&T->h[m + 1], &T->h[m])) m++;
        if (!tcand_better(&T->h[m], &last)) break;
        T->h[i] = T->h[m];
        i = m;
    }
    if (n) T->h[i] = last;
    return top;
}

/* Adds d to the count of (a, b), creating it; appends word w (>= 0) to its list. Returns its index. */
static int64_t pair_add(trainer_t *T, int32_t a, int32_t b, int64_t d, int32_t w) {
    int created;
    pmslot_t *s = pm_put(&T->pm, a, b, &created);
    if (!s) return -1;
    if (created) {
        if (T->np == T->cp) {
            size_t cap = T->cp ? 2 * T->cp : 4096;
            tpair_t *p = hb_realloc(T->p, cap * sizeof *p);
            if (!p) return -1;
            T->p = p;
            T->cp = cap;
        }
        s->v1 = (int32_t)T->np;
        T->p[T->np++] = (tpair_t){a, b, 0, NULL, 0, 0, 0};
    }
    tpair_t *p = &T->p[s->v1];
    p->cnt += d;
    if (w >= 0 && (p->wn == 0 || p->wl[p->wn - 1] != w)) {
        if (p->wn == p->wcap) {
            int32_t cap = p->wcap ? 2 * p->wcap : 4;
            int32_t *wl = hb_realloc(p->wl, cap * sizeof *wl);
            if (!wl) return -1;
            p->wl = wl;
            p->wcap = cap;
        }
        p->wl[p->wn++] = w;
    }
    return s->v1;
}

/* Counts the distinct GPT-2 pre-tokens of the files into T->w. */
static int count_words(trainer_t *T, const char **files, int nfiles, char *err, size_t errlen) {
    strmap_t map = {0};
    char **keys = NULL;           /* the words' bytes, keys of map */
    int rc = -1;
    for (int f = 0; f < nfiles; f++) {
        size_t len;
        char *text = read_file(files[f], SIZE_MAX / 2, &len, err, errlen);   /* a corpus: as large as memory allows */
        if (!text) goto done;
        const uint8_t *s = (const uint8_t *)text;
        for (size_t i = 0, j; i < len; i = j) {
            j = gpt2_next(s, len, i);
            int32_t id = sm_get(&map, text + i, j - i);
            if (id >= 0) {
                T->w[id].cnt++;
                continue;
            }
            if (T->nw == T->cw) {
                size_t cap = T->cw ? 2 * T->cw : 4096;
                tword_t *w = hb_realloc(T->w, cap * sizeof *w);
                char **k = hb_realloc(keys, cap * sizeof *k);
                if (w) T->w = w;
                if (k) keys = k;
                if (!w || !k) {
                    free(text);
                    goto oom;
                }
                T->cw = cap;
            }
            tword_t *w = &T->w[T->nw];
            keys[T->nw] = dup_bytes(text + i, j - i);
            w->s = hb_malloc((j - i) * sizeof *w->s);
            w->len = (int32_t)(j - i);
            w->cnt = 1;
            T->nw++;
            if (!keys[T->nw - 1] || !w->s || sm_put(&map, keys[T->nw - 1], j - i, (int32_t)(T->nw - 1)) < 0) {
                free(text);
                goto oom;
            }
            for (size_t k = i; k < j; k++) w->s[k - i] = s[k];
        }
        free(text);
    }
    rc = 0;
    goto done;
oom:
    hb_errfmt(err, errlen, "train_bpe: out of memory counting words");
done:
    for (size_t i = 0; i < T->nw; i++) free(keys[i]);
    free(keys);
    free(map.slot);
    return rc;
}

hb_tokenizer_t *hb_tokenizer_train_bpe(const char **files, int nfiles, int vocab_size, char *err,
                                       size_t errlen) {
    if (!files || nfiles < 1) {
        hb_errfmt(err, errlen, "train_bpe: no input files");
        return NULL;
    }
    for (int f = 0; f < nfiles; f++)
        if (!files[f]) {
            hb_errfmt(err, errlen, "train_bpe: file %d is NULL", f);
            return NULL;
        }
    if (vocab_size < 257 || vocab_size > MAX_ID) {
        hb_errfmt(err, errlen, "train_bpe: vocab_size %d is out of range [257, %d] (256 bytes + "
                  "<|endoftext|> at least)", vocab_size, MAX_ID);
        return NULL;
    }
    trainer_t T = {0};
    strmap_t rawmap = {0};        /* token bytes -> id */
    uint32_t *wstamp = NULL;
    int32_t *touched = NULL;
    size_t ntouched = 0, ctouched = 0;
    buf_t tmp = {0};
    hb_tokenizer_t *t = tok_new(K_BYTELEVEL, vocab_size);
    if (!t) goto oom;
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (!(t->raw[b] = dup_bytes(&c, 1))) goto oom;
        t->rawlen[b] = 1;
        if (sm_put(&rawmap, t->raw[b], 1, b) < 0) goto oom;
    }
    if (count_words(&T, files, nfiles, err, errlen)) goto fail;
    if (!(wstamp = hb_calloc(T.nw + 1, sizeof *wstamp))) goto oom;
    for (size_t w = 0; w < T.nw; w++)
        for (int32_t i = 0; i + 1 < T.w[w].len; i++)
            if (pair_add(&T, T.w[w].s[i], T.w[w].s[i + 1], T.w[w].cnt, (int32_t)w) < 0) goto oom;
    for (size_t k = 0; k < T.np; k++)
        if (th_push(&T, (tcand_t){T.p[k].cnt, T.p[k].a, T.p[k].b})) goto oom;

    int32_t ntok = 256, target = vocab_size - 1;
    uint32_t round = 0;
    while (ntok < target) {
        if (!T.nh) {
            hb_errfmt(err, errlen, "train_bpe: the corpus allows only %d merges; vocab_size %d needs %d "
                      "(use more text or a smaller vocab_size)", (int)t->nmerges, vocab_size, target - 256);
            goto fail;
        }
        tcand_t top = th_pop(&T);
        int32_t pi = pm_get(&T.pm, top.a, top.b)->v1;
        if (T.p[pi].cnt != top.cnt) {          /* stale entry: requeue with the current count */
            if (T.p[pi].cnt > 0 && th_push(&T, (tcand_t){T.p[pi].cnt, top.a, top.b})) goto oom;
            continue;
        }
        int32_t a = top.a, b = top.b;
        tmp.n = 0;
        if (buf_put(&tmp, t->raw[a], t->rawlen[a]) || buf_put(&tmp, t->raw[b], t->rawlen[b])) goto oom;
        int32_t c = sm_get(&rawmap, tmp.p, tmp.n);
        if (c < 0) {                           /* a new token (else the same bytes by another path) */
            c = ntok++;
            if (!(t->raw[c] = dup_bytes(tmp.p, tmp.n))) goto oom;
            t->rawlen[c] = (uint32_t)tmp.n;
            if (sm_put(&rawmap, t->raw[c], tmp.n, c) < 0) goto oom;
        }
        if (add_merge(t, a, b, c)) goto oom;
        int32_t *wl = T.p[pi].wl, wn = T.p[pi].wn;
        T.p[pi].wl = NULL, T.p[pi].wn = T.p[pi].wcap = 0;
        round++;
        ntouched = 0;
        for (int32_t k = 0; k < wn; k++) {
            int32_t wi = wl[k];
            if (wstamp[wi] == round) continue;
            wstamp[wi] = round;
            int32_t *s = T.w[wi].s, len = T.w[wi].len, i, j;
            int64_t cnt = T.w[wi].cnt;
            for (i = 0; i + 1 < len && !(s[i] == a && s[i + 1] == b); i++) {}
            if (i + 1 >= len) continue;        /* the pair left this word earlier */
            for (i = 0; i + 1 < len; i++)
                if (pair_add(&T, s[i], s[i + 1], -cnt, -1) < 0) goto oom_wl;
            for (i = j = 0; i < len; j++) {
                if (i + 1 < len && s[i] == a && s[i + 1] == b) s[j] = c, i += 2;
                else s[j] = s[i++];
            }
            T.w[wi].len = len = j;
            for (i = 0; i + 1 < len; i++) {
                int fresh = s[i] == c || s[i + 1] == c;
                int64_t q = pair_add(&T, s[i], s[i + 1], cnt, fresh ? wi : -1);
                if (q < 0) goto oom_wl;
                if (fresh && T.p[q].stamp != round) {
                    if (ntouched == ctouched) {
                        size_t cap = ctouched ? 2 * ctouched : 256;
                        int32_t *tt = hb_realloc(touched, cap * sizeof *tt);
                        if (!tt) goto oom_wl;
                        touched = tt;
                        ctouched = cap;
                    }
                    T.p[q].stamp = round;
                    touched[ntouched++] = (int32_t)q;
                }
            }
        }
        free(wl);
        for (size_t k = 0; k < ntouched; k++) {
            tpair_t *p = &T.p[touched[k]];
            if (p->cnt > 0 && th_push(&T, (tcand_t){p->cnt, p->a, p->b})) goto oom;
        }
        continue;
    oom_wl:
        free(wl);
        goto oom;
    }
    if (!(t->raw[target] = dup_bytes("<|endoftext|>", 13))) goto oom;
    t->rawlen[target] = 13;
    for (int32_t i = 0; i < vocab_size; i++) {   /* vocabulary strings through the GPT-2 byte map */
        tmp.n = 0;
        for (uint32_t k = 0; k < t->rawlen[i] && i != target; k++) {
            char u[4];
            if (buf_put(&tmp, u, u8enc(byte_to_cp((uint8_t)t->raw[i][k]), u))) goto oom;
        }
        if (i == target ? tok_set(t, i, "<|endoftext|>", 13, F_VOCAB | F_ADDED | F_SPECIAL)
                        : tok_set(t, i, tmp.p, tmp.n, F_VOCAB))
            goto oom;
    }
    t->bos = t->eos = target;
    if (tok_index_vocab(t, "train_bpe", err, errlen) || tok_finish(t, "train_bpe", err, errlen)) goto fail;
    goto done;
oom:
    hb_errfmt(err, errlen, "train_bpe: out of memory");
fail:
    hb_tokenizer_free(t);
    t = NULL;
done:
    for (size_t w = 0; w < T.nw; w++) free(T.w[w].s);
    for (size_t k = 0; k < T.np; k++) free(T.p[k].wl);
    free(T.w), free(T.p), free(T.pm.slot), free(T.h);
    free(rawmap.slot), free(wstamp), free(touched), free(tmp.p);
    return t;
}
