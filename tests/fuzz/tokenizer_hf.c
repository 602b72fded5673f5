/* tokenizer_hf.c — fuzz target: Hugging Face tokenizer.json (io/tokenizer.c: model.vocab, merges as
 * strings or pairs, added_tokens, normalizer / pre_tokenizer / decoder pipelines, byte_fallback,
 * unk_token), then encoding and decoding with what loaded.
 *
 * Entry point: hb_tokenizer_load_hf on the input written to tokenizer.json. Besides "no crash, no
 * sanitizer report, no leak", a failed load must leave a message naming the file, and a tokenizer that
 * loads must have the properties of tokcheck.h (ids in range, decode(encode(s)) succeeds and, for
 * byte-level ones, gives s back unless unk was emitted; save + reload encodes identically) on a few
 * fixed strings and on the input bytes themselves as text.
 * Run: make fuzz FUZZ_TARGETS=tokenizer_hf (seeds: tests/fuzz/corpus/tokenizer_hf; -max_len 8192).
 */
#include "tokcheck.h"
#include <cjson/cJSON.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fz_file("tokenizer.json");
    fz_put(path, data, size);
    char err[512] = "";
    hb_tokenizer_t *tok = hb_tokenizer_load_hf(path, err, sizeof err);
    if (!tok) {
        FZ_CHECK(!strncmp(err, path, strlen(path)), "the message does not name the file: '%s'", err);
        return 0;
    }
    /* the file's unk token, for the round-trip property */
    char *unk = NULL;
    cJSON *root = cJSON_ParseWithLength((const char *)data, size);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "unk_token");
    if (cJSON_IsString(u)) unk = strdup(u->valuestring);
    cJSON_Delete(root);
    fz_tok_check(tok, unk, data, size);
    free(unk);
    hb_tokenizer_free(tok);
    return 0;
}
