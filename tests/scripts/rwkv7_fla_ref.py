# tests/scripts/rwkv7_fla_ref.py — the references of tests/data/rwkv7_fla (see its README.md): a float64
# PyTorch transcription of fla v0.5.2's RWKV-7 model (commit bc3b101d: fla/models/rwkv7/modeling_rwkv7.py,
# fla/layers/rwkv7.py, fla/layers/attn.py for hybrids; MIT licence, (c) Songlin Yang, Yu Zhang, Zhiyuan Li
# and contributors) with fla's Triton kernels replaced by fla's own reference functions (token_shift_ref,
# torch_addcmul_rwkv7, k_update_ref, gate_output_correction_ref, the naive DPLR recurrence of
# ops/generalized_delta_rule/dplr/naive.py, L2Wrap of modules/l2warp.py), F.layer_norm / F.group_norm,
# and causal softmax attention with fla's rotate-half RoPE. Two departures, both where fla cannot run:
# the hybrid's attention layer passes v_first through (fla's RWKV7Block unpacks four values from an
# Attention that returns three), and without an RWKV-7 layer 0 a layer whose value_dim differs from
# hidden_size interpolates towards zeros of its own width (fla's zeros_like(hidden_states) would not
# broadcast).
#   python3 tests/scripts/rwkv7_fla_ref.py DIR...   (Debian's python3-torch; no fla, triton or einops)
# reads DIR/config.json, model.safetensors, ids.safetensors; writes DIR/refs.safetensors: input_ids,
# logits (F32), loss (F64; with l2_warp's value, unchanged, when use_l2warp) and grad.<name> (F32) of
# every parameter, all computed in float64.
import json, math, struct, sys
import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

DT = {'F32': np.float32, 'F64': np.float64, 'I64': np.int64, 'BF16': None}

def load_st(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == '__metadata__': continue
        a, b = v['data_offsets']
        arr = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=DT[v['dtype']]).reshape(v['shape'])
        t = torch.from_numpy(arr.copy())
        out[k] = t.double() if t.is_floating_point() else t
    return out

def save_st(path, tensors):
    hdr, blobs, off = {}, [], 0
    for k, t in tensors.items():
        a = t.detach().contiguous().numpy()
        dt = {np.dtype('float64'): 'F64', np.dtype('float32'): 'F32', np.dtype('int64'): 'I64'}[a.dtype]
        b = a.tobytes()
        hdr[k] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b); off += len(b)
    hb = json.dumps(hdr).encode()
    hb += b' ' * ((8 - len(hb) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(hb))); f.write(hb)
        for b in blobs: f.write(b)

# ---- fla's reference helpers -------------------------------------------------------------------------
def token_shift_ref(x):                       # fla/modules/token_shift.py token_shift_ref (no cu_seqlens)
    shifted = torch.nn.ZeroPad2d((0, 0, 1, -1))(x)
    return shifted - x

def torch_addcmul_rwkv7(h, delta, *xs):       # fla/ops/rwkv7/fused_addcmul.py
    return [torch.addcmul(h, delta, x) for x in xs]

def k_update_ref(k, a, ka):                   # fla/ops/rwkv7/fused_k_update.py
    return k.addcmul(k * (a - 1), ka)

def gate_output_correction_ref(o, r, k, r_k, v, g):
    correction_term = ((r * k * r_k.unsqueeze(0).unsqueeze(0)).sum(-1, keepdim=True) * v).view(o.shape)
    return (o + correction_term) * g

def l2_norm_fused(x, eps=1e-6):               # fla/modules/l2norm.py: x * rsqrt(sum x^2 + eps)
    return x / torch.sqrt((x * x).sum(-1, keepdim=True) + eps)

def dplr_recurrence(q, k, v, alpha, beta, gk, scale):   # fla naive dplr_recurrence, [B,T,H,*], any scale
    B, T, H, K = q.shape; V = v.shape[-1]
    S = torch.zeros(B, H, K, V)
    o = []
    for i in range(T):
        _k, _q, _v, _a, _b = k[:, i], q[:, i] * scale, v[:, i], alpha[:, i], beta[:, i]
        kv = _k[..., None] * _v[..., None, :] + (S * _a[..., None]).sum(-2, keepdim=True) * _b[..., None]
        S = S * gk[:, i].exp()[..., None] + kv
        o.append(torch.einsum('bhd,bhdm->bhm', _q, S))
    return torch.stack(o, 1)

class L2Wrap(torch.autograd.Function):        # fla/modules/l2warp.py
    @staticmethod
    def forward(ctx, loss, logits, l2_penalty_factor=1e-4):
        maxx, ids = torch.max(logits, dim=-1, keepdim=True)
        ctx.logits_shape = logits.shape
        factor = l2_penalty_factor / (logits.shape[0] * logits.shape[1])
        maxx = maxx * factor
        ctx.save_for_backward(maxx, ids)
        return loss
    @staticmethod
    def backward(ctx, grad_output):
        maxx, ids = ctx.saved_tensors
        glogits = torch.zeros(ctx.logits_shape, dtype=grad_output.dtype)
        glogits.scatter_(-1, ids, maxx * grad_output)
        return grad_output, glogits, None

# ---- the model -------------------------------------------------------------------------------------------
def lin(P, name, x):
    return F.linear(x, P[name + '.weight'], P.get(name + '.bias'))

def lora(P, pre, x, act):
    y = F.linear(x, P[pre + '.lora.0.weight'])
    if act == 'tanh': y = torch.tanh(y)
    elif act == 'sigmoid': y = torch.sigmoid(y)
    return F.linear(y, P[pre + '.lora.2.weight'], P.get(pre + '.lora.2.bias'))

def rwkv7_attention(P, pre, x, i, v_first, cfg):
    B, T, d = x.shape
    hd = cfg['head_dim']; H = d // hd
    vd = cfg['value_dim'][i]; hvd = vd // H
    delta = token_shift_ref(x)
    xr, xw, xk, xv, xa, xg = torch_addcmul_rwkv7(x, delta, *[P[pre + n] for n in ['x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g']])
    r = lin(P, pre + 'r_proj', xr)
    w = -0.6065306597126334 * lora(P, pre + 'w_lora', xw, 'tanh').sigmoid()
    k = lin(P, pre + 'k_proj', xk)
    v = lin(P, pre + 'v_proj', xv)
    if i == 0:
        v_first = v
    else:
        if v_first.shape != v.shape:   # no RWKV-7 layer 0 (hybrid): fla's zeros_like(hidden) v_first, at v's width
            v_first = torch.zeros_like(v)
        v = torch.lerp(v, v_first, lora(P, pre + 'v_lora', xv, None).sigmoid())
    a = lora(P, pre + 'a_lora', xa, None).sigmoid()
    g = lora(P, pre + 'g_lora', xg, 'sigmoid')
    kkin = (k * P[pre + 'k_k']).view(B, T, H, hd)
    kk = l2_norm_fused(kkin) if cfg.get('fuse_norm', True) else F.normalize(kkin, dim=-1, p=2.0)
    k = k_update_ref(k, a, P[pre + 'k_a'])
    r, w, k, a = [t.view(B, T, H, hd) for t in (r, w, k, a)]
    v = v.view(B, T, H, hvd)
    o = dplr_recurrence(r, k, v, -kk, kk * a, w, 1.0)
    o = F.group_norm(o.reshape(B * T, vd), H, P[pre + 'g_norm.weight'], P[pre + 'g_norm.bias'],
                     eps=hd * cfg['norm_eps']).view(B, T, vd)
    o = gate_output_correction_ref(o, r, k, P[pre + 'r_k'], v, g)
    return lin(P, pre + 'o_proj', o), v_first

def rotary(x, theta):                          # fla RotaryEmbedding, non-interleaved (rotate_half)
    B, T, H, D = x.shape
    inv = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float64) / D))
    fr = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = fr.cos()[None, :, None, :], fr.sin()[None, :, None, :]
    cos, sin = torch.cat([cos, cos], -1), torch.cat([sin, sin], -1)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin

def attention(P, pre, x, spec, cfg):
    B, T, d = x.shape
    H = spec['num_heads']; Hkv = spec.get('num_kv_heads') or H; D = d // H
    q = lin(P, pre + 'q_proj', x).view(B, T, H, D)
    k = lin(P, pre + 'k_proj', x).view(B, T, Hkv, D)
    v = lin(P, pre + 'v_proj', x).view(B, T, Hkv, D)
    th = spec.get('rope_theta', 10000.0)
    q, k = rotary(q, th), rotary(k, th)
    k = k.repeat_interleave(H // Hkv, 2); v = v.repeat_interleave(H // Hkv, 2)
    s = torch.einsum('bthd,bshd->bhts', q, k) / math.sqrt(D)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    ws = spec.get('window_size')
    if ws is not None: mask &= ~torch.ones(T, T, dtype=torch.bool).tril(-ws)
    s = s.masked_fill(~mask, float('-inf'))
    o = torch.einsum('bhts,bshd->bthd', s.softmax(-1), v).reshape(B, T, d)
    return lin(P, pre + 'o_proj', o)

def ln(P, name, x, cfg):
    d = x.shape[-1]
    return F.layer_norm(x, (d,), P[name + '.weight'], P.get(name + '.bias'), cfg['norm_eps'])

def ffn(P, pre, x):
    delta = token_shift_ref(x)
    kx = x.addcmul(delta, P[pre + 'x_k'])
    return F.linear(F.relu(F.linear(kx, P[pre + 'key.weight'])) ** 2, P[pre + 'value.weight'])

def attn_spec(cfg, i):
    a = cfg.get('attn')
    if a is None: return None
    for s in (a if isinstance(a, list) else [a]):
        if i in s['layers']: return s
    return None

def model(P, ids, cfg):
    x = P['model.embeddings.weight'][ids]
    v_first = torch.zeros_like(x)
    for i in range(cfg['num_hidden_layers']):
        pre = f'model.layers.{i}.'
        residual = ln(P, pre + 'pre_norm', x, cfg) if (cfg['norm_first'] and i == 0) else x
        h = ln(P, pre + 'attn_norm', residual, cfg)
        spec = attn_spec(cfg, i)
        if spec is not None:
            h = attention(P, pre + 'attn.', h, spec, cfg)
        else:
            h, v_first = rwkv7_attention(P, pre + 'attn.', h, i, v_first, cfg)
        h = residual + h
        residual = h
        h = ffn(P, pre + 'ffn.', ln(P, pre + 'ffn_norm', h, cfg))
        x = residual + h
    x = ln(P, 'model.norm', x, cfg)
    W = P['lm_head.weight'] if 'lm_head.weight' in P else P['model.embeddings.weight']
    return F.linear(x, W)

def main(d):
    cfg = json.load(open(d + '/config.json'))
    P = load_st(d + '/model.safetensors')
    ids = load_st(d + '/ids.safetensors')['input_ids']
    for p in P.values(): p.requires_grad_(True)
    logits = model(P, ids, cfg)
    labels = ids
    shift = torch.cat((labels[..., 1:], torch.full_like(labels[:, :1], -100)), 1)
    loss = F.cross_entropy(logits.view(shift.numel(), -1), shift.view(-1), ignore_index=-100)
    if cfg.get('use_l2warp', True): loss = L2Wrap.apply(loss, logits)
    loss.backward()
    out = {'input_ids': ids, 'logits': logits.detach().float(), 'loss': loss.detach().reshape(1)}
    for k, p in P.items(): out['grad.' + k] = p.grad.float()
    save_st(d + '/refs.safetensors', out)
    print(d, 'loss', loss.item())

if __name__ == '__main__':
    for d in sys.argv[1:]: main(d)
