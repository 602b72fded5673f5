/* tokenizer.h — byte, GPT-2 and Hugging Face BPE tokenizers; byte-level BPE training.
 *
 * One opaque type, hb_tokenizer_t, for every kind:
 *   "byte"           ids 0..255 are the byte values (hb_tokenizer_byte).
 *   "bpe-bytelevel"  GPT-2 style byte-level BPE (hb_tokenizer_load_gpt2, hb_tokenizer_load_hf with a
 *                    ByteLevel pre-tokenizer, hb_tokenizer_train_bpe).
 *   "bpe-sentencepiece"  Llama style BPE over characters with "▁" for spaces and <0xNN> byte fallback
 *                    (hb_tokenizer_load_hf with a Prepend/Replace normaliser or a Metaspace
 *                    pre-tokenizer).
 * Ids are int64_t in this interface; ids are 0 .. vocab_size-1 (a loaded file may leave holes).
 *
 * Errors are values: functions that can fail return NULL or -1 and write a message naming the file and
 * the problem into err (errlen bytes, always NUL-terminated; err may be NULL). Nothing here prints or
 * exits.
 *
 * Threads: hb_tokenizer_encode and hb_tokenizer_decode may run concurrently on one tokenizer (the
 * word cache is locked); hb_tokenizer_set_parse_special and hb_tokenizer_free must not overlap
 * other calls on the same tokenizer.
 */
#ifndef HB_TOKENIZER_H
#define HB_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

typedef struct hb_tokenizer hb_tokenizer_t;

/* The byte tokenizer: 256 ids, id = byte value. Returns NULL only when out of memory. */
hb_tokenizer_t *hb_tokenizer_byte(void);

/* GPT-2 byte-level BPE from OpenAI's encoder.json (token -> id) and vocab.bpe (merges, best first).
 * "<|endoftext|>", when in the vocabulary, becomes the bos and eos id and a special added token. */
hb_tokenizer_t *hb_tokenizer_load_gpt2(const char *encoder_json_path /* [IN] */,
                                       const char *vocab_bpe_path /* [IN] */,
                                       char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* A Hugging Face tokenizer.json whose model.type is "BPE", either byte-level (pre_tokenizer ByteLevel,
 * or Split with the GPT-2 pattern followed by ByteLevel) or sentencepiece style (normaliser Prepend
 * and/or Replace, or a Metaspace pre-tokenizer; byte_fallback with <0xNN> tokens; unk_token, fuse_unk).
 * Merges may be "a b" strings or ["a", "b"] pairs. added_tokens are matched verbatim in the input
 * (longest first) before normalisation; their lstrip/rstrip/single_word/normalized flags are ignored.
 * bos/eos are guessed from the special tokens ("<s>"/"</s>", "<|begin_of_text|>"/"<|end_of_text|>",
 * "<|endoftext|>", "<bos>"/"<eos>"); post_processor templates are not applied by encode.
 * Anything else (other model types, normalisers such as NFC, other pre-tokenizer regexes,
 * continuing_subword_prefix) is rejected with a message naming it. */
hb_tokenizer_t *hb_tokenizer_load_hf(const char *tokenizer_json_path /* [IN] */,
                                     char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Trains a byte-level BPE on the concatenation of nfiles text files: ids 0..255 are the bytes, text is
 * pre-split with the GPT-2 pattern, then the most frequent adjacent pair is merged until the
 * vocabulary has vocab_size ids, the last of which is "<|endoftext|>" (bos = eos = vocab_size-1).
 * Ties go to the pair with the smaller (left id, right id), so the result depends only on the input.
 * Fails with a message when vocab_size < 257 or the corpus has too few distinct pairs. Each file is
 * read whole into memory. */
hb_tokenizer_t *hb_tokenizer_train_bpe(const char **files /* [IN] (nfiles) */, int nfiles,
                                       int vocab_size, char *err /* [OUT] [OPTIONAL] */,
                                       size_t errlen);

/* Writes tok as a Hugging Face tokenizer.json (model BPE; merges best first) that
 * hb_tokenizer_load_hf (and Hugging Face tokenizers) read back to the same encoding. The byte
 * tokenizer is written as a byte-level BPE without merges whose id for each byte is the byte value.
 * Returns 0, or -1 with a message. */
int hb_tokenizer_save(const hb_tokenizer_t *tok /* [IN] */, const char *path /* [IN] */,
                      char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Encodes len bytes of text (any bytes: NUL and invalid UTF-8 are fine) into a new malloc'd array of
 * *n_out ids that the caller frees (for empty output *ids_out may still be non-NULL: free it). No
 * bos/eos is added. Returns 0, or -1 with a message (a byte or character that has no token: only
 * possible for vocabularies without all 256 byte tokens / byte_fallback / unk_token). */
int hb_tokenizer_encode(hb_tokenizer_t *tok /* [IN] */, const char *text /* [IN] (len) */, size_t len,
                        int64_t **ids_out /* [OUT] */, size_t *n_out /* [OUT] */,
                        char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Decodes n ids into a new malloc'd byte string (*len_out bytes plus a terminating NUL) that the caller
 * frees. Special tokens decode to their text. Ids outside the vocabulary are an error (-1).
 * For byte-level tokenizers and the byte tokenizer decode(encode(x)) == x for every byte string x,
 * except that a ByteLevel pre-tokenizer with add_prefix_space (Hugging Face's default when the key is
 * absent) gives text that does not start with a space one more, at the start of the input and after
 * each added token, as Hugging Face's encode does;
 * for sentencepiece style ones with byte_fallback too, except that a literal "▁" in the input comes
 * back as a space (inherent in the format). Added tokens typed in the input come back as typed, but
 * a sentencepiece-style normaliser's Prepend makes the text after them gain a space. */
int hb_tokenizer_decode(const hb_tokenizer_t *tok /* [IN] */, const int64_t *ids /* [IN] (n) */,
                        size_t n, char **text_out /* [OUT] */, size_t *len_out /* [OUT] */,
                        char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Number of ids (largest id + 1), added tokens included. */
int64_t hb_tokenizer_vocab_size(const hb_tokenizer_t *tok);

/* The token string of id as written in the vocabulary file (GPT-2's "Ġthe", Llama's "▁the",
 * "<0x0A>"), owned by tok and NUL-terminated; NULL when id is out of range or unused. */
const char *hb_tokenizer_id_to_token(const hb_tokenizer_t *tok, int64_t id);

/* The id of a token string as written in the vocabulary (added tokens first), or -1. */
int64_t hb_tokenizer_token_to_id(const hb_tokenizer_t *tok, const char *token);

/* Beginning/end of sequence ids, or -1 when the tokenizer has none. */
int64_t hb_tokenizer_bos_id(const hb_tokenizer_t *tok);
int64_t hb_tokenizer_eos_id(const hb_tokenizer_t *tok);

/* "byte", "bpe-bytelevel" or "bpe-sentencepiece" (a static string). */
const char *hb_tokenizer_kind(const hb_tokenizer_t *tok);

/* Whether encode turns the text of special added tokens (e.g. "<|endoftext|>") into their ids
 * (on, the default, as Hugging Face's encode does) or encodes it as ordinary text (off).
 * Non-special added tokens are always matched. */
void hb_tokenizer_set_parse_special(hb_tokenizer_t *tok, int on);

/* Frees tok and everything it owns; NULL is fine. */
void hb_tokenizer_free(hb_tokenizer_t *tok);

#endif
