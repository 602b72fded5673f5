/* views.h — differentiable views and copies: narrow, permute, view, expand, ... and their backward.
 *
 * Views share storage with their source (no copy); `view` copies only when the source is not
 * contiguous, `contiguous()` copies only when needed, `clone` always copies. When grad mode is on and
 * the source requires grad, each records an autograd node mapping the gradient back to the source's
 * shape. Ownership and errors as in tensor.h: every result is a new reference, NULL on error with
 * hb_errmsg() set. hb_sum_to (the inverse of a broadcast) records no history: it serves backward passes.
 */
#ifndef HB_VIEWS_H
#define HB_VIEWS_H
#include "tensor.h"

hb_tensor_t *hb_narrow(hb_tensor_t *t, int dim, int64_t start, int64_t len);
hb_tensor_t *hb_select(hb_tensor_t *t, int dim, int64_t index);  /* removes dim */
hb_tensor_t *hb_transpose(hb_tensor_t *t, int d0, int d1);
hb_tensor_t *hb_permute(hb_tensor_t *t, const int *perm);
hb_tensor_t *hb_view(hb_tensor_t *t, int ndim, const int64_t *size); /* one size may be -1; copies if not viewable */
hb_tensor_t *hb_expand(hb_tensor_t *t, int ndim, const int64_t *size); /* -1 keeps a size */
hb_tensor_t *hb_unsqueeze(hb_tensor_t *t, int dim);
hb_tensor_t *hb_squeeze(hb_tensor_t *t, int dim);
hb_tensor_t *hb_contiguous(hb_tensor_t *t);  /* new ref to t itself if already contiguous */
hb_tensor_t *hb_clone(hb_tensor_t *t);       /* always copies */
hb_tensor_t *hb_to_dtype(hb_tensor_t *t, hb_dtype_t dt);
/* Sum a broadcast gradient g back to the shape (ndim, size) it was expanded from: leading extra dims and
 * dims of size 1 in `size` are summed (double accumulation). No autograd; NULL on out of memory. */
hb_tensor_t *hb_sum_to(hb_tensor_t *g, int ndim, const int64_t *size);

#endif
