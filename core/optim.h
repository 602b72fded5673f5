/* optim.h — fused optimiser updates on contiguous float tensors (no autograd; in place). */
#ifndef HB_OPTIM_H
#define HB_OPTIM_H
#include "tensor.h"

/* One AdamW step with PyTorch's torch.optim.AdamW semantics (decoupled weight decay, bias
 * correction, eps added after the square root):
 *   p ← p·(1 − lr·wd);  m ← b1·m + (1−b1)·g;  v ← b2·v + (1−b2)·g²
 *   p ← p − lr/(1−b1^t) · m / (sqrt(v)/sqrt(1−b2^t) + eps)
 * p, m, v are updated in place; g is read. All must have the same shape and dtype; p, m, v contiguous.
 * step t counts from 1. Returns 0 or -1 (hb_errmsg). */
int hb_adamw_update(hb_tensor_t *p, hb_tensor_t *g, hb_tensor_t *m, hb_tensor_t *v, double lr, double b1, double b2,
                    double eps, double wd, int64_t t);

/* Sum of squares of all elements (accumulated in double). */
double hb_sumsq(hb_tensor_t *t);

#endif
