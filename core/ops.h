/* ops.h — differentiable element-wise, reduction and nn ops on hb tensors.
 *
 * Math ops require float tensors of one dtype (HB_F32 or HB_F64); binary ops broadcast like
 * NumPy/PyTorch. Every function returns a new reference (NULL with hb_errmsg() set on error) and, when
 * grad mode is on and an input requires grad, records an autograd node (core/autograd.h) on its output.
 * Built on tensor.h, autograd.h and views.h; in-place raw updates (hb_add_, hb_copy_) are in tensor.h.
 */
#ifndef HB_OPS_H
#define HB_OPS_H
#include "tensor.h"

/* ---- elementwise -------------------------------------------------------------------------------- */
typedef enum {
    HB_OP_ADD, HB_OP_SUB, HB_OP_MUL, HB_OP_DIV, HB_OP_POW, HB_OP_MAXIMUM, HB_OP_MINIMUM
} hb_binop_t;
typedef enum {
    HB_U_NEG, HB_U_EXP, HB_U_LOG, HB_U_SQRT, HB_U_RSQRT, HB_U_ABS, HB_U_SIGMOID, HB_U_LOGSIGMOID,
    HB_U_SILU, HB_U_SOFTPLUS, HB_U_TANH, HB_U_RELU, HB_U_ELU, HB_U_SQUARE, HB_U_SIN, HB_U_COS,
    HB_U_LOG1P, HB_U_EXPM1, HB_U__COUNT
} hb_unop_t;

hb_tensor_t *hb_binary(hb_binop_t op, hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_binary_scalar(hb_binop_t op, hb_tensor_t *a, double s, int scalar_first);
hb_tensor_t *hb_unary(hb_unop_t op, hb_tensor_t *a);
const char *hb_unop_name(hb_unop_t op);
hb_tensor_t *hb_add(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_sub(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_mul(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_div(hb_tensor_t *a, hb_tensor_t *b);
hb_tensor_t *hb_clamp(hb_tensor_t *a, double lo, double hi); /* use ±INFINITY for one-sided */
hb_tensor_t *hb_where(hb_tensor_t *cond, hb_tensor_t *a, hb_tensor_t *b); /* cond != 0 ? a : b */
hb_tensor_t *hb_masked_fill(hb_tensor_t *a, hb_tensor_t *mask, double value);

/* ---- reductions --------------------------------------------------------------------------------- */
typedef enum { HB_R_SUM, HB_R_MEAN, HB_R_MAX, HB_R_MIN, HB_R_ARGMAX, HB_R_ARGMIN } hb_redop_t;
/* dim = -1.. counts from the end; all = reduce every dim to a scalar (shape []). */
hb_tensor_t *hb_reduce(hb_redop_t op, hb_tensor_t *a, int dim, int keepdim);
hb_tensor_t *hb_reduce_all(hb_redop_t op, hb_tensor_t *a);
hb_tensor_t *hb_cumsum(hb_tensor_t *a, int dim, int reverse);

/* ---- nn functions -------------------------------------------------------------------------------- */
hb_tensor_t *hb_softmax(hb_tensor_t *a, int dim);
hb_tensor_t *hb_log_softmax(hb_tensor_t *a, int dim);
/* logits [N, C], target int [N]; mean over targets != ignore_index (0 counted → 0). */
hb_tensor_t *hb_cross_entropy(hb_tensor_t *logits, hb_tensor_t *target, int64_t ignore_index);
hb_tensor_t *hb_embedding(hb_tensor_t *weight, hb_tensor_t *ids);     /* ids any shape, int */
hb_tensor_t *hb_rmsnorm(hb_tensor_t *x, hb_tensor_t *w, double eps);  /* over the last dim; w may be NULL */
hb_tensor_t *hb_cat(int n, hb_tensor_t **ts, int dim);
hb_tensor_t *hb_gather(hb_tensor_t *a, int dim, hb_tensor_t *index);
hb_tensor_t *hb_index_select(hb_tensor_t *a, int dim, hb_tensor_t *index);
hb_tensor_t *hb_tril(hb_tensor_t *a, int64_t k);  /* keep j <= i + k on the last two dims */
hb_tensor_t *hb_triu(hb_tensor_t *a, int64_t k);  /* keep j >= i + k */
/* Repeat each of the H heads of x (..., H, D) at dim `dim` g times consecutively (GQA). */
hb_tensor_t *hb_repeat_interleave(hb_tensor_t *x, int dim, int64_t g);

#endif
