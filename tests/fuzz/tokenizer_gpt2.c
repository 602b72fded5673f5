/* tokenizer_gpt2.c — fuzz target: OpenAI GPT-2 tokenizer files, encoder.json (token -> id) and
 * vocab.bpe (one merge per line, an optional "#version" first line), in io/tokenizer.c; then encoding
 * and decoding with what loaded.
 *
 * Entry point: hb_tokenizer_load_gpt2. The input is two files (fuzz.h's fz_split): a 2-byte
 * little-endian length, encoder.json, and the rest is vocab.bpe. Besides "no crash, no sanitizer
 * report, no leak", a failed load must leave a message naming one of the two files, and a tokenizer
 * that loads must have the properties of tokcheck.h (ids in range; decode(encode(s)) == s, as GPT-2
 * has no unk; save as tokenizer.json + reload encodes identically) on fixed strings and on the input.
 * Run: make fuzz FUZZ_TARGETS=tokenizer_gpt2 (seeds: tests/fuzz/corpus/tokenizer_gpt2; -max_len 8192).
 */
#include "tokcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *rest = data;
    size_t left = size, n;
    const uint8_t *enc = fz_split(&rest, &left, &n);
    const char *enc_path = fz_file("encoder.json"), *bpe_path = fz_file("vocab.bpe");
    fz_put(enc_path, enc, n);
    fz_put(bpe_path, rest, left);
    char err[512] = "";
    hb_tokenizer_t *tok = hb_tokenizer_load_gpt2(enc_path, bpe_path, err, sizeof err);
    if (!tok) {
        FZ_CHECK(!strncmp(err, enc_path, strlen(enc_path)) || !strncmp(err, bpe_path, strlen(bpe_path)),
                 "the message names neither file: '%s'", err);
        return 0;
    }
    fz_tok_check(tok, NULL, data, size);
    hb_tokenizer_free(tok);
    return 0;
}
