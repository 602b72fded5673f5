"""torch_models.py — fla's seven model types and their hybrids in eager PyTorch (CPU), for benchmarks.

This is the PyTorch side of hyblua's benchmark (tests/bench/run.sh): the same models, loaded from the
same checkpoints (config.json + model.safetensors in fla's layout), written the way a careful PyTorch
user would write them on a CPU without Triton:

  * attention  — blockwise causal softmax attention with a flash-style custom autograd Function
                 (torch 1.13 has no scaled_dot_product_attention; the block loop skips fully masked
                 key blocks and the backward recomputes the probabilities, so memory is O(T·block));
  * GLA/HGRN-2 — chunked GLA (chunk 64) with secondary 16-row sub-blocks for the intra-chunk scores
                 (spec §12.1): every exponent is bounded, the inter-chunk state pass is one elementwise
                 recurrence over precomputed chunk contributions, the outputs are batched matmuls;
  * retention  — chunked retention with the constant per-head decay mask;
  * delta rule — WY/UT chunked form (spec §12.4/§12.5) with a batched unit-triangular solve;
  * HGRN       — a chunked (two-level) scan in a custom autograd Function whose backward is the
                 reverse scan (dx = dh, dg = dh ⊙ (h − x));
  * decoding   — the per-token recurrences with a state cache (KV cache for attention).

Semantics: shared/spec/fla-models.md (section numbers in comments). Everything else (norms, MLP,
loss) uses autograd on plain tensor ops. Only numpy and torch are needed; the safetensors file format
is read by a small reader below (no safetensors package).
"""
import json
import math
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------
# safetensors (read only)

_ST_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def load_safetensors(path):
    """Read a .safetensors file into {name: torch.Tensor}; BF16 is widened to float32."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        buf = raw[base + a:base + b]
        dt, shape = info["dtype"], info["shape"]
        if dt == "BF16":
            u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            arr = u.view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        out[name] = torch.from_numpy(arr.reshape(shape).copy())
    return out


# ---------------------------------------------------------------------------------------------------
# configuration (defaults of fla's config classes, as lua/hyblua/config_fla.lua)

_COMMON = dict(hidden_size=2048, num_hidden_layers=24, hidden_ratio=4, intermediate_size=None,
               hidden_act="swish", norm_eps=1e-6, tie_word_embeddings=False, vocab_size=32000)
_TYPES = {
    "transformer": dict(num_heads=32, num_kv_heads=None, qkv_bias=False, qk_norm=False, window_size=None,
                        rope_theta=10000.0),
    "hgrn": dict(expand_ratio=1, use_short_conv=False, conv_size=4, use_lower_bound=True,
                 elementwise_affine=True, attn=None),
    "retnet": dict(expand_k=1.0, expand_v=2.0, num_heads=8, num_kv_heads=None, use_output_gate=True,
                   hidden_ratio=2, elementwise_affine=True, fuse_norm=True, attn=None),
    "gla": dict(expand_k=0.5, expand_v=1.0, num_heads=4, num_kv_heads=None, use_short_conv=False, conv_size=4,
                use_output_gate=True, clamp_min=None, elementwise_affine=True, fuse_norm=True, attn=None),
    "hgrn2": dict(expand_ratio=128, num_heads=None, use_short_conv=False, conv_size=4, use_lower_bound=True,
                  elementwise_affine=True, attn=None),
    "delta_net": dict(expand_k=1.0, expand_v=1.0, num_heads=16, use_gate=False, use_short_conv=True, conv_size=4,
                      use_beta=True, allow_neg_eigval=False, qk_norm="l2", qk_activation="silu", attn=None),
    "gated_deltanet": dict(head_dim=256, num_heads=6, num_v_heads=None, expand_v=2.0, use_gate=True,
                           use_short_conv=True, conv_size=4, allow_neg_eigval=False, num_hidden_layers=21, attn=None),
}


def normalize_config(user):
    mt = user["model_type"]
    cfg = dict(_COMMON)
    cfg.update(_TYPES[mt])
    cfg.update({k: v for k, v in user.items()})
    for k, v in list(_TYPES[mt].items()) + list(_COMMON.items()):
        if k not in user:
            cfg[k] = v
    d = cfg["hidden_size"]
    if cfg.get("attnres_block_size") is not None:
        raise ValueError("attnres_block_size is not implemented")
    if cfg.get("intermediate_size") is None:
        r = cfg.get("hidden_ratio") or 4
        cfg["_mlp"] = 256 * math.ceil(int(d * r * 2 / 3) / 256)
    else:
        cfg["_mlp"] = cfg["intermediate_size"]
    attn_at = {}
    if mt != "transformer" and cfg.get("attn"):
        specs = cfg["attn"]
        if isinstance(specs, dict):
            specs = [specs]
        for s in specs:
            s = dict(s)
            s.setdefault("num_kv_heads", None)
            if s["num_kv_heads"] is None:
                s["num_kv_heads"] = s["num_heads"]
            s.setdefault("qkv_bias", False)
            s.setdefault("window_size", None)
            s.setdefault("rope_theta", 10000.0)
            for layer in s["layers"]:
                attn_at[layer] = s
    cfg["_attn_at"] = attn_at
    if mt in ("retnet", "gla"):
        H = cfg["num_heads"]
        cfg["_kv"] = cfg["num_kv_heads"] or H
        cfg["_kd"], cfg["_vd"] = int(d * cfg["expand_k"]), int(d * cfg["expand_v"])
    elif mt == "transformer":
        cfg["_kv"] = cfg["num_kv_heads"] or cfg["num_heads"]
    elif mt == "hgrn2":
        if cfg.get("expand_ratio") is None:
            cfg["expand_ratio"] = d // cfg["num_heads"]
        cfg["_H"] = d // cfg["expand_ratio"]
    elif mt == "delta_net":
        cfg["_kd"], cfg["_vd"] = int(d * cfg["expand_k"]), int(d * cfg["expand_v"])
    elif mt == "gated_deltanet":
        cfg["_HV"] = cfg.get("num_v_heads") or cfg["num_heads"]
        cfg["_dv"] = int(round(cfg["head_dim"] * cfg["expand_v"]))
    elif mt == "hgrn":
        cfg["_E"] = int(d * cfg["expand_ratio"])
    return cfg


# ---------------------------------------------------------------------------------------------------
# building blocks (§1)

def rms(x, w, eps):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


def l2n(x):
    return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6)


def rope(x, theta, pos0):
    """NeoX rotate-half RoPE over the full head dim, x (B,T,H,D), positions pos0 + t (§3 step 3)."""
    T, D = x.shape[1], x.shape[3]
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    ang = torch.arange(pos0, pos0 + T, dtype=torch.float32)[:, None] * inv[None, :]
    c, s = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return torch.cat([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1)


def causal_conv(x, w, act):
    """Depthwise causal conv (§1.3): x (B,T,D), w (D,1,W); tap W-1 multiplies the current token."""
    T, W = x.shape[1], w.shape[-1]
    y = F.conv1d(x.transpose(1, 2), w, padding=W - 1, groups=w.shape[0])[..., :T].transpose(1, 2)
    return F.silu(y) if act else y


def _front_pad(T, C):
    N = (T + C - 1) // C
    return N, N * C - T


# ---------------------------------------------------------------------------------------------------
# softmax attention: blockwise causal with a recomputing backward (§3 step 4)

_MASKS = {}


def _block_mask(r0, r1, c0, window):
    key = (r0, r1, c0, window)
    m = _MASKS.get(key)
    if m is None:
        t = torch.arange(r0, r1)[:, None]
        tau = torch.arange(c0, r1)[None, :]
        m = tau > t
        if window and window > 0:
            m = m | (tau < t - (window - 1))
        if len(_MASKS) > 4096:
            _MASKS.clear()
        _MASKS[key] = m
    return m


def _key_start(r0, window):
    return 0 if not window or window <= 0 else max(0, r0 - window + 1)


class BlockCausalAttention(torch.autograd.Function):
    """q, k, v (B,H,T,D) (GQA already expanded) → o (B,H,T,D). Query blocks of `block` rows attend to
    keys [c0, r1) only; the backward recomputes P = exp(s − lse) block by block (FlashAttention-2)."""

    @staticmethod
    def forward(ctx, q, k, v, scale, window, block):
        T = q.shape[2]
        o = torch.empty_like(q)
        lse = q.new_empty(q.shape[:3])
        for r0 in range(0, T, block):
            r1 = min(T, r0 + block)
            c0 = _key_start(r0, window)
            s = torch.matmul(q[:, :, r0:r1], k[:, :, c0:r1].transpose(-1, -2)).mul_(scale)
            s.masked_fill_(_block_mask(r0, r1, c0, window), float("-inf"))
            m = s.amax(-1, keepdim=True)
            p = s.sub_(m).exp_()
            l = p.sum(-1, keepdim=True)
            o[:, :, r0:r1] = torch.matmul(p, v[:, :, c0:r1]).div_(l)
            lse[:, :, r0:r1] = (m + l.log()).squeeze(-1)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.scale, ctx.window, ctx.block = scale, window, block
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        scale, window, block = ctx.scale, ctx.window, ctx.block
        do = do.contiguous()
        T = q.shape[2]
        Dl = (do * o).sum(-1, keepdim=True)
        dq, dk, dv = torch.empty_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for r0 in range(0, T, block):
            r1 = min(T, r0 + block)
            c0 = _key_start(r0, window)
            qb, kc, vc, dob = q[:, :, r0:r1], k[:, :, c0:r1], v[:, :, c0:r1], do[:, :, r0:r1]
            s = torch.matmul(qb, kc.transpose(-1, -2)).mul_(scale)
            s.masked_fill_(_block_mask(r0, r1, c0, window), float("-inf"))
            p = s.sub_(lse[:, :, r0:r1, None]).exp_()
            dv[:, :, c0:r1] += torch.matmul(p.transpose(-1, -2), dob)
            dp = torch.matmul(dob, vc.transpose(-1, -2))
            ds = dp.sub_(Dl[:, :, r0:r1]).mul_(p).mul_(scale)
            dq[:, :, r0:r1] = torch.matmul(ds, kc)
            dk[:, :, c0:r1] += torch.matmul(ds.transpose(-1, -2), qb)
        return dq, dk, dv, None, None, None


def attention_core(q, k, v, scale, window=0, block=256):
    """q (B,T,H,D), k, v (B,T,Hkv,D) → o (B,T,H,D); GQA by consecutive groups."""
    H, Hkv = q.shape[2], k.shape[2]
    qh, kh, vh = q.transpose(1, 2).contiguous(), k.transpose(1, 2), v.transpose(1, 2)
    if H != Hkv:
        kh, vh = kh.repeat_interleave(H // Hkv, dim=1), vh.repeat_interleave(H // Hkv, dim=1)
    kh, vh = kh.contiguous(), vh.contiguous()
    o = BlockCausalAttention.apply(qh, kh, vh, scale, int(window or 0), block)
    return o.transpose(1, 2)


# ---------------------------------------------------------------------------------------------------
# chunked GLA (§12.1): q, k, g (B,H,T,K), v (B,H,T,V); g is the log decay (≤ 0) of each key channel

def gla_chunk(q, k, v, g, scale, C=64, BC=16, want_state=False):
    B, H, T, K = q.shape
    V = v.shape[-1]
    N, pad = _front_pad(T, C)
    if pad:  # zero tokens in front keep the state at zero (no decay: g = 0)
        q, k, v, g = (F.pad(t, (0, 0, pad, 0)) for t in (q, k, v, g))
    q = (q * scale).view(B, H, N, C, K)
    k, g = k.view(B, H, N, C, K), g.view(B, H, N, C, K)
    v = v.view(B, H, N, C, V)
    G = g.cumsum(-2)                                  # inclusive log decay inside the chunk
    # intra-chunk scores, secondary chunking: A[r, s] = Σ_j q_rj k_sj e^{G_rj − G_sj}, s ≤ r
    NS = C // BC
    span = (G[..., 0::BC, :] - G[..., BC - 1::BC, :]).amax().item() if NS > 0 else 0.0
    rows = []
    for i in range(NS):
        r0 = i * BC
        Gi, Gn = G[..., r0:r0 + BC, :], G[..., r0:r0 + 1, :]
        qi = q[..., r0:r0 + BC, :] * torch.exp(Gi - Gn)      # ≤ |q|
        parts = []
        if i > 0:
            kp = k[..., :r0, :] * torch.exp(Gn - G[..., :r0, :])   # ≤ |k|
            parts.append(torch.matmul(qi, kp.transpose(-1, -2)))
        ki = k[..., r0:r0 + BC, :]
        if span < 60.0:   # e^{Gn − Gs} within one sub-block stays far from overflow
            d = torch.matmul(qi, (ki * torch.exp(Gn - Gi)).transpose(-1, -2))
        else:             # extreme decays: exact element-wise form for the diagonal sub-block
            d = (q[..., r0:r0 + BC, None, :] * ki[..., None, :, :] *
                 torch.exp((Gi[..., :, None, :] - Gi[..., None, :, :]).clamp(max=0))).sum(-1)
        parts.append(d.tril())
        if r0 + BC < C:
            parts.append(d.new_zeros(d.shape[:-1] + (C - r0 - BC,)))
        rows.append(torch.cat(parts, -1))
    A = torch.cat(rows, -2)                           # (B,H,N,C,C), zero above the diagonal
    Glast = G[..., -1:, :]
    kd = k * torch.exp(Glast - G)                     # contribution of each token to the next state
    dkv = torch.matmul(kd.transpose(-1, -2), v)       # (B,H,N,K,V)
    decay = torch.exp(Glast).transpose(-1, -2)        # (B,H,N,K,1)
    # per-chunk views through unbind (its backward stacks once; indexing x[:, :, n] in the loop would
    # make every step's backward write a full-size zero gradient: O(N²) for long sequences)
    S = q.new_zeros(B, H, K, V)
    states = []
    for dn, kvn in zip(decay.unbind(2), dkv.unbind(2)):
        states.append(S)
        S = dn * S + kvn
    Ss = torch.stack(states, 2)                       # state entering each chunk
    o = torch.matmul(q * torch.exp(G), Ss) + torch.matmul(A, v)
    o = o.reshape(B, H, N * C, V)[:, :, pad:]
    return (o, S) if want_state else o


def gla_step(S, q, k, v, g, scale):
    """One token: S (B,H,K,V) updated in place; q, k, g (B,H,K); v (B,H,V) → o (B,H,V)."""
    S.mul_(torch.exp(g)[..., None]).add_(k[..., :, None] * v[..., None, :])
    return torch.matmul((q * scale)[..., None, :], S).squeeze(-2)


# ---------------------------------------------------------------------------------------------------
# chunked retention (§12.2): constant per-head decay lg[h] = log γ_h

def retention_chunk(q, k, v, lg, scale, C=64, want_state=False):
    B, H, T, K = q.shape
    V = v.shape[-1]
    N, pad = _front_pad(T, C)
    if pad:
        q, k, v = (F.pad(t, (0, 0, pad, 0)) for t in (q, k, v))
    q = (q * scale).view(B, H, N, C, K)
    k, v = k.view(B, H, N, C, K), v.view(B, H, N, C, V)
    r = torch.arange(C, dtype=torch.float32)
    lgh = lg.view(H, 1, 1)
    diff = (r[:, None] - r[None, :]).clamp(min=0)
    D = torch.where(r[:, None] >= r[None, :], torch.exp(diff * lgh), torch.zeros(()))   # (H,C,C)
    A = torch.matmul(q, k.transpose(-1, -2)) * D[None, :, None]
    qdec = torch.exp((r + 1) * lgh.view(H, 1))                          # γ^{r+1}   (H,C)
    kdec = torch.exp((C - 1 - r) * lgh.view(H, 1))                      # γ^{C−1−s} (H,C)
    dkv = torch.matmul((k * kdec[None, :, None, :, None]).transpose(-1, -2), v)
    gC = torch.exp(C * lg).view(1, H, 1, 1)
    S = q.new_zeros(B, H, K, V)
    states = []
    for kvn in dkv.unbind(2):
        states.append(S)
        S = gC * S + kvn
    Ss = torch.stack(states, 2)
    o = torch.matmul(q * qdec[None, :, None, :, None], Ss) + torch.matmul(A, v)
    o = o.reshape(B, H, N * C, V)[:, :, pad:]
    return (o, S) if want_state else o


def retention_step(S, q, k, v, lg, scale):
    S.mul_(torch.exp(lg).view(1, -1, 1, 1)).add_(k[..., :, None] * v[..., None, :])
    return torch.matmul((q * scale)[..., None, :], S).squeeze(-2)


# ---------------------------------------------------------------------------------------------------
# chunked (gated) delta rule, WY/UT form (§12.4, §12.5): q, k (B,H,T,K) l2-normalised and expanded to
# the value heads; v (B,H,T,V); beta (B,H,T); g (B,H,T) log decay or None

def delta_chunk(q, k, v, beta, g, scale, C=64, want_state=False):
    B, H, T, K = q.shape
    V = v.shape[-1]
    N, pad = _front_pad(T, C)
    if pad:
        q, k, v = (F.pad(t, (0, 0, pad, 0)) for t in (q, k, v))
        beta = F.pad(beta, (pad, 0))
        if g is not None:
            g = F.pad(g, (pad, 0))
    q = (q * scale).view(B, H, N, C, K)
    k, v, beta = k.view(B, H, N, C, K), v.view(B, H, N, C, V), beta.view(B, H, N, C, 1)
    kk = torch.matmul(k, k.transpose(-1, -2))                     # (B,H,N,C,C)
    qk = torch.matmul(q, k.transpose(-1, -2))
    if g is not None:
        G = g.view(B, H, N, C).cumsum(-1)
        Gd = G[..., :, None] - G[..., None, :]
        gam = torch.exp(Gd.masked_fill(Gd > 0, 0.0))              # e^{G_r − G_s} for s ≤ r (upper part masked below)
        kk, qk = kk * gam, qk * gam
        eG = torch.exp(G)[..., None]
        kdec = torch.exp(G[..., -1:] - G)[..., None]
        decay = torch.exp(G[..., -1])[..., None, None]            # (B,H,N,1,1)
    A = (kk * beta).tril(-1)                                       # A_rs = β_r e^{G_r−G_s} k_r·k_s, s < r
    eye = torch.eye(C, dtype=q.dtype)
    rhs = torch.cat([k * beta * (eG if g is not None else 1.0), v * beta], -1)
    X = torch.linalg.solve_triangular(A + eye, rhs, upper=False, unitriangular=True)
    W, U = X[..., :K], X[..., K:]
    qk = qk.tril()
    qg = q * eG if g is not None else q
    kt = (k * kdec if g is not None else k).transpose(-1, -2)
    S = q.new_zeros(B, H, K, V)
    outs = []
    decs = decay.unbind(2) if g is not None else [None] * N
    for Un, Wn, qgn, qkn, ktn, dn in zip(U.unbind(2), W.unbind(2), qg.unbind(2), qk.unbind(2), kt.unbind(2), decs):
        dlt = Un - torch.matmul(Wn, S)
        outs.append(torch.matmul(qgn, S) + torch.matmul(qkn, dlt))
        S = (dn * S if dn is not None else S) + torch.matmul(ktn, dlt)
    o = torch.stack(outs, 2).reshape(B, H, N * C, V)[:, :, pad:]
    return (o, S) if want_state else o


def delta_step(S, q, k, v, beta, g, scale):
    """S (B,H,K,V) in place; q, k (B,H,K); v (B,H,V); beta, g (B,H)."""
    if g is not None:
        S.mul_(torch.exp(g)[..., None, None])
    u = beta[..., None] * (v - torch.matmul(k[..., None, :], S).squeeze(-2))
    S.add_(k[..., :, None] * u[..., None, :])
    return torch.matmul((q * scale)[..., None, :], S).squeeze(-2)


# ---------------------------------------------------------------------------------------------------
# HGRN: h_t = e^{g_t} h_{t−1} + x_t, a chunked scan (chunk ≈ sqrt T) with its reverse scan as backward

def _scan(x, a):
    """h_t = a_t h_{t−1} + x_t along dim 1 of (B,T,D), h_{−1} = 0; two-level chunked scan."""
    B, T, D = x.shape
    C = max(16, 1 << max(0, int(math.ceil(math.log2(max(1, math.sqrt(T)))))))
    C = min(C, T) if T > 0 else 1
    N, pad = _front_pad(T, C)
    if pad:
        x = F.pad(x, (0, 0, pad, 0))
        a = F.pad(a, (0, 0, pad, 0), value=1.0)
    xr, ar = x.reshape(B, N, C, D), a.reshape(B, N, C, D)
    h = torch.empty_like(xr)
    prev = xr[:, :, 0].clone()
    h[:, :, 0] = prev
    for r in range(1, C):
        prev = torch.addcmul(xr[:, :, r], ar[:, :, r], prev)
        h[:, :, r] = prev
    P = torch.cumprod(ar, 2)                 # decay from the chunk start
    carry = x.new_zeros(B, D)
    carries = x.new_empty(B, N, D)
    for n in range(N):
        carries[:, n] = carry
        carry = torch.addcmul(h[:, n, C - 1], P[:, n, C - 1], carry)
    h.addcmul_(P, carries[:, :, None])
    return h.reshape(B, N * C, D)[:, pad:], carry


class HGRNScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, g):
        a = torch.exp(g)
        h, _ = _scan(x, a)
        ctx.save_for_backward(x, a, h)
        return h

    @staticmethod
    def backward(ctx, do):
        x, a, h = ctx.saved_tensors
        # dh_t = do_t + a_{t+1} dh_{t+1}: the same scan on reversed time
        an = torch.cat([a[:, 1:], a.new_zeros(a.shape[0], 1, a.shape[2])], 1)
        dh, _ = _scan(do.flip(1).contiguous(), an.flip(1).contiguous())
        dh = dh.flip(1)
        return dh, dh * (h - x)


def hgrn_scan(x, g, want_state=False):
    h = HGRNScan.apply(x.contiguous(), g.contiguous())
    return (h, h[:, -1].detach().clone()) if want_state else h


# ---------------------------------------------------------------------------------------------------
# model


class Model:
    """An fla model over a parameter dict (fla's names). hidden/loss/forward take ids (B,T) int64."""

    def __init__(self, cfg, params):
        self.cfg = normalize_config(cfg)
        self.params = params
        self.mode = "chunk"
        c = self.cfg
        self.kinds = []
        for i in range(c["num_hidden_layers"]):
            if c["model_type"] == "transformer":
                self.kinds.append(("attention", dict(num_heads=c["num_heads"], num_kv_heads=c["_kv"],
                                                     qkv_bias=c["qkv_bias"], window_size=c["window_size"],
                                                     rope_theta=c["rope_theta"]), bool(c["qk_norm"])))
            elif i in c["_attn_at"]:
                self.kinds.append(("attention", c["_attn_at"][i], False))
            else:
                self.kinds.append((c["model_type"], None, False))

    @classmethod
    def load(cls, path):
        with open(os.path.join(path, "config.json")) as f:
            cfg = json.load(f)
        params = load_safetensors(os.path.join(path, "model.safetensors"))
        params = {k: v.float().requires_grad_(True) for k, v in params.items()}
        return cls(cfg, params)

    def parameters(self):
        return list(self.params.values())

    def W(self, name):
        return self.params[name]

    # ---- mixers (x (B,T,d) normalised block input; cache: a layer dict or None) --------------------

    def _lin(self, p, x, name, bias=False):
        return F.linear(x, self.params[p + name + ".weight"], self.params.get(p + name + ".bias") if bias else None)

    def _conv(self, p, x, name, act, cache):
        w = self.params[p + name + ".weight"]
        if cache is None:
            return causal_conv(x, w, act)
        W = w.shape[-1]
        if name in cache:   # decode: one token
            buf = cache[name]
            buf.copy_(torch.cat([buf[:, :, 1:], x.transpose(1, 2)], -1))
            y = (buf * w[:, 0, :]).sum(-1)[:, None, :]
            return F.silu(y) if act else y
        xt = x.transpose(1, 2)
        T = xt.shape[-1]
        cache[name] = (F.pad(xt, (W - T, 0)) if T < W else xt[..., T - W:]).clone()
        return causal_conv(x, w, act)

    def _recur(self, cache, fwd, step):
        if cache is None:
            return fwd(False)
        if "state" in cache:
            return step(cache["state"])
        o, st = fwd(True)
        cache["state"] = st
        return o

    def _attention(self, i, x, spec, qk_norm, cache):
        p = f"model.layers.{i}.attn."
        B, T, d = x.shape
        H, Hkv = spec["num_heads"], spec["num_kv_heads"]
        D = d // H
        bias = spec.get("qkv_bias", False)
        q = self._lin(p, x, "q_proj", bias).view(B, T, H, D)
        k = self._lin(p, x, "k_proj", bias).view(B, T, Hkv, D)
        v = self._lin(p, x, "v_proj", bias).view(B, T, Hkv, D)
        if qk_norm:
            q, k = rms(q, self.W(p + "q_norm.weight"), 1e-5), rms(k, self.W(p + "k_norm.weight"), 1e-5)
        pos0 = cache.get("pos", 0) if cache is not None else 0
        theta = spec.get("rope_theta", 10000.0)
        q, k = rope(q, theta, pos0), rope(k, theta, pos0)
        window = spec.get("window_size") or 0
        scale = D ** -0.5
        if cache is not None and pos0 > 0:   # decode step against the KV cache
            need = pos0 + T
            if cache["k"].shape[1] < need:
                cap = max(need, 2 * cache["k"].shape[1])
                for key in ("k", "v"):
                    nb = cache[key].new_zeros(B, cap, Hkv, D)
                    nb[:, :pos0] = cache[key][:, :pos0]
                    cache[key] = nb
            cache["k"][:, pos0:need], cache["v"][:, pos0:need] = k, v
            cache["pos"] = need
            c0 = 0 if window <= 0 else max(0, need - window)
            kc, vc = cache["k"][:, c0:need], cache["v"][:, c0:need]
            G = H // Hkv
            qh = q.view(B, T, Hkv, G, D).permute(0, 2, 3, 1, 4).reshape(B, Hkv, G * T, D)
            s = torch.matmul(qh, kc.permute(0, 2, 3, 1)) * scale
            o = torch.matmul(torch.softmax(s, -1), vc.transpose(1, 2))
            o = o.view(B, Hkv, G, T, D).permute(0, 3, 1, 2, 4).reshape(B, T, H * D)
            return self._lin(p, o, "o_proj")
        if cache is not None:
            cap = max(64, T)
            cache["k"], cache["v"] = k.new_zeros(B, cap, Hkv, D), v.new_zeros(B, cap, Hkv, D)
            cache["k"][:, :T], cache["v"][:, :T] = k.detach(), v.detach()
            cache["pos"] = T
        o = attention_core(q, k, v, scale, window)
        return self._lin(p, o.reshape(B, T, H * D), "o_proj")

    def _lb(self, i, lbs):
        return None if lbs is None or i == 0 else lbs[i]

    def _hgrn(self, i, x, cache, lbs):
        c, p = self.cfg, f"model.layers.{i}.attn."
        ii, f = self._lin(p, x, "i_proj"), self._lin(p, x, "f_proj")
        if c["use_short_conv"]:
            ii, f = self._conv(p, ii, "i_conv1d", False, cache), self._conv(p, f, "f_conv1d", False, cache)
        f = F.logsigmoid(f)
        lb = self._lb(i, lbs)
        if lb is not None:
            f = torch.log(lb + (1 - lb) * torch.exp(f))
        ii = F.silu(ii) * (1 - torch.exp(f))

        def step(st):
            st.mul_(torch.exp(f[:, 0])).add_(ii[:, 0])
            return st[:, None].clone()
        o = self._recur(cache, lambda ws: hgrn_scan(ii, f, ws), step)
        gw = self.params.get(p + "g_norm.weight")
        o = rms(o, gw, c["norm_eps"]) * F.silu(self._lin(p, x, "g_proj"))
        return self._lin(p, o, "o_proj")

    def _gated_output(self, p, o, x, H, dv):
        c = self.cfg
        B, T = x.shape[:2]
        nn = "g_norm_swish_gate" if (c["hidden_act"] == "swish" and c.get("fuse_norm", True) is not False
                                     and c["use_output_gate"]) else "g_norm"
        w = self.params.get(p + nn + ".weight")
        if c["use_output_gate"]:
            g = self._lin(p, x, "g_proj").view(B, T, H, dv)
            o = rms(o, w, c["norm_eps"]) * F.silu(g)
        else:
            o = rms(o, w, c["norm_eps"])
        return self._lin(p, o.reshape(B, T, H * dv), "o_proj")

    def _retnet(self, i, x, cache):
        c, p = self.cfg, f"model.layers.{i}.attn."
        B, T, d = x.shape
        H, Hkv = c["num_heads"], c["_kv"]
        dk, dv = c["_kd"] // H, c["_vd"] // H
        q = self._lin(p, x, "q_proj").view(B, T, H, dk)
        k = self._lin(p, x, "k_proj").view(B, T, Hkv, dk)
        v = self._lin(p, x, "v_proj").view(B, T, Hkv, dv)
        pos0 = cache.get("pos", 0) if cache is not None else 0
        q, k = rope(q, 10000.0, pos0), rope(k, 10000.0, pos0)
        if H != Hkv:
            k, v = k.repeat_interleave(H // Hkv, 2), v.repeat_interleave(H // Hkv, 2)
        lg = torch.tensor([math.log(1 - 2.0 ** (-5 - h)) for h in range(H)], dtype=torch.float32)
        scale = dk ** -0.5
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
        o = self._recur(cache, lambda ws: retention_chunk(qh, kh, vh, lg, scale, want_state=ws),
                        lambda st: retention_step(st, qh[:, :, 0], kh[:, :, 0], vh[:, :, 0], lg, scale)[:, :, None])
        if cache is not None:
            cache["pos"] = pos0 + T
        return self._gated_output(p, o.transpose(1, 2), x, H, dv)

    def _gla(self, i, x, cache):
        c, p = self.cfg, f"model.layers.{i}.attn."
        B, T, d = x.shape
        H, Hkv = c["num_heads"], c["_kv"]
        dk, dv = c["_kd"] // H, c["_vd"] // H
        q, k, v = self._lin(p, x, "q_proj"), self._lin(p, x, "k_proj"), self._lin(p, x, "v_proj")
        if c["use_short_conv"]:
            q, k, v = (self._conv(p, t, n, True, cache) for t, n in ((q, "q_conv1d"), (k, "k_conv1d"), (v, "v_conv1d")))
        gk = F.linear(self._lin(p, x, "gk_proj.0"), self.W(p + "gk_proj.1.weight"), self.W(p + "gk_proj.1.bias"))
        q, k, v, gk = q.view(B, T, H, dk), k.view(B, T, Hkv, dk), v.view(B, T, Hkv, dv), gk.view(B, T, Hkv, dk)
        if H != Hkv:
            G = H // Hkv
            k, v, gk = k.repeat_interleave(G, 2), v.repeat_interleave(G, 2), gk.repeat_interleave(G, 2)
        gk = F.logsigmoid(gk) / 16
        if c.get("clamp_min") is not None:
            gk = gk.clamp(min=c["clamp_min"])
        scale = dk ** -0.5
        qh, kh, vh, gh = (t.transpose(1, 2) for t in (q, k, v, gk))
        o = self._recur(cache, lambda ws: gla_chunk(qh, kh, vh, gh, scale, want_state=ws),
                        lambda st: gla_step(st, qh[:, :, 0], kh[:, :, 0], vh[:, :, 0], gh[:, :, 0], scale)[:, :, None])
        return self._gated_output(p, o.transpose(1, 2), x, H, dv)

    def _hgrn2(self, i, x, cache, lbs):
        c, p = self.cfg, f"model.layers.{i}.attn."
        B, T, d = x.shape
        E, H = c["expand_ratio"], c["_H"]
        q, f, ii = self._lin(p, x, "q_proj"), self._lin(p, x, "f_proj"), self._lin(p, x, "i_proj")
        if c["use_short_conv"]:
            q, f, ii = (self._conv(p, t, n, False, cache) for t, n in ((q, "q_conv1d"), (f, "f_conv1d"), (ii, "i_conv1d")))
        q = F.silu(q)
        g = F.logsigmoid(f)
        lb = self._lb(i, lbs)
        if lb is not None:
            g = torch.log(lb + (1 - lb) * torch.exp(g))
        k = 1 - torch.exp(g)
        qh, kh, gh = (t.view(B, T, H, E).transpose(1, 2) for t in (q, k, g))
        vh = ii.view(B, T, H, d // H).transpose(1, 2)
        scale = E ** -0.5
        o = self._recur(cache, lambda ws: gla_chunk(qh, kh, vh, gh, scale, want_state=ws),
                        lambda st: gla_step(st, qh[:, :, 0], kh[:, :, 0], vh[:, :, 0], gh[:, :, 0], scale)[:, :, None])
        o = o.transpose(1, 2).reshape(B, T, d)
        o = rms(o, self.params.get(p + "g_norm.weight"), 1e-5)
        return self._lin(p, o, "o_proj")

    def _delta_out(self, p, o, x, HV, dv):
        c = self.cfg
        B, T = x.shape[:2]
        w = self.W(p + "o_norm.weight")
        if c["use_gate"]:
            o = rms(o, w, c["norm_eps"]) * F.silu(self._lin(p, x, "g_proj").view(B, T, HV, dv))
        else:
            o = rms(o, w, c["norm_eps"])
        return self._lin(p, o.reshape(B, T, HV * dv), "o_proj")

    def _delta_core(self, q, k, v, beta, g, dk, cache):
        # q, k (B,T,H,K), v (B,T,HV,V), beta/g (B,T,HV) → o (B,T,HV,V)
        H, HV = q.shape[2], v.shape[2]
        if HV != H:
            q, k = q.repeat_interleave(HV // H, 2), k.repeat_interleave(HV // H, 2)
        scale = dk ** -0.5
        qh, kh, vh = (t.transpose(1, 2) for t in (q, k, v))
        bh = beta.transpose(1, 2)
        gh = g.transpose(1, 2) if g is not None else None
        o = self._recur(cache, lambda ws: delta_chunk(qh, kh, vh, bh, gh, scale, want_state=ws),
                        lambda st: delta_step(st, qh[:, :, 0], kh[:, :, 0], vh[:, :, 0], bh[:, :, 0],
                                              gh[:, :, 0] if gh is not None else None, scale)[:, :, None])
        return o.transpose(1, 2)

    def _delta_net(self, i, x, cache):
        c, p = self.cfg, f"model.layers.{i}.attn."
        B, T, d = x.shape
        H = c["num_heads"]
        dk, dv = c["_kd"] // H, c["_vd"] // H
        q, k, v = self._lin(p, x, "q_proj"), self._lin(p, x, "k_proj"), self._lin(p, x, "v_proj")
        qk_act = c["qk_activation"] == "silu"
        if c["use_short_conv"]:
            q, k = self._conv(p, q, "q_conv1d", qk_act, cache), self._conv(p, k, "k_conv1d", qk_act, cache)
            v = self._conv(p, v, "v_conv1d", True, cache)
        else:
            if qk_act:
                q, k = F.silu(q), F.silu(k)
            v = F.silu(v)
        q, k, v = q.view(B, T, H, dk), k.view(B, T, H, dk), v.view(B, T, H, dv)
        if c["qk_activation"] == "relu":
            q, k = F.relu(q), F.relu(k)
        elif c["qk_activation"] == "elu":
            q, k = F.elu(q) + 1, F.elu(k) + 1
        if c["qk_norm"] == "l2":
            q, k = l2n(q), l2n(k)
        else:
            q, k = q / q.sum(-1, keepdim=True), k / k.sum(-1, keepdim=True)
        beta = torch.sigmoid(self._lin(p, x, "b_proj")) if c["use_beta"] else x.new_ones(B, T, H)
        if c["allow_neg_eigval"]:
            beta = beta * 2
        return self._delta_out(p, self._delta_core(q, k, v, beta, None, dk, cache), x, H, dv)

    def _gated_deltanet(self, i, x, cache):
        c, p = self.cfg, f"model.layers.{i}.attn."
        B, T, d = x.shape
        H, HV, dk, dv = c["num_heads"], c["_HV"], c["head_dim"], c["_dv"]
        q, k, v = self._lin(p, x, "q_proj"), self._lin(p, x, "k_proj"), self._lin(p, x, "v_proj")
        if c["use_short_conv"]:
            q, k, v = (self._conv(p, t, n, True, cache) for t, n in ((q, "q_conv1d"), (k, "k_conv1d"), (v, "v_conv1d")))
        else:
            q, k, v = F.silu(q), F.silu(k), F.silu(v)
        q, k, v = l2n(q.view(B, T, H, dk)), l2n(k.view(B, T, H, dk)), v.view(B, T, HV, dv)
        beta = torch.sigmoid(self._lin(p, x, "b_proj"))
        if c["allow_neg_eigval"]:
            beta = beta * 2
        g = -torch.exp(self.W(p + "A_log")) * F.softplus(self._lin(p, x, "a_proj") + self.W(p + "dt_bias"))
        return self._delta_out(p, self._delta_core(q, k, v, beta, g, dk, cache), x, HV, dv)

    # ---- model ---------------------------------------------------------------------------------------

    def _lower_bounds(self):
        lbw = self.params.get("model.lower_bounds")
        if lbw is None:
            return None
        s = torch.softmax(lbw, 0)
        return s.cumsum(0) - s[0]

    def hidden(self, ids, cache=None):
        c = self.cfg
        h = F.embedding(ids, self.params["model.embeddings.weight"])
        lbs = self._lower_bounds()
        for i, (kind, spec, qkn) in enumerate(self.kinds):
            pre = f"model.layers.{i}."
            lc = cache["layers"][i] if cache is not None else None
            x = rms(h, self.params[pre + "attn_norm.weight"], c["norm_eps"])
            if kind == "attention":
                y = self._attention(i, x, spec, qkn, lc)
            elif kind in ("hgrn", "hgrn2"):
                y = getattr(self, "_" + kind)(i, x, lc, lbs)
            else:
                y = getattr(self, "_" + kind)(i, x, lc)
            h = h + y
            x = rms(h, self.params[pre + "mlp_norm.weight"], c["norm_eps"])
            a = F.linear(x, self.params[pre + "mlp.gate_proj.weight"])
            b = F.linear(x, self.params[pre + "mlp.up_proj.weight"])
            h = h + F.linear(F.silu(a) * b, self.params[pre + "mlp.down_proj.weight"])
        return rms(h, self.params["model.norm.weight"], c["norm_eps"])

    def lm_weight(self):
        return self.params.get("lm_head.weight", self.params["model.embeddings.weight"])

    def forward(self, ids):
        return F.linear(self.hidden(ids), self.lm_weight())

    def loss(self, ids):
        B, T = ids.shape
        h = self.hidden(ids)[:, :T - 1]
        logits = F.linear(h, self.lm_weight())
        return F.cross_entropy(logits.reshape(B * (T - 1), -1), ids[:, 1:].reshape(-1))

    # ---- decoding ------------------------------------------------------------------------------------

    def new_cache(self, B=1):
        return {"layers": [{} for _ in self.kinds], "pos": 0}

    @torch.no_grad()
    def prefill(self, ids, cache):
        h = self.hidden(ids, cache)
        cache["pos"] += ids.shape[1]
        return F.linear(h[:, -1], self.lm_weight())

    @torch.no_grad()
    def step(self, col, cache):
        """col (B,) or (B,1) int64 → logits (B,V) for the next position."""
        h = self.hidden(col.view(-1, 1), cache)
        cache["pos"] += 1
        return F.linear(h[:, -1], self.lm_weight())
