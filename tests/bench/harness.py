"""harness.py — hyblua vs PyTorch-CPU benchmark driver (run it through tests/bench/run.sh).

One run measures both sides with the same thread count, interleaving them configuration by
configuration so that machine noise hits both alike, and writes
  docs/performance.md                  the report (tables of ratios, GFLOP/s vs sgemm, RSS)
  tests/bench/results/latest.json      a small summary (committed)
  tests/bench/results/raw-*.jsonl      every raw measurement (git-ignored)

Every measurement runs in a fresh process: hyblua through `./hyblua tests/bench/train_step.lua`, the
kernels through build/bench/kernels_bench (C, linked against build/libhbcore.a), PyTorch through
tests/bench/torch_bench.py / torch_kernels.py with /usr/bin/python3 (Debian's python3-torch). This
driver never imports torch itself.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
PY = os.environ.get("HB_BENCH_PYTHON", "/usr/bin/python3")
HYBLUA = os.path.join(ROOT, "hyblua")
KBENCH = os.path.join(ROOT, "build", "bench", "kernels_bench")

MIXERS = ["transformer", "hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet"]
HYBRIDS = ["hgrn", "retnet", "gla", "hgrn2", "delta_net", "gated_deltanet"]
KERNELS = ["gla", "retention", "delta", "gdelta", "hgrn", "attn"]
KERNEL_NAMES = {"gla": "GLA (chunk, per-channel decay)", "retention": "retention (chunk)",
                "delta": "delta rule (WY chunk)", "gdelta": "gated delta rule (WY chunk)",
                "hgrn": "HGRN (chunked scan)", "attn": "softmax attention (flash, causal)"}
VOCAB, LAYERS, TOKENS = 4096, 4, 4096
# issue 13's mixers (the "next" section): hyblua only, torch_models.py has no PyTorch model of them
NEXT_MIXERS = ["kda", "gated_deltaproduct", "rwkv7", "mamba2"]
NEXT_KERNELS = ["kda", "dproduct", "dplr", "ssd"]
NEXT_KERNEL_NAMES = {"kda": "KDA (WY chunk, per-channel decay)", "dproduct": "Gated DeltaProduct (WY chunk, NH = 2)",
                     "dplr": "RWKV-7 DPLR (chunk)", "ssd": "Mamba-2 SSD (chunked scan)"}


def model_config(mixer, d, hybrid):
    """The benchmark's model configs: 4 layers, vocab 4096, head dim 64, fla defaults otherwise."""
    H = d // 64
    c = {"model_type": mixer, "hidden_size": d, "num_hidden_layers": LAYERS, "vocab_size": VOCAB}
    if mixer == "transformer":
        c["num_heads"] = H
    elif mixer == "hgrn":
        c["expand_ratio"] = 1
    elif mixer == "retnet":
        c["num_heads"] = H                       # dk 64, dv 128 (expand_v 2), hidden_ratio 2: fla defaults
    elif mixer == "gla":
        c.update(num_heads=H, expand_k=1.0, expand_v=1.0)
    elif mixer == "hgrn2":
        c["expand_ratio"] = 64
    elif mixer == "delta_net":
        c["num_heads"] = H
    elif mixer == "gated_deltanet":
        c.update(num_heads=(3 * d // 4) // 64, head_dim=64)   # fla's sizing: H·dk = 0.75 d, dv = 128
    elif mixer == "kda":
        c.update(num_heads=H, head_dim=64)                    # expand_v 1 (fla's default), short convs, gate
    elif mixer == "gated_deltaproduct":                       # gated_deltanet's sizing, 2 Householder steps
        c.update(num_heads=(3 * d // 4) // 64, head_dim=64, num_householder=2, use_forget_gate=True)
    elif mixer == "rwkv7":
        c["head_dim"] = 64                                    # H = d/64, fla's LoRA dims, sqrelu MLP ratio 4
    elif mixer == "mamba2":
        c["head_dim"] = 64                                    # expand 2, state 128, 1 group: H = 2d/64
    if hybrid:
        c["attn"] = {"layers": [LAYERS - 1], "num_heads": H, "num_kv_heads": H}
    return c


def kernel_flops(kind, T, K, V, C=64):
    """FLOPs of one (batch, head)'s chunked forward + backward over T tokens: the formulas of the kernel section
    (2 per multiply-add, causal halves, element-wise work left out); attention: K = V = head dim."""
    if kind == "gla":        # GLA, HGRN-2 and retention
        return 4 * T * K * V + T * (C + 1) * (K + V) + 8 * T * K * V + T * (C + 1) * (3 * K + 2 * V)
    if kind == "delta":      # delta rule and gated delta rule (WY)
        return (6 * T * K * V + T * (C - 1) * (2 * K + V) + T * (C + 1) * (K + V)
                + 12 * T * K * V + 2 * T * (C + 1) * (K + V) + 2 * T * (C - 1) * (2 * K + V))
    if kind == "attn":
        return 7 * T * (T + 1) * K
    return 0                 # HGRN: element-wise


def model_flops_per_token(label, d, T, params):
    """Training FLOPs per token of a benchmark config (model_config): 6·N for the matrix products, N the parameters
    without the input embedding (a lookup; the untied LM head is a product and counts), plus every layer's token
    mixer from kernel_flops (attention with head dim 64 over the causal half). None when params is unknown or the
    mixer is not one of the paper's."""
    if not params:
        return None
    mixer, hybrid = label.replace(" 3:1", ""), label.endswith(" 3:1")
    H = d // 64
    heads = {"transformer": ("attn", H, 64, 64), "hgrn": (None, 0, 0, 0), "retnet": ("gla", H, 64, 128),
             "gla": ("gla", H, 64, 64), "hgrn2": ("gla", H, 64, 64), "delta_net": ("delta", H, 64, 64),
             "gated_deltanet": ("delta", (3 * d // 4) // 64, 64, 128)}
    if mixer not in heads:
        return None
    kind, nh, K, V = heads[mixer]
    mix = 0
    for layer in range(LAYERS):
        if mixer == "transformer" or (hybrid and layer == LAYERS - 1):
            mix += H * kernel_flops("attn", T, 64, 64)
        else:
            mix += nh * kernel_flops(kind, T, K, V)
    return 6 * (params - VOCAB * d) + mix / T


def config_label(mixer, hybrid):
    return f"{mixer} 3:1" if hybrid else mixer


class Runner:
    def __init__(self, threads, raw_path, verbose=True):
        self.env = dict(os.environ)
        n = str(threads)
        self.env.update(HYBLUA_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, OMP_NUM_THREADS=n, OMP_WAIT_POLICY="PASSIVE")
        # hyblua re-runs itself with OPENBLAS_CORETYPE set when OpenBLAS does not know the CPU and falls back
        # to SSE3 kernels (kernels/parallel.h); torch's OpenBLAS gets the same kernels, or the comparison
        # would flatter hyblua
        if "OPENBLAS_CORETYPE" not in self.env:
            ct = subprocess.run(["./hyblua", "-e", 'io.write(os.getenv("OPENBLAS_CORETYPE") or "")'],
                                capture_output=True, text=True).stdout.strip()
            if ct:
                self.env["OPENBLAS_CORETYPE"] = ct
        self.threads = threads
        self.raw = open(raw_path, "w")
        self.verbose = verbose
        self.failures = []

    def run(self, tag, argv, env=None, timeout=900, expect_json=True):
        t0 = time.time()
        try:
            p = subprocess.run(argv, cwd=ROOT, env=env or self.env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.failures.append(f"{tag}: timed out after {timeout}s")
            print(f"  [{tag}] TIMEOUT", flush=True)
            return []
        out = []
        # every top-level JSON object in stdout, one per line or pretty-printed over several
        dec, text, i = json.JSONDecoder(), p.stdout, 0
        while (j := text.find("{", i)) >= 0:
            try:
                rec, i = dec.raw_decode(text, j)
            except json.JSONDecodeError:
                i = j + 1
                continue
            if isinstance(rec, dict):
                rec["_tag"] = tag
                out.append(rec)
                self.raw.write(json.dumps(rec) + "\n")
        self.raw.flush()
        if p.returncode != 0 or (expect_json and not out):
            msg = (p.stderr or p.stdout).strip().splitlines()[-3:]
            self.failures.append(f"{tag}: exit {p.returncode}: {' | '.join(msg)}")
            print(f"  [{tag}] FAILED: {' | '.join(msg)}", flush=True)
        elif self.verbose:
            print(f"  [{tag}] {time.time() - t0:.1f}s", flush=True)
        return out


def machine_info():
    info = {"python": platform.python_version(), "kernel": platform.release(), "nproc": os.cpu_count()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "L2 cache", "L3 cache", "Flags"):
                v = v.strip()
                if k.strip() == "Flags":
                    v = " ".join(f for f in v.split() if f in ("avx2", "avx512f", "fma", "avx512_bf16", "amx_tile"))
                info[k.strip()] = v
    except OSError:
        pass
    try:
        with open("/proc/meminfo") as f:
            info["mem_gib"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    try:
        info["openblas"] = subprocess.run(["pkg-config", "--modversion", "openblas"], capture_output=True,
                                          text=True).stdout.strip()
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                     text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        info["git_dirty"] = bool(dirty)
        info["hyblua_version"] = subprocess.run([HYBLUA, "-v"], capture_output=True, text=True).stdout.strip()
        info["blas_core"] = subprocess.run([HYBLUA, "-e", "io.write(hb.blas_corename() or '?')"], capture_output=True,
                                           text=True).stdout.strip()
        info["kgemm_path"] = subprocess.run([HYBLUA, "-e", "io.write((hb.kgemm_path()))"], capture_output=True,
                                            text=True).stdout.strip()
    except OSError:
        pass
    info["coretype_env"] = os.environ.get("OPENBLAS_CORETYPE")
    return info


def narrow_kernels(mi):
    """A warning when OpenBLAS runs AVX2 kernels on a CPU with AVX-512 because OPENBLAS_CORETYPE says so (on the
    2-core Zen 5 machine of 2026-12-07 that halved sgemm: tests/bench/results/coretype_zen5.md), else None."""
    core, env = (mi.get("blas_core") or "").lower(), mi.get("coretype_env")
    if env and "avx512f" in mi.get("Flags", "").split() and core in ("haswell", "zen", "sandybridge", "prescott"):
        return (f"OPENBLAS_CORETYPE={env} makes OpenBLAS run its {mi.get('blas_core')} kernels on a CPU with AVX-512; "
                "both sides get them, so ratios stay like for like, but absolute figures are below what this CPU "
                "does with OpenBLAS's own choice (unset the variable, or set SkylakeX)")
    return None


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


# ---------------------------------------------------------------------------------------------------
# sections


def thread_check(r, work):
    """torch with and without the thread environment: a 1024³ matmul (2 alternations) and a training step
    (gla, d 256, B 2, T 512; one process each, best of 3 steps)."""
    slow_env = {k: v for k, v in r.env.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    slow_env["HB_TORCH_DEFAULT_ENV"] = "1"
    cdir = os.path.join(work, "thread-check")
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, "bench_config.json"), "w") as f:
        json.dump(model_config("gla", 256, False), f)
    have_model = bool(r.run("init-thread-check", [HYBLUA, os.path.join(HERE, "train_step.lua"), "init",
                                                  os.path.join(cdir, "bench_config.json"), cdir, "1", "2", "512"]))
    res = {"env": [], "default": [], "env_step": [], "default_step": []}
    for rnd in range(2):
        for name, env in (("env", r.env), ("default", slow_env)):
            for rec in r.run(f"torch-matmul-{name}", [PY, os.path.join(HERE, "torch_bench.py"), "matmul", "1024", "10"],
                             env=env):
                res[name].append(rec["gflops_best"])
            if have_model and rnd == 0:
                for rec in r.run(f"torch-step-{name}", [PY, os.path.join(HERE, "torch_bench.py"), "bench", cdir,
                                                        "3", "1", "0", "0", "0"], env=env):
                    res[name + "_step"].append(1024 / rec["train"]["best_s"])
    return {k: max(v) if v else None for k, v in res.items()}


def matmul_section(r):
    out = {"hyblua": [], "sgemm": [], "torch": []}
    for _ in range(3):
        for rec in r.run("hyblua-matmul", [HYBLUA, os.path.join(HERE, "train_step.lua"), "matmul", "1024", "20"]):
            out["hyblua"].append(rec["gflops_best"])
        for rec in r.run("sgemm", [KBENCH, "sgemm", "1024", "20"]):
            out["sgemm"].append(rec["gflops_best"])
        for rec in r.run("torch-matmul", [PY, os.path.join(HERE, "torch_bench.py"), "matmul", "1024", "20"]):
            out["torch"].append(rec["gflops_best"])
    return {k: max(v) if v else None for k, v in out.items()}


def kernel_section(r, Ts, Ds, reps, attn_max):
    """Chunked forward+backward of every kernel, one process per (side, kernel, D) looping over T."""
    rows = []
    for D in Ds:
        for k in KERNELS:
            if k == "hgrn" and D != Ds[0]:
                continue   # element-wise over H·D = 512 channels: the head dim does not matter
            ts = [T for T in Ts if T <= attn_max.get(D, max(Ts))]
            tl = ",".join(map(str, ts))
            hy = {rec["T"]: rec for rec in r.run(f"kernel-{k}-D{D}", [KBENCH, "train", k, tl, str(D), str(reps)])}
            to = {rec["T"]: rec for rec in r.run(f"torch-kernel-{k}-D{D}", [PY, os.path.join(HERE, "torch_kernels.py"),
                                                                           "train", k, tl, str(D), str(reps)])}
            for T in ts:
                rows.append({"kernel": k, "T": T, "D": D, "hyblua": hy.get(T), "torch": to.get(T)})
    return rows


def decode_kernel_section(r, ctxs, Ds, reps):
    rows = []
    for D in Ds:
        for k in KERNELS:
            if k == "hgrn" and D != Ds[0]:
                continue
            cl = ",".join(map(str, ctxs if k == "attn" else ctxs[:1]))
            hy = {rec["ctx"]: rec for rec in r.run(f"decode-{k}-D{D}", [KBENCH, "decode", k, cl, str(D), str(reps)])}
            to = {rec["ctx"]: rec for rec in r.run(f"torch-decode-{k}-D{D}", [PY, os.path.join(HERE, "torch_kernels.py"),
                                                                             "decode", k, cl, str(D), str(reps)])}
            for c in map(int, cl.split(",")):
                rows.append({"kernel": k, "ctx": c, "D": D, "hyblua": hy.get(c), "torch": to.get(c)})
    return rows


def next_section(r, work, Ts, Ds, reps, grid):
    """Issue 13's mixers, hyblua only. Kernels: chunked forward + backward of KDA, Gated DeltaProduct,
    RWKV-7's DPLR and Mamba-2's SSD (kernels_bench train+sgemm), one process per (kernel, D) looping over
    T, a 1024³ sgemm timed 3 times right before and 3 times right after each T's repetitions in the same
    process, so that every kernel row is divided by an sgemm measured under the same load (best of each). Models: training tokens/s of each type pure
    and 3:1 (train_step.lua)."""
    out = {"kernels": [], "models": []}
    for D in Ds:
        for k in NEXT_KERNELS:
            tl = ",".join(map(str, Ts))
            for rec in r.run(f"next-kernel-{k}-D{D}", [KBENCH, "train+sgemm", k, tl, str(D), str(reps)]):
                sg = [rec["sgemm_gflops_best"]] if rec.get("sgemm_gflops_best") else []
                fl = rec["flops_fwd"] + rec["flops_bwd"]
                row = {"kernel": k, "T": rec["T"], "D": D, "H": rec["H"], "ms": rec["total_best_s"] * 1e3,
                       "fwd_ms": rec["fwd_best_s"] * 1e3, "bwd_ms": rec["bwd_best_s"] * 1e3,
                       "us_per_token": rec["total_best_s"] * 1e6 / rec["T"],
                       "gflops": gflops(fl, rec["total_best_s"]), "gflops_fwd": gflops(rec["flops_fwd"], rec["fwd_best_s"]),
                       "gflops_bwd": gflops(rec["flops_bwd"], rec["bwd_best_s"]), "sgemm": sg[0] if sg else None}
                row["pct_sgemm"] = 100 * row["gflops"] / row["sgemm"] if row["gflops"] and row["sgemm"] else None
                out["kernels"].append(row)
    for mixer, hybrid, d, T in grid:
        B = max(1, TOKENS // T)
        label = config_label(mixer, hybrid)
        tag = f"next-{label.replace(' ', '_').replace(':', 'to')}-d{d}-T{T}"
        cdir, init = init_model(r, work, tag, mixer, d, hybrid, B, T)
        row = {"mixer": label, "d": d, "T": T, "B": B, "params": init[0].get("params") if init else None}
        if init:
            out_ = r.run(f"hyblua-{tag}", [HYBLUA, os.path.join(HERE, "train_step.lua"), "bench", cdir,
                                           "3", "1", "0", "0", "0"])
            if out_ and out_[0].get("train"):
                tr = out_[0]["train"]
                row.update(train_tok_s=B * T / tr["best_s"], train_tok_s_median=B * T / tr["median_s"],
                           fwd_s=min(tr["fwd"]), bwd_s=min(tr["bwd"]), opt_s=min(tr["opt"]),
                           rss_mb=out_[0].get("rss_train_kb", 0) / 1024, loss=out_[0].get("init_loss"))
        out["models"].append(row)
        shutil.rmtree(cdir, ignore_errors=True)
    return out


def init_model(r, work, tag, mixer, d, hybrid, B, T):
    """The benchmark model of (mixer, d, hybrid) created by hyblua (hb.models.new, seed 1234) with a B×T
    batch in work/tag; returns (that folder, the init process's JSON records or None on failure)."""
    cdir = os.path.join(work, tag)
    os.makedirs(cdir, exist_ok=True)
    with open(os.path.join(cdir, "bench_config.json"), "w") as f:
        json.dump(model_config(mixer, d, hybrid), f)
    init = r.run(f"init-{tag}", [HYBLUA, os.path.join(HERE, "train_step.lua"), "init",
                                 os.path.join(cdir, "bench_config.json"), cdir, "1234", str(B), str(T)])
    return cdir, init


def model_section(r, work, grid, steps, warmup, nfwd, dprompt, dnew, fwd_max):
    """Both sides per configuration, each in a fresh process, the order alternating. Forward-only passes
    are skipped where d·T > fwd_max (the full run's d 512, T 2048 configs, to save time)."""
    rows = []
    for idx, (mixer, hybrid, d, T) in enumerate(grid):
        B = max(1, TOKENS // T)
        label = config_label(mixer, hybrid)
        tag = f"{label.replace(' ', '_').replace(':', 'to')}-d{d}-T{T}"
        cdir, init = init_model(r, work, tag, mixer, d, hybrid, B, T)
        if not init:
            rows.append({"mixer": label, "d": d, "T": T, "B": B})
            continue
        dp, dn = (dprompt, dnew) if T >= dprompt + dnew and T == min(g[3] for g in grid) else (0, 0)
        nf = 0 if d * T > fwd_max else nfwd
        args = [str(steps), str(warmup), str(nf), str(dp), str(dn)]
        hy_cmd = [HYBLUA, os.path.join(HERE, "train_step.lua"), "bench", cdir] + args
        to_cmd = [PY, os.path.join(HERE, "torch_bench.py"), "bench", cdir] + args
        res = {}
        order = [("hyblua", hy_cmd), ("torch", to_cmd)]
        if idx % 2:
            order.reverse()
        for side, cmd in order:
            out = r.run(f"{side}-{tag}", cmd)
            res[side] = out[0] if out else None
        rows.append({"mixer": label, "d": d, "T": T, "B": B, "params": init[0].get("params"), **res})
        shutil.rmtree(cdir, ignore_errors=True)
    return rows


# (trans, M, N, K, what it is in a training step: 4096 tokens, d 256 / 512, MLP 768 / 1536, vocab 4096)
BF16_SHAPES = [("NN", 1024, 1024, 1024, "square"),
               ("NT", 4096, 768, 256, "d 256: MLP up/gate, forward (x·Wᵀ)"),
               ("NN", 4096, 256, 768, "d 256: MLP down, input gradient (g·W)"),
               ("TN", 256, 768, 4096, "d 256: MLP weight gradient (xᵀ·g)"),
               ("NT", 4096, 4096, 256, "d 256: LM head, forward"),
               ("TN", 256, 4096, 4096, "d 256: LM head, weight gradient"),
               ("NT", 4096, 1536, 512, "d 512: MLP up/gate, forward"),
               ("NN", 4096, 512, 1536, "d 512: MLP down, input gradient"),
               ("TN", 512, 1536, 4096, "d 512: MLP weight gradient")]
BF16_MODELS = [("gated_deltanet", False), ("gla", False), ("transformer", False), ("gated_deltanet", True)]
BF16_VARIANTS = [("hyblua", "fp32"), ("hyblua", "bf16"), ("torch", "fp32"), ("torch", "bf16")]


def bf16_section(r, work, quick, fixtures, acc_steps):
    """The optional bf16 matmul mode, measured in one run: hb_matmul fp32 vs bf16 GFLOP/s at 1 and 2
    threads (kernels_bench gemm; the two alternate in one process), torch's fp32 and bf16 (oneDNN) 1024³
    matmul, training tokens/s of hyblua fp32 / bf16 and torch fp32 / bf16 (F.linear under autocast), each a
    fresh process, the order rotating, best of the rounds; the accuracy on the fixtures; and the same
    recipe trained fp32 vs bf16 (acc_steps steps, 0 = skip)."""
    res = {"gemm": [], "torch_matmul": {}, "models": [], "fixtures": [], "train": {}}
    reps, rounds = (3, 1) if quick else (6, 2)
    spec = ",".join(f"{t}:{m}:{n}:{k}" for t, m, n, k, _ in BF16_SHAPES)
    for th in sorted({1, r.threads}):
        env = dict(r.env, HYBLUA_NUM_THREADS=str(th), OPENBLAS_NUM_THREADS=str(th), OMP_NUM_THREADS=str(th))
        best = {}
        for _ in range(2):   # two processes, best of each
            for rec in r.run(f"bf16-gemm-t{th}", [KBENCH, "gemm", spec, str(reps)], env=env):
                key = (rec["trans"], rec["M"], rec["N"], rec["K"])
                old = best.get(key)
                if old:
                    rec["fp32_best_s"] = min(rec["fp32_best_s"], old["fp32_best_s"])
                    rec["bf16_best_s"] = min(rec["bf16_best_s"], old["bf16_best_s"])
                best[key] = rec
        for t, m, n, k, role in BF16_SHAPES:
            rec = best.get((t, m, n, k))
            if rec:
                fl = 2.0 * m * n * k
                res["gemm"].append({"trans": t, "M": m, "N": n, "K": k, "role": role, "threads": th,
                                    "native": rec["native"], "gflops_fp32": fl / rec["fp32_best_s"] / 1e9,
                                    "gflops_bf16": fl / rec["bf16_best_s"] / 1e9,
                                    "ratio": rec["fp32_best_s"] / rec["bf16_best_s"], "rel_diff": rec["rel_diff"]})
    for dt in ("float32", "bfloat16"):
        for rec in r.run(f"bf16-torch-matmul-{dt}", [PY, os.path.join(HERE, "torch_bench.py"), "matmul", "1024", "10", dt]):
            res["torch_matmul"][dt] = rec["gflops_best"]
    for d in ([256] if quick else [256, 512]):
        for mixer, hybrid in BF16_MODELS:
            T = 512
            B = TOKENS // T
            label = config_label(mixer, hybrid)
            tag = f"bf16-{label.replace(' ', '_').replace(':', 'to')}-d{d}"
            cdir, init = init_model(r, work, tag, mixer, d, hybrid, B, T)
            row = {"mixer": label, "d": d, "T": T, "B": B, "params": init[0].get("params") if init else None}
            if init:
                for rnd in range(rounds):
                    k = (rnd + len(res["models"])) % len(BF16_VARIANTS)
                    for side, prec in BF16_VARIANTS[k:] + BF16_VARIANTS[:k]:
                        cmd = ([HYBLUA, os.path.join(HERE, "train_step.lua")] if side == "hyblua" else
                               [PY, os.path.join(HERE, "torch_bench.py")]) + ["bench", cdir, "3", "1", "0", "0", "0", prec]
                        out = r.run(f"{side}-{prec}-{tag}", cmd)
                        if out and out[0].get("train"):
                            key = f"{side}_{prec}"
                            tok_s = B * T / out[0]["train"]["best_s"]
                            row[f"tok_s_{key}"] = max(tok_s, row.get(f"tok_s_{key}", 0))
                            row[f"loss_{key}"] = out[0].get("init_loss")
                l32, l16 = row.get("loss_hyblua_fp32"), row.get("loss_hyblua_bf16")
                if l32 and l16:   # derived at full precision (latest.json keeps 4 significant digits)
                    row["loss_rel_bf16"] = abs(l16 - l32) / abs(l32)
            res["models"].append(row)
            shutil.rmtree(cdir, ignore_errors=True)
    if fixtures and os.path.isdir(fixtures):
        res["fixtures"] = [{k: v for k, v in rec.items() if k != "_tag"} for rec in
                           r.run("bf16-fixtures", [HYBLUA, os.path.join(HERE, "bf16_accuracy.lua"), fixtures])]
    if acc_steps > 0:
        res["train"] = bf16_train_accuracy(r, work, acc_steps)
    return res


def bf16_train_accuracy(r, work, steps):
    """recipes/gdn_3to1.lua (d 128, 8 layers, 3:1, byte-level sample data, seed 0) trained `steps` steps
    in fp32 and in bf16: the loss curves' differences and the final validation loss / bits per byte of
    each. The figures are derived here, at full precision (latest.json keeps 4 significant digits); the
    whole curves go to the raw log."""
    runs = {}
    every = max(1, steps // 4)
    for prec in ("fp32", "bf16"):
        d = os.path.join(work, f"acc-{prec}")
        shutil.rmtree(d, ignore_errors=True)
        t0 = time.time()
        r.run(f"bf16-train-{prec}", [HYBLUA, os.path.join(ROOT, "recipes", "gdn_3to1.lua"),
                                     "--set", f"train.steps={steps}", "--set", f"train.eval_every={every}",
                                     "--set", f"train.save_every={10 * steps}", "--set", f"train.matmul_precision={prec}",
                                     "--set", f"out={d}", "--set", f"name=bf16-accuracy-{prec}"], timeout=3600,
              expect_json=False)
        try:
            with open(os.path.join(d, "results.json")) as f:
                res = json.load(f)
            losses, vals = {}, {}
            with open(os.path.join(d, "metrics.jsonl")) as f:
                text = f.read()
            dec, i = json.JSONDecoder(), 0
            while (j := text.find("{", i)) >= 0:   # one record per line (or pretty-printed)
                rec, i = dec.raw_decode(text, j)
                if "loss" in rec and "step" in rec:
                    losses[rec["step"]] = rec["loss"]
                if "val_loss" in rec and "step" in rec:
                    vals[rec["step"]] = rec["val_loss"]
            runs[prec] = dict(res, losses=[losses.get(k) for k in range(1, steps + 1)], val=vals,
                              wall_s=time.time() - t0)
        except (OSError, ValueError) as e:
            r.failures.append(f"bf16-train-{prec}: no results ({e})")
        shutil.rmtree(d, ignore_errors=True)
    out = {"steps": steps, "recipe": "recipes/gdn_3to1.lua"}
    if len(runs) < 2:
        return out
    a, b = runs["fp32"], runs["bf16"]
    r.raw.write(json.dumps({"_tag": "bf16-train-curves", "fp32": a["losses"], "bf16": b["losses"],
                            "val_fp32": a["val"], "val_bf16": b["val"]}) + "\n")
    pairs = [(x, y) for x, y in zip(a["losses"], b["losses"]) if x is not None and y is not None]
    k = max(1, steps // 10)

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None
    out.update(params=a.get("params"), wall_s_fp32=a["wall_s"], wall_s_bf16=b["wall_s"], last_k=k,
               rows=[{"step": st, "fp32": a["losses"][st - 1], "bf16": b["losses"][st - 1],
                      "delta": (b["losses"][st - 1] - a["losses"][st - 1])
                      if a["losses"][st - 1] is not None and b["losses"][st - 1] is not None else None}
                     for st in sorted({1, max(1, steps // 4), max(1, steps // 2), max(1, 3 * steps // 4), steps})],
               last_fp32=mean(a["losses"][-k:]), last_bf16=mean(b["losses"][-k:]),
               mean_abs_diff=sum(abs(x - y) for x, y in pairs) / len(pairs) if pairs else None,
               step_noise_fp32=mean([abs(x - y) for x, y in zip(a["losses"][1:], a["losses"][:-1])
                                     if x is not None and y is not None]),
               max_abs_diff=max(abs(x - y) for x, y in pairs) if pairs else None,
               val_loss_fp32=a.get("val_loss"), val_loss_bf16=b.get("val_loss"),
               val_bpb_fp32=a.get("val_bpb"), val_bpb_bf16=b.get("val_bpb"),
               val_steps=[{"step": int(st), "fp32": a["val"][st], "bf16": b["val"][st]}
                          for st in sorted(set(a["val"]) & set(b["val"]), key=int)])
    if out["last_fp32"] is not None and out["last_bf16"] is not None:
        out["last_delta"] = out["last_bf16"] - out["last_fp32"]
    if a.get("val_loss") and b.get("val_loss"):
        out["val_delta"] = b["val_loss"] - a["val_loss"]
        out["val_delta_pct"] = 100 * out["val_delta"] / a["val_loss"]
    return out


# ---------------------------------------------------------------------------------------------------
# report


def ratio(a, b):
    return a / b if a and b else None


def fmt(x, spec=".2f", none="—"):
    return none if x is None else format(x, spec)


def gflops(flop, s):
    return flop / s / 1e9 if flop and s else None


def mfu(s, side, mm):
    """Model FLOPs utilisation of one side of a summarized model row against the run's sgemm (None if unknown)."""
    f, tok, peak = s.get("flops_per_token"), s.get(f"train_tok_s_{side}"), (mm or {}).get("sgemm")
    return f * tok / (peak * 1e9) if f and tok and peak else None


def summarize_models(rows):
    out = []
    for row in rows:
        hy, to = row.get("hyblua"), row.get("torch")
        tokens = row["B"] * row["T"]
        s = {"mixer": row["mixer"], "d": row["d"], "T": row["T"], "B": row["B"], "params": row.get("params")}
        s["flops_per_token"] = model_flops_per_token(row["mixer"], row["d"], row["T"], row.get("params"))
        if hy and to:
            s["loss_hyblua"], s["loss_torch"] = hy.get("init_loss"), to.get("init_loss")
            if s["loss_hyblua"] is not None and s["loss_torch"] is not None:
                s["loss_rel_diff"] = abs(s["loss_hyblua"] - s["loss_torch"]) / abs(s["loss_torch"])
            for side, rec in (("hyblua", hy), ("torch", to)):
                tr = rec["train"]
                s[f"train_tok_s_{side}"] = tokens / tr["best_s"]
                s[f"train_tok_s_median_{side}"] = tokens / tr["median_s"]
                for ph in ("fwd", "bwd", "opt"):
                    s[f"{ph}_s_{side}"] = min(tr[ph])
                s[f"other_s_{side}"] = max(0.0, tr["best_s"] - min(tr["fwd"]) - min(tr["bwd"]) - min(tr["opt"]))
                if rec.get("forward"):
                    s[f"fwd_tok_s_{side}"] = tokens / rec["forward"]["best_s"]
                if rec.get("decode"):
                    s[f"decode_tok_s_{side}"] = 1.0 / rec["decode"]["median_step_s"]
                    s[f"prefill_s_{side}"] = rec["decode"]["prefill_s"]
                s[f"rss_mb_{side}"] = rec.get("rss_train_kb", 0) / 1024
            s["train_ratio"] = ratio(s["train_tok_s_hyblua"], s["train_tok_s_torch"])
            s["fwd_ratio"] = ratio(s.get("fwd_tok_s_hyblua"), s.get("fwd_tok_s_torch"))
            s["decode_ratio"] = ratio(s.get("decode_tok_s_hyblua"), s.get("decode_tok_s_torch"))
            s["rss_ratio"] = ratio(s.get("rss_mb_hyblua"), s.get("rss_mb_torch"))
            for ph in ("fwd", "bwd", "opt"):
                s[f"{ph}_time_ratio"] = ratio(s[f"{ph}_s_hyblua"], s[f"{ph}_s_torch"])
        out.append(s)
    return out


def summarize_kernels(rows, sgemm):
    out = []
    for row in rows:
        s = {"kernel": row["kernel"], "T": row["T"], "D": row["D"]}
        for side in ("hyblua", "torch"):
            rec = row.get(side)
            if not rec:
                continue
            fl = rec["flops_fwd"] + rec["flops_bwd"]
            s[f"ms_{side}"] = rec["total_best_s"] * 1e3
            s[f"fwd_ms_{side}"] = rec["fwd_best_s"] * 1e3
            s[f"bwd_ms_{side}"] = rec["bwd_best_s"] * 1e3
            s[f"us_per_token_{side}"] = rec["total_best_s"] * 1e6 / row["T"]
            s[f"gflops_{side}"] = gflops(fl, rec["total_best_s"])
            if rec.get("bytes"):
                s[f"gbs_{side}"] = rec["bytes"] / rec["total_best_s"] / 1e9
            if sgemm and s.get(f"gflops_{side}"):
                s[f"pct_sgemm_{side}"] = 100 * s[f"gflops_{side}"] / sgemm
        s["speedup"] = ratio(s.get("ms_torch"), s.get("ms_hyblua"))
        out.append(s)
    return out


def bf16_report(w, meta, bf):
    """The bf16 section of the report (mixed precision, labelled as such everywhere)."""
    sm = (meta.get("sections") or {}).get("bf16", {})
    w("## bf16 mixed precision (optional: `hb.set_matmul_precision(\"bf16\")`)")
    w("")
    w("**Mixed precision, not float32.** In this mode every float32 matrix product of hyblua's matmul/linear op "
      "— the projections, MLPs and LM head, forward and backward — rounds both operands to bfloat16 and "
      "accumulates in float32 (kernels/gemm_bf16.c: AVX512_BF16 `vdpbf16ps`, 2 multiply-adds per float32 lane); "
      "weights, activations, gradients and the optimiser stay float32, and the token mixers and attention keep "
      "float32 products. Every number in this section labelled bf16 is from that mode; the fp32 numbers are "
      "hyblua's default. torch bf16 is `torch.cpu.amp.autocast(dtype=torch.bfloat16)` around every `F.linear` "
      "(the same products; output cast back to float32; autocast over the whole model fails in torch "
      f"{meta.get('torch', '1.13')} — `\"eye\" not implemented for 'BFloat16'` in gated_deltanet, a dtype mismatch in "
      "the attention Function — so its mixers stay float32 as hyblua's do) and runs on oneDNN's bf16 kernels.")
    w("")
    if sm:
        w(f"Measured on {sm.get('date', '?')} in {fmt(sm.get('elapsed_min'), '.1f')} min "
          f"(`tests/bench/run.sh --only bf16{' --quick' if sm.get('quick') else ''}`), load average "
          f"{sm.get('load_start', '?')} / {sm.get('load_end', '?')}.")
        w("")
    g = bf.get("gemm") or []
    if g:
        w("### Matrix products: hyblua fp32 (cblas_sgemm) vs hyblua bf16")
        w("")
        w("`hb_matmul` on float32 operands in both precisions (`kernels_bench gemm`: the two alternate in one "
          "process; fp32 is OpenBLAS sgemm split over hyblua's thread pool exactly as training runs it), best of "
          "2 processes × the repetitions. op(A) is M×K, op(B) K×N; NT is a forward projection x·Wᵀ, NN an input "
          "gradient g·W, TN a weight gradient xᵀ·g. \"rel. diff\" is ‖C_bf16 − C_fp32‖/‖C_fp32‖ on uniform ±1 "
          "data.")
        w("")
        w("| op | M | N | K | what | threads | fp32 GFLOP/s | **bf16 GFLOP/s (mixed)** | **bf16 / fp32** | rel. diff |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for x in g:
            w(f"| {x['trans']} | {x['M']} | {x['N']} | {x['K']} | {x['role']} | {x['threads']} | "
              f"{fmt(x.get('gflops_fp32'), '.1f')} | **{fmt(x.get('gflops_bf16'), '.1f')}** | **{fmt(x.get('ratio'))}** | "
              f"{fmt(x.get('rel_diff'), '.1e')} |")
        w("")
        for th in sorted({x["threads"] for x in g}):
            rs = [x["ratio"] for x in g if x["threads"] == th and x.get("ratio")]
            if rs:
                gm = 1.0
                for x in rs:
                    gm *= x
                w(f"* {th} thread{'s' if th > 1 else ''}: bf16 / fp32 geometric mean {gm ** (1 / len(rs)):.2f}× "
                  f"(min {min(rs):.2f}×, max {max(rs):.2f}×).")
        if not all(x.get("native") for x in g):
            w("* **This CPU has no AVX512_BF16**: bf16 ran the portable emulation (sgemm on bf16-rounded copies).")
        tm = bf.get("torch_matmul") or {}
        if tm:
            w(f"* torch 1024³ for comparison: float32 `torch.matmul` {fmt(tm.get('float32'), '.1f')} GFLOP/s, bfloat16 "
              f"(oneDNN) {fmt(tm.get('bfloat16'), '.1f')} GFLOP/s ({meta['threads']} threads).")
        w("")
    ms = bf.get("models") or []
    if ms:
        w("### Training throughput, fp32 vs bf16 (mixed precision), hyblua and torch")
        w("")
        w(f"Same configs and step as the model tables above ({LAYERS} layers, vocab {VOCAB}, {TOKENS} tokens per step, "
          "AdamW), T 512; each of the four variants is a fresh process (1 warm-up step, best of 3 timed steps), the "
          "order rotating per configuration, best of the rounds. Ratios of tokens/s (**> 1: the first is faster**). "
          "\"loss Δrel\" compares the untouched model's loss in bf16 with fp32 (hyblua).")
        w("")
        w("| config | d | hyblua fp32 tok/s | **hyblua bf16 tok/s (mixed)** | torch fp32 tok/s | torch bf16 tok/s (mixed) | "
          "**hyblua bf16 / hyblua fp32** | **hyblua bf16 / torch fp32** | hyblua bf16 / torch bf16 | "
          "hyblua fp32 / torch fp32 | loss Δrel |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in ms:
            hf, hb_, tf, tb = (x.get(f"tok_s_{k}") for k in ("hyblua_fp32", "hyblua_bf16", "torch_fp32", "torch_bf16"))
            dl = x.get("loss_rel_bf16")
            w(f"| {x['mixer']} | {x['d']} | {fmt(hf, '.0f')} | **{fmt(hb_, '.0f')}** | {fmt(tf, '.0f')} | {fmt(tb, '.0f')} | "
              f"**{fmt(ratio(hb_, hf))}** | **{fmt(ratio(hb_, tf))}** | {fmt(ratio(hb_, tb))} | {fmt(ratio(hf, tf))} | "
              f"{fmt(dl, '.1e')} |")
        w("")
        for key, name in (("hyblua_fp32", "hyblua bf16 / hyblua fp32"), ("torch_fp32", "hyblua bf16 / torch fp32"),
                          ("torch_bf16", "hyblua bf16 / torch bf16"), ("hyblua_fp32/torch_fp32", "hyblua fp32 / torch fp32")):
            num, den = ("hyblua_fp32", "torch_fp32") if "/" in key else ("hyblua_bf16", key)
            rs = [ratio(x.get(f"tok_s_{num}"), x.get(f"tok_s_{den}")) for x in ms]
            rs = [v for v in rs if v]
            if rs:
                gm = 1.0
                for v in rs:
                    gm *= v
                w(f"* {name}: geometric mean **{gm ** (1 / len(rs)):.2f}×** over {len(rs)} configs "
                  f"(min {min(rs):.2f}×, max {max(rs):.2f}×).")
        w("")
    fx = bf.get("fixtures") or []
    if fx:
        w("### Accuracy on the fixture models (forward and gradients against the float64/fla references)")
        w("")
        w("Every model of shared/fixtures (fla/: fla's own numbers, stress/: randomised weights), chunk mode. "
          "Logits error as in tests/test_fixtures.lua (max |Δ| / max |ref|; fp32 must be ≤ 1e-4) and as a relative "
          "Frobenius norm; worst gradient error max |Δ| / max |ref| over the parameters (fp32 passes at 1e-3). "
          "bf16 is not expected to pass the fp32 tolerances: the table shows by how much it misses them.")
        w("")
        w("| fixture | logits max-rel fp32 | **logits max-rel bf16** | logits ‖Δ‖/‖ref‖ bf16 | loss rel fp32 | "
          "**loss rel bf16** | worst grad rel fp32 | **worst grad rel bf16** |")
        w("|---|---|---|---|---|---|---|---|")
        by = {}
        for rec in fx:
            by.setdefault(rec["fixture"], {})[rec["precision"]] = rec
        for name, pr in by.items():
            a, b = pr.get("fp32", {}), pr.get("bf16", {})
            w(f"| {name} | {fmt(a.get('logits_max_rel'), '.1e')} | **{fmt(b.get('logits_max_rel'), '.1e')}** | "
              f"{fmt(b.get('logits_frob_rel'), '.1e')} | {fmt(a.get('loss_rel'), '.1e')} | **{fmt(b.get('loss_rel'), '.1e')}** | "
              f"{fmt(a.get('grad_worst_rel'), '.1e')} | **{fmt(b.get('grad_worst_rel'), '.1e')}** |")
        w("")
    tr = bf.get("train") or {}
    if tr.get("rows"):
        n = tr["steps"]
        w(f"### Accuracy of training: the same run in fp32 and bf16 ({tr['recipe']}, {n} steps)")
        w("")
        w(f"`hyblua {tr['recipe']} --set train.steps={n} --set train.matmul_precision=fp32|bf16` (defaults otherwise: "
          f"gated_deltanet 3:1, d 128, 8 layers, {fmt(tr.get('params') and tr['params'] / 1e6, '.2f')}M parameters, "
          "batch 16 × 256 byte tokens of the bundled sample, lr 3e-3 cosine, seed 0). Same seed, same batches: "
          "only the matmul precision differs. Validation over the sample's validation split: during training in "
          "each run's precision, the final one (results.json) after `hb.train` has restored fp32, so both trained "
          "models are evaluated the same way. The whole curves are in the raw log (tag bf16-train-curves).")
        w("")
        w("| step | train loss fp32 | train loss bf16 (mixed) | Δ |")
        w("|---|---|---|---|")
        for x in tr["rows"]:
            w(f"| {x['step']} | {fmt(x.get('fp32'), '#.4g')} | {fmt(x.get('bf16'), '#.4g')} | {fmt(x.get('delta'), '+.4f')} |")
        w(f"| mean of the last {tr.get('last_k')} | {fmt(tr.get('last_fp32'), '#.4g')} | {fmt(tr.get('last_bf16'), '#.4g')} | "
          f"{fmt(tr.get('last_delta'), '+.4f')} |")
        w("")
        w(f"* Final validation loss: fp32 {fmt(tr.get('val_loss_fp32'), '#.4g')}, bf16 {fmt(tr.get('val_loss_bf16'), '#.4g')} "
          f"(Δ {fmt(tr.get('val_delta'), '+.4f')}, {fmt(tr.get('val_delta_pct'), '+.2f')}%); bits per byte fp32 "
          f"{fmt(tr.get('val_bpb_fp32'), '#.4g')}, bf16 {fmt(tr.get('val_bpb_bf16'), '#.4g')}.")
        w(f"* Train-loss curves: mean |Δ| per step {fmt(tr.get('mean_abs_diff'), '.4f')}, max "
          f"{fmt(tr.get('max_abs_diff'), '.4f')}; for scale, the fp32 curve itself moves by "
          f"{fmt(tr.get('step_noise_fp32'), '.4f')} per step on average (batch-to-batch variation).")
        if tr.get("val_steps"):
            w("* Validation during training (fp32 / bf16): " + ", ".join(
                f"step {x['step']}: {x['fp32']:#.4g} / {x['bf16']:#.4g}" for x in tr["val_steps"]) + ".")
        w(f"* Wall time of the two runs (noisy machine; this small model is mostly mixer and element-wise time): "
          f"fp32 {fmt(tr.get('wall_s_fp32'), '.0f')} s, bf16 {fmt(tr.get('wall_s_bf16'), '.0f')} s.")
        w("")


def next_report(w, meta, nx, mm=None):
    """The section of issue 13's mixers (the "next" harness section), hyblua only."""
    import targets
    sm = (meta.get("sections") or {}).get("next", {})
    ks, ms = nx.get("kernels") or [], nx.get("models") or []
    w("## Issue 13 mixers: KDA, Gated DeltaProduct, RWKV-7 (DPLR), Mamba-2 (SSD) — hyblua only")
    w("")
    if sm:
        w(f"Measured on {sm.get('date', '?')} in {fmt(sm.get('elapsed_min'), '.1f')} min by `tests/bench/run.sh "
          f"--only next{' --quick' if sm.get('quick') else ''}` (part of `make bench`), {sm.get('threads', '?')} threads, "
          f"load average {sm.get('load_start', '?')} / {sm.get('load_end', '?')} on the shared 2-core machine: "
          "absolute numbers are noisy, which is why every kernel row is divided by an sgemm timed alongside it.")
        w("")
    w("There is no PyTorch side here: tests/bench/torch_models.py implements the paper's mixers only (a faithful "
      "torch model of the four fla layers is future work), so these figures are hyblua's alone.")
    w("")
    if ks:
        w("### Kernels: chunked forward + backward vs sgemm")
        w("")
        w("`kernels_bench train+sgemm KERNEL T,... D REPS` (tests/bench/kernels_bench.c, REPS = 5): B = 1, H = 512/D heads, K = V = D, "
          "chunk 64, one forward (saving the chunk states) plus one backward (reusing them), best of the repetitions "
          "after a warm-up when T ≤ 1024. Inputs as the model layers produce them: KDA l2-normalised q/k, "
          "per-channel log decay in [−0.2, 0), β ∈ (0.05, 0.95); Gated DeltaProduct NH = 2 Householder steps per "
          "token, forget gate, l2-normalised q/k; DPLR as RWKV-7 calls it (a = −κ, b = κ ⊙ u with κ l2-normalised, "
          "u ∈ (0, 1), per-channel log decay in (−0.6065, 0), scale 1); SSD with G = H (one q/k per head) and a "
          "scalar log decay per (token, head). \"sgemm\" is `cblas_sgemm` 1024³ timed in the same process 3 times "
          "right before and 3 times right after the kernel's repetitions at that T (`kernels_bench train+sgemm`), "
          "best of the 6; % sgemm is against that number, so both see the same load.")
        w("")
        w("FLOPs per (batch, head), T tokens, C = 64, K = V = D, 2 per multiply-add, causal halves counted, "
          "element-wise work not counted — the counts documented in the kernel headers:")
        w("")
        w("* KDA (kernels/kda.h): forward `T·(6KV + 2CV + 2CK + C²/3)`, backward `T·(14KV + 5CV + 6CK + C²/3)`.")
        w("* Gated DeltaProduct: the delta rule's count (above) over the R = 2T sub-steps it runs — forward "
          "`6RKV + R(C−1)(2K+V) + R(C+1)(K+V)`, backward `12RKV + 2R(C+1)(K+V) + 2R(C−1)(2K+V)`; this counts the "
          "output products of all sub-steps, 1.22× the useful forward work at NH = 2 (kernels/deltaproduct.c).")
        w("* DPLR (kernels/dplr.h): forward `8TKV + 2T(C+1)K + 2T(C−1)K + 2T(C−1)V + 2T(C+1)V + TC²/3`, backward "
          "`16TKV + 4T(C+1)(K+V) + 4T(C−1)(K+V)` (recomputation not counted).")
        w("* SSD (kernels/ssd.h, G = H): forward `4TKV + T(C+1)(K+V)`, backward `8TKV + T(C+1)(2V+3K)`.")
        w("")
        w(f"Target (the performance issue): fwd+bwd ≥ {targets.KERNEL_TARGET:g}% of sgemm at D 64–128, "
          f"T ≥ {targets.KERNEL_MIN_T} (the smallest % over those T decides); time per token flat in T "
          "(\"µs/token max/min\" over all T measured; ≤ 1.3 on this noisy machine counts as flat).")
        w("")
        sgs = [x["sgemm"] for x in ks if x.get("sgemm")]
        if sgs and mm and mm.get("sgemm"):
            w(f"Load check: the in-process sgemm of this section ranged {min(sgs):.0f}–{max(sgs):.0f} GFLOP/s; the "
              f"matmul section's 1024³ sgemm (its own run, see its date) reached {mm['sgemm']:.0f} GFLOP/s. Where "
              "this section's sgemm is well below that, the machine was contended during it, and the % sgemm "
              "column is a ratio of two contended numbers: reliable to perhaps ±10 points, not better.")
            w("")
        w("| kernel | D | % sgemm at T ≥ 1024 (min–max) | target | µs/token min–max | µs/token max/min | flat in T |")
        w("|---|---|---|---|---|---|---|")
        for k in NEXT_KERNELS:
            for D in sorted({x["D"] for x in ks}):
                rows = [x for x in ks if x["kernel"] == k and x["D"] == D]
                pct = [x["pct_sgemm"] for x in rows if x.get("pct_sgemm") and x["T"] >= targets.KERNEL_MIN_T]
                ut = [x["us_per_token"] for x in rows if x.get("us_per_token")]
                if not rows:
                    continue
                fl = max(ut) / min(ut) if ut else None
                tmax = max(rows, key=lambda x: x.get("us_per_token") or 0)["T"]
                tmin = min(rows, key=lambda x: x.get("us_per_token") or 1e30)["T"]
                w(f"| {NEXT_KERNEL_NAMES[k]} | {D} | {fmt(min(pct) if pct else None, '.0f')}–"
                  f"{fmt(max(pct) if pct else None, '.0f')}% | "
                  f"**{'met' if pct and min(pct) >= targets.KERNEL_TARGET else 'missed' if pct else '—'}** | "
                  f"{fmt(min(ut) if ut else None, '.1f')}–{fmt(max(ut) if ut else None, '.1f')} | {fmt(fl)} | "
                  f"{'yes' if fl and fl <= 1.3 else f'no (slowest per token at T {tmax}, fastest at T {tmin})' if fl else '—'} |")
        w("")
        for k in NEXT_KERNELS:
            rows = [x for x in ks if x["kernel"] == k]
            if not rows:
                continue
            w(f"#### {NEXT_KERNEL_NAMES[k]}")
            w("")
            w("| D | H | T | fwd+bwd ms | fwd ms | bwd ms | µs/token | GFLOP/s | fwd GFLOP/s | bwd GFLOP/s | sgemm GFLOP/s | "
              "**% sgemm** |")
            w("|---|---|---|---|---|---|---|---|---|---|---|---|")
            for x in rows:
                w(f"| {x['D']} | {x['H']} | {x['T']} | {fmt(x.get('ms'), '.2f')} | {fmt(x.get('fwd_ms'), '.2f')} | "
                  f"{fmt(x.get('bwd_ms'), '.2f')} | {fmt(x.get('us_per_token'), '.2f')} | {fmt(x.get('gflops'), '.1f')} | "
                  f"{fmt(x.get('gflops_fwd'), '.1f')} | {fmt(x.get('gflops_bwd'), '.1f')} | {fmt(x.get('sgemm'), '.1f')} | "
                  f"**{fmt(x.get('pct_sgemm'), '.0f')}** |")
            w("")
        w("What bounds the misses (perf on this machine, `perf record -g build/bench/kernels_bench train KERNEL "
          "1024 64 5`): the same structure as the paper's delta-rule kernels above — 64×64×D products too small "
          "for sgemm's large-matrix rate, chained through element-wise work the counts leave out (per-channel "
          "decay factors e^{G} in KDA and DPLR, the triangular solves, the 16-row sub-blocks of the decayed "
          "score matrices), and only B·H = 8 (D 64) or 4 (D 128) work items for the thread pool. Gated "
          "DeltaProduct spreads q and g onto the T·NH sub-steps and gathers o, dq and dg back through per-call "
          "(B, T·NH, ...) buffers around the delta rule's kernels, and computes outputs for every sub-step. Until "
          "2026-12-07 this benchmark, unlike the hyblua executable (lua/hyblua.c sets glibc's mmap and trim "
          "thresholds), let every such buffer above 128 KiB be a fresh mmap faulted in and zeroed on every call, "
          "which halved Gated DeltaProduct's figures (21–22% → 37–39% of sgemm at D 64, 30–31% → 49–51% at D 128 "
          "with the same settings, tests/bench/results/kernels_bench_malloc.md); tables from before that date "
          "understate it about 2×.")
        w("")
    if ms:
        w("### Training throughput (tokens/s), hyblua")
        w("")
        w(f"Same step and protocol as the model tables above ({LAYERS} layers, vocab {VOCAB}, {TOKENS} tokens per "
          "step, head dim 64, AdamW; one warm-up step, best of 3 timed steps, each configuration a fresh "
          "`./hyblua tests/bench/train_step.lua` process). kda H = d/64, expand_v 1; gated_deltaproduct "
          "gated_deltanet's sizing (H = 0.75·d/64, dv 128) with num_householder 2 and the forget gate; rwkv7 "
          "H = d/64 with fla's LoRA dims and its sqrelu channel mix; mamba2 head_dim 64, expand 2, state 128, "
          "1 group (no MLP: fla's Mamba-2 blocks are mixer-only). 3:1 replaces layer 3 of 4 with attention. "
          "gated_deltanet (pure and 3:1) is measured in the same run as the reference.")
        w("")
        w("| config | d | T | B | params | tok/s (best) | tok/s (median) | fwd s | bwd s | AdamW s | peak RSS MB |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        for x in ms:
            w(f"| {x['mixer']} | {x['d']} | {x['T']} | {x['B']} | {fmt(x.get('params') and x['params'] / 1e6, '.1f')}M | "
              f"{fmt(x.get('train_tok_s'), '.0f')} | {fmt(x.get('train_tok_s_median'), '.0f')} | "
              f"{fmt(x.get('fwd_s'), '.3f')} | {fmt(x.get('bwd_s'), '.3f')} | {fmt(x.get('opt_s'), '.3f')} | "
              f"{fmt(x.get('rss_mb'), '.0f')} |")
        w("")


def copy_result(w, name, missing=None, edit=lambda line: line):
    """Write tests/bench/results/<name> (the last table a Python-free bench left) line by line through w, or
    the line `missing` when there is none; returns whether the file was there."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", name)
    if not os.path.exists(path):
        if missing is not None:
            w(missing)
        return False
    with open(path) as f:
        for line in f.read().rstrip("\n").split("\n"):
            w(edit(line))
    return True


def write_report(path, meta, tc, mm, models, kernels, decodes, bf=None, nx=None):
    L = []
    w = L.append
    w("# Performance: hyblua vs PyTorch (CPU)")
    w("")
    w(f"Generated by `make bench` (`tests/bench/run.sh{' --quick' if meta['quick'] else ''}`) on {meta['date']} "
      f"in {meta['elapsed_min']:.1f} min. Do not edit by hand: rerun the harness.")
    runs = {}
    for name in ALL_SECTIONS:
        sm = (meta.get("sections") or {}).get(name)
        if sm:
            runs.setdefault((sm.get("date"), sm.get("elapsed_min"), sm.get("quick")), []).append(name)
    if len(runs) > 1:
        w("")
        w("The sections come from separate runs of the harness (`--only` runs merge into "
          "tests/bench/results/latest.json): " + "; ".join(
              f"{', '.join(v)} on {k[0]} ({fmt(k[1], '.1f')} min{', --quick' if k[2] else ''})" for k, v in runs.items())
          + ". Ratios are only ever taken within one run.")
    w("")
    w("## Machine and method")
    w("")
    mi = meta["machine"]
    w(f"* CPU: {mi.get('Model name', '?')}, {mi.get('CPU(s)', mi.get('nproc'))} logical CPUs "
      f"({mi.get('Flags', '')}), L2 {mi.get('L2 cache', '?')}, L3 {mi.get('L3 cache', '?')}; "
      f"{mi.get('mem_gib', '?')} GiB RAM; Linux {mi.get('kernel', '?')}.")
    w(f"* hyblua {mi.get('hyblua_version', '?')} at git {mi.get('git', '?')}{' (+ uncommitted changes)' if mi.get('git_dirty') else ''}; "
      f"OpenBLAS {mi.get('openblas', '?')} (pthread build, shared by both sides); PyTorch {meta.get('torch', '?')} "
      f"(Debian python3-torch, eager mode).")
    if mi.get("blas_core"):  # runs before 2026-12-07 did not record it
        note = narrow_kernels(mi)
        w(f"* OpenBLAS kernels: {mi['blas_core']} (OPENBLAS_CORETYPE "
          f"{'= ' + mi['coretype_env'] if mi.get('coretype_env') else 'unset'}; `hb.blas_corename()`)"
          + (f"; the mixer kernels' block products on {'hyblua' + chr(39) + 's own kernel' if mi['kgemm_path'] == 'own' else 'OpenBLAS'} "
             f"(`hb.kgemm_path()` {mi['kgemm_path']})" if mi.get("kgemm_path") else "") + "."
          + (f" **Note:** {note}." if note else ""))
    w(f"* Threads: **{meta['threads']}** on both sides (`HYBLUA_NUM_THREADS`, `OPENBLAS_NUM_THREADS`, "
      f"`OMP_NUM_THREADS` = {meta['threads']}, `OMP_WAIT_POLICY=PASSIVE`, all set before torch is imported).")
    w(f"* Load average at start / end: {meta['load_start']} / {meta['load_end']}. The machine is shared: absolute "
      "numbers are noisy; ratios are measured within one run with hyblua and torch interleaved configuration by "
      "configuration (each in a fresh process, the order alternating), and each number is the best of ≥3 timed "
      "repetitions after a warm-up.")
    w(f"* Commands: `make bench` → `tests/bench/run.sh [--quick] [--threads N]` → `tests/bench/harness.py`; "
      "hyblua side `./hyblua tests/bench/train_step.lua`, kernels `build/bench/kernels_bench` (built from "
      "tests/bench/kernels_bench.c with the Makefile's flags against build/libhbcore.a), torch side "
      "`/usr/bin/python3 tests/bench/torch_bench.py` / `torch_kernels.py` over `tests/bench/torch_models.py` "
      "(checked against every fixture by `tests/bench/check_torch.py`).")
    w("")
    w("### PyTorch thread configuration check")
    w("")
    w("Debian's torch calls a pthread OpenBLAS that ignores `torch.set_num_threads`; without the environment "
      "variables OpenBLAS's and OpenMP's thread pools compete (best of 2 alternating processes for the matmul, "
      "of 3 steps in one process for the training step):")
    w("")
    w("| torch configuration | matmul GFLOP/s | training step tok/s (gla, d 256, B 2, T 512) |")
    w("|---|---|---|")
    w(f"| threads from the environment (used for every comparison below) | {fmt(tc.get('env'), '.1f')} | "
      f"{fmt(tc.get('env_step'), '.0f')} |")
    w(f"| default environment (`torch.set_num_threads({meta['threads']})` only) | {fmt(tc.get('default'), '.1f')} | "
      f"{fmt(tc.get('default_step'), '.0f')} |")
    w("")
    import targets  # tests/bench/targets.py: the issue's targets, met or not, and why
    for s in models:  # summaries written before 2026-12-07 lack the FLOP count: it follows from the config
        if s.get("flops_per_token") is None:
            s["flops_per_token"] = model_flops_per_token(s["mixer"], s["d"], s["T"], s.get("params"))
        s["mfu_hyblua"], s["mfu_torch"] = mfu(s, "hyblua", mm), mfu(s, "torch", mm)
    L.extend(targets.targets_section(models, kernels, mm, targets.gemm_shares(os.path.join(HERE, "results")),
                                     KERNEL_NAMES, bf))
    w("## Matmul: hyblua vs raw sgemm")
    w("")
    pct = 100 * mm["hyblua"] / mm["sgemm"] if mm.get("hyblua") and mm.get("sgemm") else None
    w("1024³ float32, best of 3 alternating processes × 20 repetitions. The Lua side releases each product before "
      "the next (`local c <close> = a:matmul(b)`), as torch frees its output: until 2026-12-07 it dropped the "
      "reference and left the output to the collector, which collects tensors only past 256 MiB of them, so every "
      "repetition wrote its 4 MiB into fresh pages — 1024 page faults each, 35% of sgemm on the Zen 5 machine with "
      "OpenBLAS's AVX-512 kernels (96–99% released).")
    w("")
    w("| path | GFLOP/s | % of cblas_sgemm |")
    w("|---|---|---|")
    w(f"| `cblas_sgemm` from C (kernels_bench) | {fmt(mm.get('sgemm'), '.1f')} | 100 |")
    w(f"| `hb.randn(1024,1024):matmul(...)` from Lua | {fmt(mm.get('hyblua'), '.1f')} | {fmt(pct, '.0f')} "
      f"{'(≥ 90%: pass)' if pct and pct >= 90 else '(< 90%: FAIL)' if pct else ''} |")
    w(f"| `torch.matmul` | {fmt(mm.get('torch'), '.1f')} | "
      f"{fmt(100 * mm['torch'] / mm['sgemm'] if mm.get('torch') and mm.get('sgemm') else None, '.0f')} |")
    w("")
    w("## Models: training step, forward, decode, memory")
    w("")
    w(f"Configs: {LAYERS} layers, vocab {VOCAB}, head dim 64, B·T = {TOKENS} tokens per step (B = {TOKENS}/T); "
      "transformer H = d/64; hgrn expand_ratio 1; retnet H = d/64 with fla's defaults (dk 64, dv 128, MLP ratio 2); "
      "gla H = d/64, expand_k = expand_v = 1; hgrn2 expand_ratio 64; delta_net H = d/64 (short conv, l2 q/k); "
      "gated_deltanet head_dim 64, H = 0.75·d/64, dv 128 (fla's sizing), gate + short conv. A \"3:1\" hybrid "
      "replaces layer 3 of 4 with full attention (H = d/64). MLP width per §1.5 of the spec (4× ratio → 768 at "
      "d 256, 1536 at d 512). hyblua creates each model with `hb.models.new` + `save_pretrained`; torch loads the "
      "same files and the same batch, and both report the loss of the untouched model (must agree to 1e-4 relative; "
      "column \"loss Δrel\").")
    w("")
    w("Protocol per configuration and side (fresh process): load; one warm-up training step on a 1×256 slice of "
      "the batch (optimizer state, thread pools, allocator; its loss is the untouched model's, compared between the "
      "sides); 3 timed training steps on the whole batch; peak RSS; 3 timed forward-only passes (skipped at d 512, "
      "T 2048 to save time); at T 512 the decode measurement. "
      "A training step is `zero_grad` + loss (forward) + backward + AdamW (lr 1e-3, betas 0.9/0.95, wd 0.1). "
      "Ratios are hyblua / torch: **> 1 means hyblua is faster** (for RSS: > 1 means hyblua uses more).")
    w("")
    w("### Training throughput (tokens/s, best of the timed steps)")
    w("")
    w("| config | d | T | B | params | hyblua tok/s | torch tok/s | **ratio** | MFU hyblua | MFU torch | "
      "fwd time h/t | bwd time h/t | AdamW time h/t | loss Δrel |")
    w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in models:
        w(f"| {s['mixer']} | {s['d']} | {s['T']} | {s['B']} | {fmt(s.get('params') and s['params'] / 1e6, '.1f')}M | "
          f"{fmt(s.get('train_tok_s_hyblua'), '.0f')} | {fmt(s.get('train_tok_s_torch'), '.0f')} | "
          f"**{fmt(s.get('train_ratio'))}** | {fmt(s.get('mfu_hyblua'))} | {fmt(s.get('mfu_torch'))} | "
          f"{fmt(s.get('fwd_time_ratio'))} | {fmt(s.get('bwd_time_ratio'))} | "
          f"{fmt(s.get('opt_time_ratio'))} | {fmt(s.get('loss_rel_diff'), '.1e')} |")
    w("")
    w("(\"fwd/bwd/AdamW time h/t\" are time ratios hyblua / torch of each phase: **> 1 means hyblua is slower** "
      "in that phase. MFU, model FLOPs utilisation: training FLOPs per token × tokens/s over the machine's fp32 "
      f"peak, taken as the matmul section's 1024³ `cblas_sgemm` (its run: see the dates at the top) at {meta['threads']} threads ({fmt(mm.get('sgemm'), '.1f')} "
      "GFLOP/s; a measured peak, below the datasheet's). FLOPs per token: 6·N for the matrix "
      "products (N the parameters less the input embedding, which is a lookup; the untied LM head counts) plus each "
      "layer's token mixer by the kernel section's chunked-algorithm formulas, divided by T (attention: the causal "
      "half, head dim 64; HGRN: 0, it is element-wise). Norms, gates, activations, the loss and AdamW are not "
      "counted, as in the usual 6·N definition.)")
    w("")
    w("### Forward-only throughput (logits, no autograd) and peak RSS of the training process")
    w("")
    w("| config | d | T | hyblua fwd tok/s | torch fwd tok/s | **ratio** | hyblua RSS MB | torch RSS MB | RSS h/t |")
    w("|---|---|---|---|---|---|---|---|---|")
    for s in models:
        w(f"| {s['mixer']} | {s['d']} | {s['T']} | {fmt(s.get('fwd_tok_s_hyblua'), '.0f')} | "
          f"{fmt(s.get('fwd_tok_s_torch'), '.0f')} | **{fmt(s.get('fwd_ratio'))}** | {fmt(s.get('rss_mb_hyblua'), '.0f')} | "
          f"{fmt(s.get('rss_mb_torch'), '.0f')} | {fmt(s.get('rss_ratio'))} |")
    w("")
    w("Peak RSS is VmHWM of a fresh process that loaded the model and ran the warm-up and timed training steps.")
    w("")
    dec = [s for s in models if s.get("decode_tok_s_hyblua") or s.get("decode_tok_s_torch")]
    if dec:
        w(f"### Decode (B = 1: a {meta['dprompt']}-token prefill, then {meta['dnew']} single-token steps fed from "
          "the batch; median step)")
        w("")
        w("| config | d | hyblua tok/s | torch tok/s | **ratio** | prefill s h / t |")
        w("|---|---|---|---|---|---|")
        for s in dec:
            w(f"| {s['mixer']} | {s['d']} | {fmt(s.get('decode_tok_s_hyblua'), '.0f')} | "
              f"{fmt(s.get('decode_tok_s_torch'), '.0f')} | **{fmt(s.get('decode_ratio'))}** | "
              f"{fmt(s.get('prefill_s_hyblua'), '.3f')} / {fmt(s.get('prefill_s_torch'), '.3f')} |")
        w("")
    w("## Kernels: chunked forward + backward")
    w("")
    w(f"B = 1, H = 512/D heads of head dim D (K = V = D), chunk 64, random inputs; time of one forward plus one "
      f"backward, best of {meta['kreps']} (after a warm-up when T ≤ 1024; at D = 128 the full run stops at T = 4096 "
      "to save time). hyblua calls the `*_fwd_chunk_f32`/`*_bwd_chunk_f32` kernels "
      "(attention: `attn_fwd_f32`/`attn_bwd_f32`, tile 64; HGRN: `hgrn_*_chunk_f32` with `hgrn_chunk_hint`); torch "
      "runs the chunked functions of torch_models.py under autograd. GFLOP/s count the FLOPs of the chunked "
      f"algorithm (formulas below) against sgemm = {fmt(mm.get('sgemm'), '.1f')} GFLOP/s measured in this run.")
    w("")
    for k in KERNELS:
        ks = [s for s in kernels if s["kernel"] == k]
        if not ks:
            continue
        w(f"### {KERNEL_NAMES[k]}")
        w("")
        if k == "hgrn":
            w("| D·H | T | hyblua ms | hyblua µs/token | hyblua GB/s | torch ms | torch GB/s | speed-up h vs t |")
            w("|---|---|---|---|---|---|---|---|")
            for s in ks:
                w(f"| {512} | {s['T']} | {fmt(s.get('ms_hyblua'), '.2f')} | {fmt(s.get('us_per_token_hyblua'), '.2f')} | "
                  f"{fmt(s.get('gbs_hyblua'), '.1f')} | {fmt(s.get('ms_torch'), '.2f')} | {fmt(s.get('gbs_torch'), '.1f')} | "
                  f"{fmt(s.get('speedup'))} |")
        else:
            w("| D | T | hyblua ms (fwd+bwd) | hyblua µs/token | hyblua GFLOP/s | % sgemm | torch ms | torch GFLOP/s | "
              "% sgemm | speed-up h vs t |")
            w("|---|---|---|---|---|---|---|---|---|---|")
            for s in ks:
                w(f"| {s['D']} | {s['T']} | {fmt(s.get('ms_hyblua'), '.2f')} | {fmt(s.get('us_per_token_hyblua'), '.2f')} | "
                  f"{fmt(s.get('gflops_hyblua'), '.1f')} | {fmt(s.get('pct_sgemm_hyblua'), '.0f')} | "
                  f"{fmt(s.get('ms_torch'), '.2f')} | {fmt(s.get('gflops_torch'), '.1f')} | "
                  f"{fmt(s.get('pct_sgemm_torch'), '.0f')} | {fmt(s.get('speedup'))} |")
        w("")
    w("Linear mixers should show a flat µs/token column (time linear in T); attention's µs/token grows "
      "linearly with T (time quadratic in T).")
    w("")
    w("FLOP formulas per (batch, head), T tokens, chunk C = 64, K = V = D, 2 FLOPs per multiply-add, the causal "
      "half of C×C (or T×T) blocks counted, element-wise work (exp, masks, norms) not counted:")
    w("")
    w("* GLA and retention, forward: `4·T·K·V` (chunk states kᵀv and inter-chunk output q·S) + `T·(C+1)·(K+V)` "
      "(intra-chunk scores q·kᵀ and A·v over the lower triangle). Backward: `8·T·K·V` (dS pass, dq/dk/dv through "
      "the states; since 2026-12-07 both backwards read the chunk states their forward saved, before that they "
      "recomputed them: `10·T·K·V`) + `T·(C+1)·(3K+2V)` (A recomputed, dA = do·vᵀ, Aᵀ·do, dA·k, dAᵀ·q).")
    w("* Delta rule and gated delta rule (WY/UT), forward: `6·T·K·V` (W·S, Kᵀ·Δ, q·S) + `T·(C−1)·(2K+V)` "
      "(β·K·Kᵀ strictly lower, triangular solve for W and U) + `T·(C+1)·(K+V)` (tril(q·kᵀ) and its product with Δ). "
      "Backward: `12·T·K·V + 2·T·(C+1)·(K+V) + 2·T·(C−1)·(2K+V)` (the same products transposed, without "
      "recomputing the states: hyblua's forward saves them and autograd keeps them).")
    w("* Softmax attention (causal): forward `2·T·(T+1)·D` (q·kᵀ and P·v over the causal half), backward "
      "`5·T·(T+1)·D` (scores recomputed, dV, dP, dQ, dK).")
    w("* HGRN is element-wise; its row reports bytes moved (`32·T·D`: x, g → o; do, g, o → dx, dg) per second.")
    w("")
    if nx:
        next_report(w, meta, nx, mm)
    if decodes:
        w("## Decode cost per token vs context length (kernel level)")
        w("")
        w("One decode step, B = 1, H = 512/D; median of many steps. Linear mixers have a fixed-size state (context "
          "length does not matter; shown once); attention reads the whole KV cache.")
        w("")
        w("| kernel | D | context | hyblua µs | torch µs | speed-up h vs t |")
        w("|---|---|---|---|---|---|")
        for row in decodes:
            hu, tu = row.get("hyblua_us"), row.get("torch_us")
            w(f"| {row['kernel']} | {row['D']} | {row['ctx'] if row['kernel'] == 'attn' else 'any'} | {fmt(hu, '.1f')} | "
              f"{fmt(tu, '.1f')} | {fmt(ratio(tu, hu))} |")
        w("")
    if bf:
        bf16_report(w, meta, bf)
    slow = [s for s in models if s.get("train_ratio") and s["train_ratio"] < 1.0]
    slowf = [s for s in models if s.get("fwd_ratio") and s["fwd_ratio"] < 1.0]
    slowd = [s for s in models if s.get("decode_ratio") and s["decode_ratio"] < 1.0]
    slowk = [s for s in kernels if s.get("speedup") and s["speedup"] < 1.0]
    w("## Where hyblua is slower than torch (this run)")
    w("")
    w("Ratios within about ±10% of 1 are inside this machine's run-to-run noise; a configuration listed here in "
      "one run may not be in the next. `tests/bench/profile.sh` shows where hyblua's time goes.")
    w("")
    if not (slow or slowf or slowd or slowk):
        w("Nowhere: hyblua is at least as fast as torch in every measured configuration.")
    for s in slow:
        phases = [ph for ph in ("fwd", "bwd", "opt") if (s.get(f"{ph}_time_ratio") or 0) > 1.0]
        w(f"* training {s['mixer']} d={s['d']} T={s['T']}: {s['train_ratio']:.2f}× torch "
          f"(slower phases: {', '.join(phases) or 'none individually'})")
    for s in slowf:
        w(f"* forward-only {s['mixer']} d={s['d']} T={s['T']}: {s['fwd_ratio']:.2f}× torch")
    for s in slowd:
        w(f"* decode {s['mixer']} d={s['d']}: {s['decode_ratio']:.2f}× torch")
    for s in slowk:
        w(f"* kernel {s['kernel']} D={s['D']} T={s['T']}: {s['speedup']:.2f}× torch")
    w("")
    if meta.get("failures"):
        w("## Failures in this run")
        w("")
        for f in meta["failures"]:
            w(f"* {f}")
        w("")
    # OpenBLAS on CPUs newer than its model table (measured 2026-12-06; lua/main.c re-executes with OPENBLAS_CORETYPE)
    w("## OpenBLAS's kernels on CPUs it does not know")
    w('')
    w('A DYNAMIC_ARCH OpenBLAS (Debian\'s) chooses its kernels from a table of CPU models when it loads, and a CPU newer than the table gets the generic Prescott (SSE3) kernels. Debian 12\'s OpenBLAS 0.3.21 does that on the Emerald Rapids Xeon of this session\'s machine (family 6, model 207, reported as "Intel(R) Xeon(R) Processor"): measured 2026-12-06 ~20:55 UTC, one thread, `build/bench/kernels_bench sgemm 1024 3`: **27.8 GFLOP/s as chosen (Prescott) vs 141.8 GFLOP/s with OPENBLAS_CORETYPE=SkylakeX**; an MQAR training step of the paper grid (delta_net, d 64, 4 layers, batch 64 × 64, 1 thread) ran at 5.4k tokens/s vs 14.0k (2.6×), with the same loss. The choice can only be changed before the library loads, so `hyblua` now asks OpenBLAS which core it chose at the start of `main` and, when that is a pre-AVX2 core on a CPU with AVX2 + FMA (or AVX-512 F/BW/DQ/VL/CD), re-executes itself once with OPENBLAS_CORETYPE=Haswell (or SkylakeX); a user\'s own OPENBLAS_CORETYPE is kept (kernels/parallel.h, lua/main.c; `hb.blas_corename()` reports the choice; tests/test_blas_kernels.lua). `make bench` gives torch\'s OpenBLAS the same variable, so the comparison stays like for like. **Caveat:** the lent 16-core machine\'s morning runs (2026-12-06 02:11–02:31 UTC, tests/bench/results/device-2026-12-06/) and any run on such a Xeon before this change used the Prescott kernels for every OpenBLAS product — confirmed by their own yardstick: sgemm 4096³ at 23.9 GFLOP/s on one thread, a sixth of the 141.3 GFLOP/s the same machine gave with the SkylakeX kernels in the evening — which also made hyblua\'s own bf16 product look 4× faster than fp32 there. The many-core figures below are the evening\'s re-measurement with the kernels fixed (2026-12-06 23:35–23:50 UTC). The 2-core tables measured on the AMD EPYC machine are not affected (OpenBLAS 0.3.21 knows Zen).')
    w("")
    w("**An environment that chooses narrower kernels (2026-12-07).** The shared 2-core machine of the afternoon of 2026-12-07 is an AMD EPYC of family 26 (Zen 5, AVX-512 with BF16) whose environment sets OPENBLAS_CORETYPE=Haswell; left alone, the same OpenBLAS 0.3.21 picks Cooperlake (its AVX-512 kernels). hyblua keeps a user's OPENBLAS_CORETYPE, so every figure measured there uses the AVX2 kernels unless it says otherwise — that is the ~100 GFLOP/s one-core yardstick; the AVX-512 kernels reach 195 GFLOP/s on one core there. With them (and torch given the same), the training step is 1.55–1.63× faster for hyblua and 1.15–1.68× for torch, and hyblua / torch moves from 2.53 / 2.05 / 2.26 / 1.50 / 1.73 / 1.42× to 3.27 / 1.99 / 3.06 / 1.77 / 2.22 / 1.76× (Gated DeltaNet 3:1, GLA, Transformer at d 256 T 512 and d 512 T 2048, 2 threads, one run per cell; tests/bench/results/coretype_zen5.md). `hb.blas_corename()` tells which kernels a run has; on a machine like this, unset the variable (or set SkylakeX) for the faster ones, and give the PyTorch baseline the same.")
    w("")
    w("## Threads: design and scaling")
    w("")
    w("One process parallelises through one pool (kernels/threads.c); OpenBLAS stays at one thread for the whole "
      "process. Design points (issue 15):")
    w("")
    w("* **Fork/join cost.** Each worker waits on its own cache line (a generation word); a region wakes only "
      "min(threads − 1, items − 1) workers, so a 3-item region on 16 threads touches 2 of them. Waiting is "
      "spin-then-sleep on both sides (`HYBLUA_SPIN_US`, default 100 µs, then a futex), so the back-to-back "
      "regions of a training step reach spinning workers without a system call; spinning is off when the pool "
      "has more threads than the process has CPUs.")
    w("* **Results independent of the thread count.** Every split depends on the shape only. Large fp32 matrix products are cut into tiles of C — also with 1 thread — because OpenBLAS chooses its kernels by the shape of each call: before this, a 320×192×64 product whole and in two 160-row halves differed in the last bit, and 1- and 2-thread training diverged. The tiling (core/linalg.c, gemm_tiles) is, among the grids of ≥ 16 tiles with sides ≥ 64 whose 16-thread makespan is within 2% of the best, the one that packs the fewest operand bytes (each tile is one BLAS call that packs its own rows of op(A) and columns of op(B): a grid of nr × nc tiles reads op(A) nc times and op(B) nr times), so a weight gradient (512 × 768 over 4096 tokens) becomes 4 × 4 tiles of 128 × 192 and a 4096 × 512 product 8 × 2 tiles of 512 × 256. Until 2026-12-06 it took the first grid of ≥ 32 tiles with the best makespan, which was the one with the narrowest columns (1024 × 64 for 4096 × 512: op(A) packed 8 times); measured then on one thread of this session's machine (OpenBLAS SkylakeX kernels, `build/bench/kernels_bench gemm`, old and new build interleaved, best of 2 × 3): the d 512 step's products (B·T = 4096) ran 1.06–1.50× faster with the new rule, at 0.67–0.92 of one whole cblas_sgemm of the same product (0.59–0.75 before; the weight gradients with K = 4096 and a small output lowest), and at 2 threads 0.98–1.70× faster; the training step (d 512, T 2048, B 2; old and new binary interleaved, best of 2 runs × 2 steps) went 5.84 → 5.46 s (gated_deltanet 3:1), 5.31 → 4.85 s (gla), 5.97 → 5.69 s (transformer) on 1 thread and 3.29 → 2.92, 2.46 → 2.16, 3.56 → 3.13 s on 2 threads. Fewer, squarer tiles also read less memory at 16 threads, where the step's products scaled 8–9.4× (below); that is not re-measured yet. Batching the projections that read the same input into one product (issue 15 item 2's question) would gain little now: on the same machine and build, 1 thread, x (4096 × 512) times one weight of 384 or 512 rows ran at 122–125 GFLOP/s against 128–130 for one product with 1536 or 2048 rows (2 threads: 217–239 vs 225–235), so at most ~5% of the projections' time. Against PyTorch on the same machine, `tests/bench/harness.py --quick --only models` (d 256, T 512, 2 threads; transformer, gla, delta_net, gated_deltanet pure and 3:1; torch with the same OpenBLAS kernels) gave hyblua / torch 1.82–2.66× (geo-mean 2.17×) with the new tiling and 1.38–2.91× (1.95×) with the old in one pair of runs, and 1.17–3.01× vs 1.33–2.77× in a second pair half an hour later — torch's own tokens/s moved by up to 50% between runs of the same config (2257 vs 3525 for gla), so on this shared machine those runs do not separate the two builds. Interleaved single-config runs do: d 256 / T 512 / B 8 at 2 threads, old and new build alternating, 3 rounds, every round faster with the new tiling — gla 0.843 / 0.787 / 0.949 → 0.812 / 0.759 / 0.856 s, gated_deltanet 3:1 0.962 / 1.040 / 1.264 → 0.931 / 1.020 / 1.169 s (best: −4% and −3%; the d 512 / T 2048 figures above: −5 to −12%). The full 52-config table above was re-run on 2026-12-07 16:23 UTC (the 2-core AMD EPYC Zen 5 machine, OpenBLAS's own Cooperlake kernels for both sides: 41 of 52 configs ≥ 2× torch, geo-mean 2.44×; the run of 2026-11-27 on another EPYC: 3 of 52, 1.47×). tests/test_threads.lua checks bit-identical losses and parameters after two AdamW steps for 1, 2, 3, 5 and 16 threads (gated_deltanet 3:1, gla, transformer, kda, delta_net) and in simulation mode.")
    w("* **No serial glue.** The element-wise primitives under autograd (copy, accumulate, fill, zeros: "
      "kernels/parallel.h's hb_parallel_range in fixed ranges of 32768 elements) and rmsnorm forward and "
      "backward (blocks of 64 rows; the weight gradient summed per block, then over blocks in order) run on the "
      "pool; at 16 threads less than 2% of each step part runs outside pool regions (the serial-share rows).")
    w("* **Small regions stay small.** `hb_parallel_for_work(n, work, …)` uses at most work / 2·10⁶ "
      "flop-equivalents threads and runs inline below two, so decode's per-head state steps and attention over "
      "the cache do not wake 15 workers for microseconds of work; vector-matrix products with megabytes of "
      "weights (decode) are tiled so that several threads share the weight stream.")
    w("* **Profiling.** `HYBLUA_PROFILE=1` prints, at exit, the backward seconds per node kind, split into time "
      "inside and outside pool regions (and simulated, under `HYBLUA_POOL_SIM=1`).")
    w("* **Accounting and simulation.** `hb.pool_stats()` gives the regions run and the wall seconds inside them; "
      "with `HYBLUA_POOL_SIM=1` regions run serially, each item timed with the thread's CPU clock, and `sim_s` "
      "adds the time the region would take on `hb.get_num_threads()` threads (list scheduling in index order "
      "plus `HYBLUA_POOL_SIM_OVERHEAD_US`, default 3 µs per region). On a 2-core machine this predicts a "
      "many-core step (serial time + simulated regions) without memory-bandwidth contention; it is a bound "
      "to find what serialises, not a measurement.")
    w("")
    w("`tests/bench/run.sh --scaling [THREADS]` (default 1,2,4,8,16; no Python) measures training tokens/s per "
      "model type at d 512 / T 2048, prefill and batch-1 decode tokens/s of the same models, the chunked "
      "kernels' and the fp32 gemm's GFLOP/s and their ratio, each as speed-up and efficiency over 1 thread. Its "
      "last table (tests/bench/results/scaling.md) follows: the 16-core run of 2026-12-07 16:38 UTC, with every "
      "small block product of the kernels on kgemm's own kernel (as `HYBLUA_KGEMM=own` now; the 2026-12-06 run is "
      "in tests/bench/results/device-2026-12-06-late/scaling_1_16.md) (its step-part rows: "
      "tokens/s of forward, backward and optimizer alone, and the share of each outside pool regions; MFU: "
      "6·N·tokens over the fp32 gemm at the same thread count, a lower bound that leaves out the mixers' own "
      "FLOPs).")
    w("")
    copy_result(w, "scaling.md", "(no scaling run yet)",
                lambda line: line.replace("## Thread scaling", "### Thread scaling"))
    w("")
    if copy_result(w, "scaling16.md"):
        w("")
    w("On a many-core host without a package manager or network (a lent machine), "
      "`tests/bench/offline_scaling.sh pack DIR` (here) packs the libraries from Debian 12 .deb files into one "
      "prefix and `tests/bench/offline_scaling.sh run DIR setup yard s1_16 s8_4_2 split infer` (there) builds "
      "./hyblua against it and runs this section (1 and 16 threads first, then 8, 4, 2), the OpenBLAS sgemm "
      "yardstick at 1 and 16 threads, the stream bandwidth, the process × thread splits and the inference "
      "bench (also: `ab` an older build against this one, `prof` the backward profile, `jobs` the grid's "
      "--jobs timing, `final` training and decode at 1 and 16 threads). `tests/bench/split_scaling.sh [SPLITS] [STEPS]` compares one process of N threads with P "
      "processes of N/P threads on the same d 512 / T 2048 configs, each process pinned to its own CPUs and "
      "the split's tokens/s summed: an upper bound of data parallelism over MPI (no all-reduce), so "
      "\"1 process / best split\" is a lower bound of issue 15's ratio against a real MPI run (target ≥ 0.8).")
    w("")
    # issue 15: the process × thread splits (tests/bench/split_scaling.sh), copied from its last result
    if copy_result(w, "split_scaling.md"):
        w("")
    # issue 15 item 4: inference (tests/bench/run.sh --inference), copied from its last result
    w("## Inference: prefill, decode and the memory-bandwidth bound")
    w("")
    w("`tests/bench/run.sh --inference [340m,1.3b] [--threads N]` (tests/bench/inference.lua; no Python) "
      "builds GatedDeltaNet 3:1 and Transformer models at fla's 340M / 1.3B shapes with random weights "
      "(d 1024 / 2048, 24 layers, vocab 32000, SwiGLU MLP ratio 4, untied LM head; attention heads of 64; "
      "Gated DeltaNet q/k heads with heads·head_dim = 0.75·d and expand_v 2, attention every 4th layer), saves "
      "each as bf16 safetensors in a child process and loads it in a fresh one (hb.load_pretrained mmaps the "
      "file and widens bf16 to float32 in memory). At the same thread count it measures prefill (B 1, 256 "
      "tokens), decode at batch 1 (after a 256-token prefill) and batch 8 (after a 64-token prefill of 8 rows), "
      "16 single-token steps each, median step; and the memory bandwidth with build/bench/stream_bench "
      "(tests/bench/stream_bench.c: copy / scale / add / triad over 512 MiB float32 arrays, STREAM's byte "
      "counting, best of the four). The bound of decode is bandwidth / weight bytes read per step (every "
      "parameter except the input embedding, at 4 bytes: weights are float32 in memory; 2 bytes in the bf16 "
      "table, whose decode streams a bfloat16 copy of each weight); batch 8 reads them "
      "once for 8 tokens. Target (issue 15): decode at batch 1 ≥ 70% of the bound.")
    w("")
    copy_result(w, "inference.md", "(no inference run yet)")
    w("")
    if copy_result(w, "inference16.md"):   # the 16-thread run on the lent many-core machine
        w("")
    w("## Packed sequences: the cost")
    w("")
    w("`tests/bench/run.sh --packing [HIDDEN TOTAL REPEATS]` (tests/bench/packing.lua; no Python) times one "
      "training step of every model type over the same tokens, unpacked rows of 512 vs one packed row of "
      "documents of 16–512 tokens with cu_seqlens (every state, convolution and attention window restarting "
      "per document). Its last table (tests/bench/results/packing.md) follows.")
    w("")
    copy_result(w, "packing.md", "(no packing run yet)")
    w("")
    w("## Reproducing and profiling")
    w("")
    w("* `make bench` (full: 28–35 minutes on the shared 2-core machine, depending on its load) or "
      "`tests/bench/run.sh --quick` (about 5 minutes: d 256, T 512, kernels at D 64, T ≤ 2048); "
      "`--threads N` changes the thread count of both sides; `--only threads,matmul,kernels,decode,models,bf16,next` and "
      "`--mixers gla,transformer` restrict a run (the sections not run keep their previous results); "
      "`tests/bench/run.sh --only bf16` measures the bf16 section alone (about 40 minutes on the shared machine, "
      "half of it the two 200-step recipe runs: `--bf16-train-steps N`); `tests/bench/harness.py --report-only` "
      "rewrites this file from tests/bench/results/latest.json.")
    w("* `/usr/bin/python3 tests/bench/check_torch.py` checks the PyTorch implementation against every fixture "
      "(loss within 1e-5 relative, plus logits, gradients and step-by-step decoding).")
    w("* `tests/bench/profile.sh MIXER D T [train|forward|decode] [hybrid]` runs `perf record --call-graph dwarf` "
      "over the hyblua side of one benchmark configuration and prints self time by symbol and inclusive time of "
      "hyblua's ops (kept in tests/bench/results/profile-*.txt, git-ignored).")
    w("")
    with open(path, "w") as f:
        f.write("\n".join(L) + "\n")


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.4g}")
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_round(v) for v in x]
    return x


def write_summary(path, summary):
    """The committed summary: 4 significant digits, one line per table row (small, diff-friendly)."""
    summary = _round(summary)
    lines = []

    def put(d, ind):
        """d's keys one per line; lists of rows one row per line; a dict holding lists (bf16) nested."""
        lines.append("{")
        keys = sorted(d)
        for i, k in enumerate(keys):
            v, end, pad = d[k], "," if i < len(keys) - 1 else "", " " * (ind + 1)
            if isinstance(v, list):
                lines.append(f"{pad}{json.dumps(k)}: [")
                lines.extend(f"{pad} {json.dumps(row, sort_keys=True)}{',' if j < len(v) - 1 else ''}"
                             for j, row in enumerate(v))
                lines.append(f"{pad}]{end}")
            elif isinstance(v, dict) and any(isinstance(x, list) for x in v.values()):
                lines.append(f"{pad}{json.dumps(k)}: ")
                put(v, ind + 1)
                lines[-1] += end
            else:
                lines.append(f"{pad}{json.dumps(k)}: {json.dumps(v, sort_keys=True)}{end}")
        lines.append(" " * ind + "}")
    put(summary, 0)
    for i in range(len(lines) - 1, 0, -1):   # a nested dict's "{" goes on its key's line
        if lines[i] == "{" and lines[i - 1].endswith(": "):
            lines[i - 1] += "{"
            del lines[i]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


ALL_SECTIONS = ["threads", "matmul", "kernels", "decode", "models", "bf16", "next"]
# the summary keys each section writes (kernels also measures matmul: its % of sgemm needs it)
SECTION_KEYS = {"threads": ["thread_check"], "matmul": ["matmul"], "kernels": ["matmul", "kernels"],
                "decode": ["decode_kernels"], "models": ["models"], "bf16": ["bf16"],
                "next": ["next_mixers"]}


def merge_previous(path, summary, ran):
    """A run of some sections only (--only) keeps the other sections of the previous latest.json, with the
    date, duration and load of the run that measured each (meta["sections"])."""
    meta = summary["meta"]
    this = {k: meta.get(k) for k in ("date", "elapsed_min", "quick", "load_start", "load_end", "threads")}
    this["git"] = meta.get("machine", {}).get("git")
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        old = None
    kept = {}
    if old and set(ran) != set(ALL_SECTIONS):
        om = old.get("meta", {})
        legacy = {k: om.get(k) for k in ("date", "elapsed_min", "quick", "load_start", "load_end", "threads")}
        legacy["git"] = om.get("machine", {}).get("git")
        old_sections = om.get("sections") or {n: legacy for n in ALL_SECTIONS if n not in ("bf16", "next") and any(
            old.get(k) for k in SECTION_KEYS[n])}
        produced = {k for n in ran for k in SECTION_KEYS[n]}
        for n in ALL_SECTIONS:
            if n in ran or n not in old_sections:
                continue
            for k in SECTION_KEYS[n]:
                if k not in produced:
                    summary[k] = old.get(k, summary.get(k))
            kept[n] = old_sections[n]
        if not meta.get("torch"):
            meta["torch"] = om.get("torch")
        if kept and om.get("failures"):
            meta["failures"] = meta.get("failures", []) + [f"(earlier run, {om.get('date')}) {f}" for f in om["failures"]]
    meta["sections"] = dict(kept, **{n: this for n in ran})
    return summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="d 256, T 512 only; kernels at D 64, T ≤ 2048")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report", default=os.path.join(ROOT, "docs", "performance.md"))
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--only", default="", help="comma list of sections: threads,matmul,kernels,decode,models,bf16,next "
                    "(the others keep their results from the previous latest.json)")
    ap.add_argument("--fixtures", default=os.environ.get("HB_FIXTURES", os.path.join(ROOT, "tests", "fixtures")),
                    help="shared fixtures for the bf16 accuracy table")
    ap.add_argument("--bf16-train-steps", type=int, default=None,
                    help="steps of the fp32-vs-bf16 recipe run (default 200, 50 with --quick; 0 skips it)")
    ap.add_argument("--mixers", default="", help="comma list restricting the model grid (e.g. gla,transformer)")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from RESULTS/latest.json")
    args = ap.parse_args()
    if args.report_only:
        with open(os.path.join(args.results, "latest.json")) as f:
            sm = json.load(f)
        write_report(args.report, sm["meta"], sm["thread_check"], sm["matmul"], sm["models"], sm["kernels"],
                     sm["decode_kernels"], sm.get("bf16"), sm.get("next_mixers"))
        print(f"wrote {args.report} from {os.path.join(args.results, 'latest.json')}")
        return

    t_start = time.time()
    os.makedirs(args.results, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    r = Runner(args.threads, os.path.join(args.results, f"raw-{stamp}.jsonl"))
    meta = {"date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "threads": args.threads, "quick": args.quick,
            "machine": machine_info(), "load_start": loadavg()}
    note = narrow_kernels(meta["machine"])
    if note:
        print("warning: " + note, flush=True)
    sections = set(args.only.split(",")) if args.only else set(ALL_SECTIONS)
    if sections - set(ALL_SECTIONS):
        ap.error(f"--only: unknown section(s) {', '.join(sorted(sections - set(ALL_SECTIONS)))} "
                 f"(expected {','.join(ALL_SECTIONS)})")
    if args.quick:
        ds, Ts, kTs, kDs, kreps = [256], [512], [512, 1024, 2048], [64], 3
        ctxs, attn_max = [512, 2048], {}
    else:
        ds, Ts, kTs, kDs, kreps = [256, 512], [512, 2048], [256, 512, 1024, 2048, 4096, 8192], [64, 128], 3
        ctxs, attn_max = [256, 1024, 4096, 8192], {128: 4096}
    meta["kreps"] = kreps
    meta["dprompt"], meta["dnew"] = 256, 16
    mixers = [m for m in MIXERS if not args.mixers or m in args.mixers.split(",")]
    grid = []
    for d in ds:
        for T in Ts:
            for m in mixers:
                grid.append((m, False, d, T))
                if m in HYBRIDS:
                    grid.append((m, True, d, T))

    tc, mm, kern, dec, models, bf, nx = {}, {}, [], [], [], {}, {}
    print(f"hyblua bench: {len(grid)} model configs, threads {args.threads}, load {meta['load_start']}", flush=True)
    work = tempfile.mkdtemp(prefix="hyblua-bench-")
    if "threads" in sections:
        print("thread configuration check", flush=True)
        tc = thread_check(r, work)
    if "matmul" in sections or "kernels" in sections:
        print("matmul", flush=True)
        mm = matmul_section(r)
    if "kernels" in sections:
        print("kernels", flush=True)
        kern = kernel_section(r, kTs, kDs, kreps, attn_max)
    if "decode" in sections:
        print("decode kernels", flush=True)
        dec = decode_kernel_section(r, ctxs, kDs, 50)
    if "models" in sections:
        print("models", flush=True)
        models = model_section(r, work, grid, steps=3, warmup=1, nfwd=3, dprompt=meta["dprompt"],
                               dnew=meta["dnew"], fwd_max=256 * 2048)
    if "bf16" in sections:
        print("bf16 mixed precision", flush=True)
        steps = args.bf16_train_steps if args.bf16_train_steps is not None else (50 if args.quick else 200)
        bf = bf16_section(r, work, args.quick, args.fixtures, steps)
    if "next" in sections:
        print("issue 13 mixers (hyblua only)", flush=True)
        nds, nTs = ([256], [512]) if args.quick else ([256, 512], [512, 2048])
        ngrid = [(m, hy, d, T) for d in nds for T in nTs for m in NEXT_MIXERS + ["gated_deltanet"]
                 for hy in (False, True)]
        nx = next_section(r, work, [512, 1024, 2048, 4096], [64, 128], 5, ngrid)
    shutil.rmtree(work, ignore_errors=True)
    meta["load_end"] = loadavg()
    meta["elapsed_min"] = (time.time() - t_start) / 60
    meta["failures"] = r.failures
    for row in models:
        if row.get("torch"):
            meta["torch"] = row["torch"].get("torch")
            break
    ms = summarize_models(models)
    ks = summarize_kernels(kern, mm.get("sgemm"))
    ds_ = [{"kernel": d_["kernel"], "ctx": d_["ctx"], "D": d_["D"],
            "hyblua_us": d_["hyblua"]["median_s"] * 1e6 if d_.get("hyblua") else None,
            "torch_us": d_["torch"]["median_s"] * 1e6 if d_.get("torch") else None} for d_ in dec]
    summary = {"meta": meta, "thread_check": tc, "matmul": mm, "models": ms, "kernels": ks, "decode_kernels": ds_,
               "bf16": bf, "next_mixers": nx}
    summary = merge_previous(os.path.join(args.results, "latest.json"), summary, sorted(sections))
    write_summary(os.path.join(args.results, "latest.json"), summary)
    summary = _round(summary)   # the report from exactly what latest.json holds: --report-only reproduces it
    write_report(args.report, summary["meta"], summary["thread_check"], summary["matmul"], summary["models"],
                 summary["kernels"], summary["decode_kernels"], summary.get("bf16"), summary.get("next_mixers"))
    print(f"wrote {args.report} and {os.path.join(args.results, 'latest.json')} in {meta['elapsed_min']:.1f} min",
          flush=True)
    if r.failures:
        print("failures:\n  " + "\n  ".join(r.failures), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
