"""torch_kernels.py — the PyTorch counterparts of kernels_bench.c (same shapes, same FLOP formulas).

  torch_kernels.py train KERNEL T[,T...] D REPS     forward + backward (autograd / custom Function) of
                                                    the chunked mixer of torch_models.py, B = 1, H = 512/D
  torch_kernels.py decode KERNEL CTX[,CTX...] D REPS one decode step at context length CTX
One JSON line per call, same keys as kernels_bench.c.
"""
import json
import math
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ.get("HYBLUA_NUM_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", os.environ["OPENBLAS_NUM_THREADS"])
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402


def flops(k, T, D, C=64):
    K = V = D
    if k in ("gla", "retention"):
        return 4 * T * K * V + T * (C + 1) * (K + V), 10 * T * K * V + T * (C + 1) * (3 * K + 2 * V)
    if k in ("delta", "gdelta"):
        return (6 * T * K * V + T * (C - 1) * (2 * K + V) + T * (C + 1) * (K + V),
                12 * T * K * V + 2 * T * (C + 1) * (K + V) + 2 * T * (C - 1) * (2 * K + V))
    if k == "attn":
        return 2 * T * (T + 1) * D, 5 * T * (T + 1) * D
    return 0, 0


def med(xs):
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def train(kern, T, D, reps):
    B, H = 1, 512 // D
    scale = D ** -0.5
    g = torch.Generator().manual_seed(0)

    def u(*shape, lo=-1.0, hi=1.0):
        return (torch.rand(*shape, generator=g) * (hi - lo) + lo).requires_grad_(True)
    if kern == "hgrn":
        x, gg = u(B, T, H * D), u(B, T, H * D, lo=-0.5, hi=-0.001)
        inputs = [x, gg]
        fn = lambda: tm.hgrn_scan(x, gg)  # noqa: E731
    else:
        q, k, v = u(B, H, T, D), u(B, H, T, D), u(B, H, T, D)
        if kern == "gla":
            gk = u(B, H, T, D, lo=-0.2, hi=-0.001)
            inputs = [q, k, v, gk]
            fn = lambda: tm.gla_chunk(q, k, v, gk, scale)  # noqa: E731
        elif kern == "retention":
            lg = torch.tensor([math.log(1 - 2.0 ** (-5 - h)) for h in range(H)])
            inputs = [q, k, v]
            fn = lambda: tm.retention_chunk(q, k, v, lg, scale)  # noqa: E731
        elif kern in ("delta", "gdelta"):
            beta = u(B, H, T, lo=0.05, hi=0.95)
            gd = u(B, H, T, lo=-0.2, hi=-0.001) if kern == "gdelta" else None
            inputs = [q, k, v, beta] + ([gd] if gd is not None else [])
            fn = lambda: tm.delta_chunk(tm.l2n(q), tm.l2n(k), v, beta, gd, scale)  # noqa: E731
        elif kern == "attn":
            inputs = [q, k, v]
            fn = lambda: tm.BlockCausalAttention.apply(q, k, v, scale, 0, 256)  # noqa: E731
        else:
            raise SystemExit("unknown kernel " + kern)
    tf, tb, tt = [], [], []
    for r in range(0 if T <= 1024 else 1, reps + 1):   # r = 0: warm-up (skipped for long T)
        for t in inputs:
            t.grad = None
        t0 = time.perf_counter()
        o = fn()
        t1 = time.perf_counter()
        o.backward(torch.ones_like(o))
        t2 = time.perf_counter()
        if r > 0:
            tf.append(t1 - t0)
            tb.append(t2 - t1)
            tt.append(t2 - t0)
        del o
    ff, fb = flops(kern, T, D)
    n = B * H
    print(json.dumps(dict(bench="train", side="torch", kernel=kern, T=T, D=D, H=H, B=B, C=64,
                          threads=int(os.environ["OPENBLAS_NUM_THREADS"]),
                          fwd_best_s=min(tf), fwd_median_s=med(tf), bwd_best_s=min(tb), bwd_median_s=med(tb),
                          total_best_s=min(tt), total_median_s=med(tt), flops_fwd=ff * n, flops_bwd=fb * n,
                          bytes=(B * T * H * D * 4.0 * 8 if kern == "hgrn" else 0))))


@torch.no_grad()
def decode(kern, ctx, D, reps):
    B, H = 1, 512 // D
    scale = D ** -0.5
    q, k, v = torch.rand(B, H, D), torch.rand(B, H, D), torch.rand(B, H, D)
    S = torch.rand(B, H, D, D) * 0.1
    gk = -torch.rand(B, H, D) * 0.2
    beta, gd = torch.rand(B, H), -torch.rand(B, H) * 0.2
    lg = torch.tensor([math.log(1 - 2.0 ** (-5 - h)) for h in range(H)])
    h = torch.rand(B, H * D)
    kc, vc = torch.rand(B, H, ctx, D), torch.rand(B, H, ctx, D)

    def attn():
        s = torch.matmul(q[:, :, None, :], kc.transpose(-1, -2)) * scale
        return torch.matmul(torch.softmax(s, -1), vc)
    fns = dict(gla=lambda: tm.gla_step(S, q, k, v, gk, scale),
               retention=lambda: tm.retention_step(S, q, k, v, lg, scale),
               delta=lambda: tm.delta_step(S, q, k, v, beta, None, scale),
               gdelta=lambda: tm.delta_step(S, q, k, v, beta, gd, scale),
               hgrn=lambda: h.mul_(torch.exp(gk.view(B, -1))).add_(q.view(B, -1)),
               attn=attn)
    fn = fns[kern]
    for _ in range(3):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    print(json.dumps(dict(bench="decode", side="torch", kernel=kern, ctx=ctx, D=D, H=H,
                          threads=int(os.environ["OPENBLAS_NUM_THREADS"]), best_s=min(ts), median_s=med(ts))))


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ["OPENBLAS_NUM_THREADS"]))
    mode, kern, d, reps = sys.argv[1], sys.argv[2], int(sys.argv[4]), int(sys.argv[5])
    for a in sys.argv[3].split(","):   # a comma-separated list of T (train) or context lengths (decode)
        (train if mode == "train" else decode)(kern, int(a), d, reps)
        sys.stdout.flush()
