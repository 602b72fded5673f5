/* data.h — token shard files and the batches a training run draws from them.
 *
 * A shard is one file of token ids (little-endian), written atomically and read through mmap:
 *   offset  0  magic "HBTK"
 *           4  uint32 version (1)
 *           8  uint32 bytes per token: 2 (uint16) when vocab_size <= 65536, else 4 (uint32)
 *          12  uint32 vocab_size the ids were made with (0: unknown)
 *          16  uint64 count of tokens
 *          24  8 bytes reserved (zero)
 *          32  count tokens
 * Readers reject another magic or version, a token width other than 2 or 4, and a size that is not
 * exactly 32 + count * width (a truncated or padded file).
 *
 * Training batches are random-access: batch k of a run with seed s is
 *   rng = hb_rng_seed(hb_data_batch_seed(s, k)); for b in 0..B-1: off_b = uniform(rng, len - T)
 *   row b = tokens[off_b .. off_b + T]           (T+1 tokens: inputs and the shifted targets)
 * where uniform(rng, n) draws hb_rng_next and rejects the top partial range so every offset in
 * 0..n-1 is equally likely. So batch k depends only on (tokens, s, k, B, T): a resumed run draws
 * batch k without replaying batches 0..k-1, and two runs with one seed see identical data.
 * Validation uses fixed windows instead: window i covers tokens[i*T .. i*T + T]; the last window is
 * shorter when (len - 1) is not a multiple of T, so the windows predict every token but the first
 * exactly once.
 *
 * Errors are values: functions return NULL or -1 and write a message naming the file into err (errlen
 * bytes, always NUL-terminated when errlen > 0; err may be NULL). Nothing here prints or exits.
 */
#ifndef HB_DATA_H
#define HB_DATA_H
#include <stddef.h>
#include <stdint.h>

#define HB_SHARD_HEADER 32
#define HB_SHARD_VERSION 1

typedef struct hb_shard hb_shard_t;
typedef struct hb_shard_writer hb_shard_writer_t;

/* ---- writing ------------------------------------------------------------------------------------- */
/* Start writing path (atomically: nothing appears at path before hb_shard_writer_close succeeds).
 * vocab_size > 0 is recorded in the header and append checks every id against it; 0 means unknown.
 * token_bytes is 2 or 4, or 0 to choose from vocab_size (2 when 0 < vocab_size <= 65536, else 4).
 * Returns NULL with a message on failure (bad arguments, cannot create the file). */
hb_shard_writer_t *hb_shard_writer_open(const char *path /* [IN] */, int64_t vocab_size, int token_bytes,
                                        char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Append n ids. An id outside 0..vocab_size-1 (or, for an unknown vocabulary, one that does not fit
 * token_bytes) is an error naming its position in the shard; after any error the writer is only good
 * for hb_shard_writer_abort. Returns 0 or -1. */
int hb_shard_writer_append(hb_shard_writer_t *w, const int64_t *ids /* [IN] (n) */, size_t n,
                           char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Tokens appended so far. */
int64_t hb_shard_writer_count(const hb_shard_writer_t *w);

/* Finish: write the header, flush, fsync and rename over path. Always frees w. Returns 0 or -1 (then
 * path is untouched). */
int hb_shard_writer_close(hb_shard_writer_t *w, char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Give up: remove the temporary file and free w; NULL is fine. */
void hb_shard_writer_abort(hb_shard_writer_t *w);

/* The whole shard in one call (open, append, close). */
int hb_shard_write(const char *path, const int64_t *ids /* [IN] (n) */, size_t n, int64_t vocab_size,
                   int token_bytes, char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* ---- reading -------------------------------------------------------------------------------------- */
/* Map the shard at path read-only and check its header. Returns NULL with a message such as
 * "data/sotu/train.bin: not a hyblua token shard (magic 'PK..', expected 'HBTK')". */
hb_shard_t *hb_shard_open(const char *path /* [IN] */, char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Unmap and free; NULL is fine. */
void hb_shard_close(hb_shard_t *s);

int64_t hb_shard_len(const hb_shard_t *s);        /* number of tokens */
int64_t hb_shard_vocab_size(const hb_shard_t *s); /* from the header; 0 = unknown */
int hb_shard_token_bytes(const hb_shard_t *s);    /* 2 or 4 */
const char *hb_shard_path(const hb_shard_t *s);   /* as given to hb_shard_open; owned by s */

/* Copy tokens [pos, pos + n) as int64 into out. Returns 0, or -1 when the range is outside the shard or
 * an id is not below the vocabulary size the header records (read, batch and window check every id). */
int hb_shard_read(const hb_shard_t *s, int64_t pos, int64_t n, int64_t *out /* [OUT] (n) */,
                  char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* The rng seed of batch k of a run seeded with seed (a fixed mix of the two, see the top comment). */
uint64_t hb_data_batch_seed(uint64_t seed, uint64_t k);

/* Batch k: out[b*(T+1) + t] = tokens[off_b + t], as described at the top. Needs B >= 1, T >= 1 and
 * len >= T + 1; otherwise -1 with a message naming the shard. */
int hb_shard_batch(const hb_shard_t *s, int64_t B, int64_t T, uint64_t seed, uint64_t k,
                   int64_t *out /* [OUT] (B, T+1) */, char *err /* [OUT] [OPTIONAL] */, size_t errlen);

/* Number of validation windows of T targets: ceil((len - 1) / T), 0 for len < 2. */
int64_t hb_shard_num_windows(const hb_shard_t *s, int64_t T);

/* Window i (0-based, < hb_shard_num_windows): tokens [i*T, min(i*T + T, len - 1)] into out; *n_out is
 * the number of tokens written (T + 1, or fewer for the last window). Returns 0 or -1. */
int hb_shard_window(const hb_shard_t *s, int64_t i, int64_t T, int64_t *out /* [OUT] (T+1) */, int64_t *n_out,
                    char *err /* [OUT] [OPTIONAL] */, size_t errlen);

#endif
