/* mixers.h — attention, RoPE and the short convolution as differentiable tensor ops, and the recurrent
 * mixers under their C names.
 *
 * Each function takes float32 or float64 tensors in fla's (B,T,H,D) layout (made contiguous here),
 * dispatches to the kernel of the matching type, and records an autograd node whose backward calls
 * the kernel's backward. The recurrent mixers (hb_gla, hb_retention, hb_delta_rule, hb_hgrn) are thin
 * calls of the generic hb_mixer (mixer_op.h) with their kernel descriptor; `mode` picks the form
 * (HB_MODE_CHUNK or HB_MODE_RECURRENT), `ht` (optional, may be NULL) receives a new tensor with the final
 * recurrent state, for decoding after a prefill; chunk ≤ 0 means 64. The *_step functions advance a
 * decode state in place and never record history. Returns NULL with hb_errmsg() set on bad shapes.
 */
#ifndef HB_MIXERS_H
#define HB_MIXERS_H
#include "mixer_op.h"
#include "tensor.h"

/* Causal softmax attention. q (B,T,H,D), k/v (B,T,Hkv,D); window 0 = unlimited. Tiled: O(T·tile) memory. */
hb_tensor_t *hb_attention(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, double scale, int64_t window);
/* RoPE rotate-half on x (B,T,H,D), positions pos0 + t. */
hb_tensor_t *hb_rope(hb_tensor_t *x, double theta, int64_t pos0);

/* Packed sequences (fla's cu_seqlens, kernels/seqs.h): cu_seqlens (may be NULL: the plain op) is an int64
 * or int32 tensor [N+1] of document starts over the T tokens of a batch of B = 1 row (checked by
 * hb_seqlens_check, mixer_op.h). Attention is block-diagonal causal (a query sees only its document's
 * keys; a window restarts at each document), RoPE positions are pos0 + the index within the document,
 * and the convolution's taps stop at each document's first token; its cache_out is (N, W-1, D), one
 * per document. Gradients as for the plain ops. */
hb_tensor_t *hb_attention_packed(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, double scale, int64_t window,
                                 hb_tensor_t *cu_seqlens);
hb_tensor_t *hb_rope_packed(hb_tensor_t *x, double theta, int64_t pos0, hb_tensor_t *cu_seqlens);
hb_tensor_t *hb_conv1d_packed(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int act, hb_tensor_t *cu_seqlens,
                              hb_tensor_t **cache_out);
/* One decode step of attention: q (B,H,D) against caches kc/vc (B,Tmax,Hkv,D) holding positions 0..pos, position
 * p at slot p mod Tmax: pos < Tmax, or a ring of the last Tmax positions when 0 < window <= Tmax. */
hb_tensor_t *hb_attention_step(hb_tensor_t *q, hb_tensor_t *kc, hb_tensor_t *vc, double scale, int64_t window, int64_t pos);

/* GLA: S_t = diag(exp(gk_t)) S_{t-1} + k_t v_tᵀ, o_t = S_tᵀ(scale q_t). q,k,gk (B,T,H,K), v (B,T,H,V). */
hb_tensor_t *hb_gla(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *gk, double scale, hb_mode_t mode,
                    int64_t chunk, hb_tensor_t **ht);
hb_tensor_t *hb_gla_step(hb_tensor_t *state, hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *gk, double scale);

/* Retention: S_t = γ_h S_{t-1} + k_t v_tᵀ with lg[h] = log γ_h (a float64 tensor [H], constant). */
hb_tensor_t *hb_retention(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *lg, double scale, hb_mode_t mode,
                          int64_t chunk, hb_tensor_t **ht);
hb_tensor_t *hb_retention_step(hb_tensor_t *state, hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *lg,
                               double scale);

/* (Gated) delta rule. q,k (B,T,H,K) l2-normalised; v (B,T,HV,V); beta (B,T,HV); g (B,T,HV) or NULL. */
hb_tensor_t *hb_delta_rule(hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *beta, hb_tensor_t *g,
                           double scale, hb_mode_t mode, int64_t chunk, hb_tensor_t **ht);
hb_tensor_t *hb_delta_rule_step(hb_tensor_t *state, hb_tensor_t *q, hb_tensor_t *k, hb_tensor_t *v, hb_tensor_t *beta,
                                hb_tensor_t *g, double scale);

/* HGRN element-wise scan: h_t = exp(g_t) h_{t-1} + x_t. x, g (B,T,D). The chunk length comes from the
 * shapes (kernels/hgrn.h: hgrn_chunk_hint). */
hb_tensor_t *hb_hgrn(hb_tensor_t *x, hb_tensor_t *g, hb_mode_t mode, hb_tensor_t **ht);
hb_tensor_t *hb_hgrn_step(hb_tensor_t *state, hb_tensor_t *x, hb_tensor_t *g);

/* Causal depthwise conv: x (B,T,D), w (D,1,W) or (D,W), bias (D) or NULL, act 0 none / 1 silu.
 * cache_out (optional) receives the last W-1 inputs (B,W-1,D) for decoding. */
hb_tensor_t *hb_conv1d(hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int act, hb_tensor_t **cache_out);
hb_tensor_t *hb_conv1d_step(hb_tensor_t *cache, hb_tensor_t *x, hb_tensor_t *w, hb_tensor_t *bias, int act);

#endif
