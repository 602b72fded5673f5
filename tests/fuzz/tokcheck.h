/* tokcheck.h — the properties every loaded tokenizer must have, shared by the tokenizer fuzz targets
 * (tokenizer_hf.c, tokenizer_gpt2.c). fz_tok_check(tok, unk_token, text, n) runs them on a tokenizer that loaded:
 *   - bos/eos are -1 or ids with a token; vocab_size >= 0; token_to_id(id_to_token(id)) names a token
 *     with the same string (ids below 512);
 *   - encode of a few fixed strings and of `text` either fails with a message or gives ids that each
 *     have a token, and decode of them succeeds;
 *   - byte-level tokenizers (the header's guarantee): decode(encode(s)) == s whenever the unk token
 *     (named by the caller: model.unk_token of the file) was not emitted, up to the spaces that
 *     add_prefix_space puts before pieces of s that do not start with one;
 *   - saving as tokenizer.json and loading that back gives the same kind, vocab_size, bos/eos and the
 *     same ids for every string (the header's promise for hb_tokenizer_save).
 */
#ifndef HB_FUZZ_TOKCHECK_H
#define HB_FUZZ_TOKCHECK_H
#include "../../io/tokenizer.h"
#include "fuzz.h"

static const char *const fz_tok_samples[] = {
    "", "hello world", "Hello, World! 123 4567", "  leading and trailing  ", "\n\n\t x\r\n",
    "<|endoftext|>", "a<|endoftext|>b", "<s> </s> <unk>", "\xe2\x96\x81 meta \xe2\x96\x81\xe2\x96\x81",
    "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80", "\xff\xfe\x80 invalid \xc0\xaf utf-8", "it's we'll I'd",
};
#define FZ_NSAMPLES (sizeof fz_tok_samples / sizeof *fz_tok_samples)

/* Encodes s (n bytes); on success checks the ids and the round trip. Returns the ids (caller frees) and
 * sets *nids, or returns NULL when encode failed. */
static int64_t *fz_tok_encode(hb_tokenizer_t *tok, const char *s, size_t n, size_t *nids) {
    int64_t *ids = NULL;
    char err[512] = "";
    if (hb_tokenizer_encode(tok, s, n, &ids, nids, err, sizeof err)) {
        FZ_CHECK(err[0], "encode failed without a message");
        FZ_CHECK(!ids, "encode failed but returned ids");
        return NULL;
    }
    int64_t V = hb_tokenizer_vocab_size(tok);
    for (size_t i = 0; i < *nids; i++)
        FZ_CHECK(ids[i] >= 0 && ids[i] < V && hb_tokenizer_id_to_token(tok, ids[i]),
                 "encode gave id %lld (vocab_size %lld) at %zu", (long long)ids[i], (long long)V, i);
    char *text = NULL;
    size_t len = 0;
    FZ_CHECK(hb_tokenizer_decode(tok, ids, *nids, &text, &len, err, sizeof err) == 0, "decode(encode(s)): %s", err);
    FZ_CHECK(text && text[len] == 0, "decode output not NUL-terminated");
    free(text);
    return ids;
}

/* The byte-level round trip: decode(encode(s)) == s unless the unk token was emitted. */
static void fz_tok_roundtrip(hb_tokenizer_t *tok, int64_t unk, const char *s, size_t n, const int64_t *ids,
                             size_t nids) {
    const char *kind = hb_tokenizer_kind(tok);
    if (strcmp(kind, "bpe-bytelevel") && strcmp(kind, "byte")) return;
    for (size_t i = 0; i < nids; i++)
        if (ids[i] == unk) return;
    char *text = NULL, err[512] = "";
    size_t len = 0;
    FZ_CHECK(hb_tokenizer_decode(tok, ids, nids, &text, &len, err, sizeof err) == 0, "decode: %s", err);
    /* equal, except for a space add_prefix_space may put before a piece that does not start with one */
    size_t i = 0, j = 0;
    while (i < n && j < len) {
        if (text[j] == s[i]) i++, j++;
        else if (text[j] == ' ' && s[i] != ' ') j++;
        else break;
    }
    FZ_CHECK(i == n && j == len, "%s tokenizer: decode(encode(s)) != s for s = '%.*s' (got '%.*s')", kind,
             (int)(n > 200 ? 200 : n), s, (int)(len > 200 ? 200 : len), text);
    free(text);
}

static void fz_tok_check(hb_tokenizer_t *tok, const char *unk_token, const uint8_t *text, size_t tn) {
    int64_t V = hb_tokenizer_vocab_size(tok);
    FZ_CHECK(V >= 0, "vocab_size %lld", (long long)V);
    int64_t bos = hb_tokenizer_bos_id(tok), eos = hb_tokenizer_eos_id(tok);
    FZ_CHECK(bos == -1 || hb_tokenizer_id_to_token(tok, bos), "bos %lld has no token", (long long)bos);
    FZ_CHECK(eos == -1 || hb_tokenizer_id_to_token(tok, eos), "eos %lld has no token", (long long)eos);
    for (int64_t id = 0; id < V && id < 512; id++) {
        const char *s = hb_tokenizer_id_to_token(tok, id);
        if (!s) continue;
        int64_t back = hb_tokenizer_token_to_id(tok, s);
        FZ_CHECK(back >= 0 && !strcmp(hb_tokenizer_id_to_token(tok, back), s),
                 "token_to_id('%s') = %lld for id %lld", s, (long long)back, (long long)id);
    }
    /* the unk token, when there is one, is the only id allowed to lose information */
    int64_t unk = unk_token ? hb_tokenizer_token_to_id(tok, unk_token) : -2;

    /* save, reload, compare */
    char err[512] = "";
    const char *saved = fz_file("saved.json");
    FZ_CHECK(hb_tokenizer_save(tok, saved, err, sizeof err) == 0, "save: %s", err);
    hb_tokenizer_t *back = hb_tokenizer_load_hf(saved, err, sizeof err);
    FZ_CHECK(back, "reloading the saved tokenizer: %s", err);
    FZ_CHECK(!strcmp(hb_tokenizer_kind(back), hb_tokenizer_kind(tok)) && hb_tokenizer_vocab_size(back) == V &&
                 hb_tokenizer_bos_id(back) == bos && hb_tokenizer_eos_id(back) == eos,
             "the reloaded tokenizer differs: kind %s/%s, vocab %lld/%lld, bos %lld/%lld, eos %lld/%lld",
             hb_tokenizer_kind(back), hb_tokenizer_kind(tok), (long long)hb_tokenizer_vocab_size(back), (long long)V,
             (long long)hb_tokenizer_bos_id(back), (long long)bos, (long long)hb_tokenizer_eos_id(back),
             (long long)eos);

    for (size_t k = 0; k <= FZ_NSAMPLES; k++) {
        const char *s = k < FZ_NSAMPLES ? fz_tok_samples[k] : (const char *)text;
        size_t n = k < FZ_NSAMPLES ? strlen(s) : tn;
        size_t nids = 0, nids2 = 0;
        int64_t *ids = fz_tok_encode(tok, s, n, &nids);
        int64_t *ids2 = fz_tok_encode(back, s, n, &nids2);
        FZ_CHECK(!ids == !ids2, "encode of '%.*s' %s only after the save/load round trip", (int)(n > 200 ? 200 : n), s,
                 ids ? "fails" : "succeeds");
        if (ids) {
            FZ_CHECK(nids == nids2 && !memcmp(ids, ids2, nids * sizeof *ids),
                     "the reloaded tokenizer encodes '%.*s' differently", (int)(n > 200 ? 200 : n), s);
            fz_tok_roundtrip(tok, unk, s, n, ids, nids);
        }
        free(ids);
        free(ids2);
    }
    hb_tokenizer_free(back);
}

#endif
