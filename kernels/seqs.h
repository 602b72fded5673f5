/* seqs.h — which tokens a sequence kernel's work item covers: the B rows of a padded batch, or the N
 * documents of a packed batch (fla's `cu_seqlens`).
 *
 * Every sequence kernel (the token mixers, the short convolution, attention) takes
 *     const int64_t *cu_seqlens  (N+1) [IN][OPTIONAL]   and   int64_t N
 * beside its dimensions. With cu_seqlens == NULL the sequences are the B rows of (B,T,...) tensors and
 * N is ignored (N = B). Otherwise B must be 1 and the (1,T,...) tensors hold N documents back to back:
 * document n covers tokens [cu_seqlens[n], cu_seqlens[n+1]), with 0 = cu[0] ≤ cu[1] ≤ ... ≤ cu[N] = T.
 * Recurrent states, initial and final, are then (N, H, ...) — one per document — and nothing crosses a
 * boundary: each document starts from its own h0 (or zeros), chunks are counted from its first token,
 * and convolution taps and attention windows stop at its start.
 *
 * In both cases token t of sequence n sits at row (seq.start + t) of the flattened (B·T) token axis, so a
 * kernel written for one sequence at a time handles both layouts with the same strides.
 */
#ifndef HB_KERNELS_SEQS_H
#define HB_KERNELS_SEQS_H
#include <stdint.h>

typedef struct {
    int64_t start; /* first token, on the flattened B·T axis */
    int64_t len;   /* number of tokens (may be 0) */
} hb_seq_t;

/* Number of sequences: N for a packed batch, else B. */
static inline int64_t hb_seq_count(const int64_t *cu_seqlens, int64_t N, int64_t B) {
    return cu_seqlens ? N : B;
}

/* Sequence n (0 ≤ n < hb_seq_count). T is the padded row length (ignored when packed). */
static inline hb_seq_t hb_seq_get(const int64_t *cu_seqlens, int64_t T, int64_t n) {
    hb_seq_t s;
    if (cu_seqlens) {
        s.start = cu_seqlens[n];
        s.len = cu_seqlens[n + 1] - cu_seqlens[n];
    } else {
        s.start = n * T;
        s.len = T;
    }
    return s;
}

/* 0 when the layout is valid: no cu_seqlens, or B == 1, N ≥ 1 and 0 = cu[0] ≤ ... ≤ cu[N] = T.
 * Kernels call it with their other argument checks, before any work. */
static inline int hb_seqs_check(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T) {
    if (!cu_seqlens) return 0;
    if (B != 1 || N < 1 || cu_seqlens[0] != 0 || cu_seqlens[N] != T) return -1;
    for (int64_t n = 0; n < N; n++)
        if (cu_seqlens[n + 1] < cu_seqlens[n]) return -1;
    return 0;
}

/* Longest sequence (scratch sizing). */
static inline int64_t hb_seq_maxlen(const int64_t *cu_seqlens, int64_t N, int64_t T) {
    if (!cu_seqlens) return T;
    int64_t m = 0;
    for (int64_t n = 0; n < N; n++)
        if (cu_seqlens[n + 1] - cu_seqlens[n] > m) m = cu_seqlens[n + 1] - cu_seqlens[n];
    return m;
}

/* Chunks of C tokens counted from each sequence's first token, over the sequences before sequence n: its first
 * chunk's index, n·ceil(T/C) for a padded batch, Σ_{m<n} ceil(len_m / C) when packed (O(n): GLA and
 * retention call it once per work item). C ≥ 1. */
static inline int64_t hb_seq_first_chunk(const int64_t *cu_seqlens, int64_t T, int64_t C, int64_t n) {
    if (!cu_seqlens) return n * ((T + C - 1) / C);
    int64_t c = 0;
    for (int64_t m = 0; m < n; m++) c += (cu_seqlens[m + 1] - cu_seqlens[m] + C - 1) / C;
    return c;
}

/* All the chunks: B·ceil(T/C) for a padded batch, Σ_n ceil(len_n / C) over the N packed documents — the rows
 * of a chunked forward's saved chunk states. C ≥ 1. */
static inline int64_t hb_seq_chunks(const int64_t *cu_seqlens, int64_t N, int64_t B, int64_t T, int64_t C) {
    return hb_seq_first_chunk(cu_seqlens, T, C, hb_seq_count(cu_seqlens, N, B));
}

#endif
