"""torch_bench.py — the PyTorch side of the benchmark (driven by tests/bench/harness.py).

  torch_bench.py bench DIR STEPS WARMUP FWD DECODE_PROMPT DECODE_NEW [PRECISION]
      the same measurements as `hyblua tests/bench/train_step.lua bench` on the checkpoint and batch
      hyblua wrote to DIR (one JSON line on stdout). PRECISION fp32 (default) | bf16: every F.linear (the
      projections, MLPs and LM head, where hyblua's bf16 mode applies) runs under
      torch.cpu.amp.autocast(dtype=torch.bfloat16) with its output cast back to float32; the mixers stay
      float32 as in hyblua (autocast over the whole model fails in torch 1.13 for gated_deltanet — "eye"
      not implemented for BFloat16 — and for the attention Function's dtype mix).
  torch_bench.py matmul N REPS [DTYPE]   torch.matmul of two N×N float32 (or bfloat16: oneDNN) matrices

Threads: Debian's torch calls a pthread OpenBLAS that ignores torch.set_num_threads, so
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS (and OMP_WAIT_POLICY=PASSIVE) must be in the environment before
torch is imported. run.sh sets them; the defaults below only apply when this file is run by hand.
"""
import json
import os
import sys
import time

THREADS = int(os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("HYBLUA_NUM_THREADS") or "2")
if os.environ.get("HB_TORCH_DEFAULT_ENV") != "1":   # "1": leave the environment alone (the slow configuration)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(THREADS))
    os.environ.setdefault("OMP_NUM_THREADS", os.environ["OPENBLAS_NUM_THREADS"])
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402


def vmhwm_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


def median(xs):
    s = sorted(xs)
    n = len(s)
    return None if n == 0 else (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def use_bf16_linear():
    """F.linear → bf16 autocast with a float32 result (see the module docstring)."""
    linear = torch.nn.functional.linear

    def linear_bf16(x, w, b=None):
        with torch.cpu.amp.autocast(dtype=torch.bfloat16):
            return linear(x, w, b).float()
    torch.nn.functional.linear = linear_bf16


def bench(d, steps, warmup, nfwd, dprompt, dnew, precision="fp32"):
    threads = THREADS
    torch.set_num_threads(threads)
    if precision == "bf16":
        use_bf16_linear()
    elif precision != "fp32":
        sys.exit(f"torch_bench: unknown precision {precision!r} (fp32 or bf16)")
    m = tm.Model.load(d)
    ids = tm.load_safetensors(os.path.join(d, "batch.safetensors"))["input_ids"].long()
    B, T = ids.shape
    out = dict(side="torch", threads=threads, B=B, T=T, params=sum(p.numel() for p in m.parameters()),
               torch=torch.__version__, openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
               omp_threads=os.environ.get("OMP_NUM_THREADS"), omp_wait=os.environ.get("OMP_WAIT_POLICY"),
               precision=precision)
    # torch 1.13's CPU AdamW: the per-tensor loop (foreach=False, also the default on CPU) measured faster
    # here than the multi-tensor foreach path; HB_TORCH_FOREACH=1 selects the latter
    foreach = os.environ.get("HB_TORCH_FOREACH", "0") == "1"
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1,
                            foreach=foreach)
    # `warmup` training steps on a 1×256 slice (the first reports the untouched model's loss on it),
    # then the timed steps on the whole batch (as train_step.lua)
    wids = ids[:1, :min(T, 256)].contiguous()
    if steps == 0 and nfwd > 0:
        with torch.no_grad():
            m.loss(wids)   # forward warm-up
    rec = dict(fwd=[], bwd=[], opt=[], total=[])
    for s in range((warmup if steps > 0 else 0) + steps):
        x = wids if s < warmup else ids
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = m.loss(x)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if s == 0:
            out["init_loss"] = float(loss)
        if s >= warmup:
            rec["fwd"].append(t1 - t0)
            rec["bwd"].append(t2 - t1)
            rec["opt"].append(t3 - t2)
            rec["total"].append(t3 - t0)
        del loss
    if steps > 0:
        out["train"] = dict(rec, best_s=min(rec["total"]), median_s=median(rec["total"]))
        out["rss_train_kb"] = vmhwm_kb()
    del opt
    for p in m.parameters():
        p.grad = None
    if nfwd > 0:
        ft = []
        with torch.no_grad():
            for _ in range(nfwd):
                t0 = time.perf_counter()
                m.forward(ids)
                ft.append(time.perf_counter() - t0)
        out["forward"] = dict(times=ft, best_s=min(ft), median_s=median(ft))
    if dprompt > 0 and dnew > 0:
        row = ids[:1]
        P = min(dprompt, T - dnew)
        cache = m.new_cache(1)
        t0 = time.perf_counter()
        m.prefill(row[:, :P], cache)
        t1 = time.perf_counter()
        st = []
        for i in range(dnew):
            s0 = time.perf_counter()
            m.step(row[:, P + i], cache)
            st.append(time.perf_counter() - s0)
        out["decode"] = dict(prompt=P, new=dnew, prefill_s=t1 - t0, step_times=st, median_step_s=median(st),
                             best_step_s=min(st))
    print(json.dumps(out))


def matmul(n, reps, dtype="float32"):
    torch.set_num_threads(THREADS)
    a, b = torch.randn(n, n).to(getattr(torch, dtype)), torch.randn(n, n).to(getattr(torch, dtype))
    a @ b
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t0)
    print(json.dumps(dict(side="torch", N=n, dtype=dtype, times=ts, best_s=min(ts), gflops_best=2 * n ** 3 / min(ts) / 1e9,
                          gflops_median=2 * n ** 3 / median(ts) / 1e9,
                          openblas_threads=os.environ.get("OPENBLAS_NUM_THREADS"),
                          omp_threads=os.environ.get("OMP_NUM_THREADS"), omp_wait=os.environ.get("OMP_WAIT_POLICY"))))


if __name__ == "__main__":
    if sys.argv[1] == "bench":
        bench(sys.argv[2], *(int(a) for a in sys.argv[3:8]), *sys.argv[8:9])
    elif sys.argv[1] == "matmul":
        matmul(int(sys.argv[2]), int(sys.argv[3]), *sys.argv[4:5])
    else:
        sys.exit("usage: torch_bench.py bench DIR STEPS WARMUP FWD DPROMPT DNEW [fp32|bf16] | matmul N REPS [DTYPE]")
