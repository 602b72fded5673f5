"""check_torch.py [FIXTURES_DIR] — verify tests/bench/torch_models.py against the fla fixtures.

For every folder in FIXTURES_DIR/{fla,stress} (default tests/fixtures,
or $HB_FIXTURES): loads config.json + model.safetensors, runs the chunked forward on refs' input_ids and
prints a table of
  * loss vs refs `loss` (must be within 1e-5 relative — the benchmark's acceptance criterion),
  * logits max |ours − ref| / max |ref| (fixture tolerance 1e-4),
  * gradients: the worst tensor's max |ours − ref| / max |ref| (fixture tolerance 1e-3),
  * decode: step-by-step logits from a cache vs the reference logits (same 1e-4 criterion).
Exit status 1 if any loss misses 1e-5 relative.
"""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "2")
os.environ.setdefault("OMP_NUM_THREADS", os.environ["OPENBLAS_NUM_THREADS"])
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402


def check(folder):
    m = tm.Model.load(folder)
    refs = tm.load_safetensors(os.path.join(folder, "refs.safetensors"))
    ids = refs["input_ids"].long()
    ref_loss = float(refs["loss"].double().reshape(-1)[0])
    for p in m.parameters():
        p.grad = None
    loss = m.loss(ids)
    loss.backward()
    rel = abs(float(loss) - ref_loss) / abs(ref_loss)
    gerr, gname = 0.0, ""
    for name, p in m.params.items():
        r = refs.get("grad." + name)
        if r is None:
            continue
        e = float((p.grad.double() - r.double()).abs().max() / r.double().abs().max().clamp_min(1e-30))
        if e > gerr:
            gerr, gname = e, name
    with torch.no_grad():
        logits = m.forward(ids)
        ref_logits = refs["logits"].float()
        scale = float(ref_logits.abs().max())
        lerr = float((logits - ref_logits).abs().max()) / scale
        cache = m.new_cache(ids.shape[0])
        steps = [m.prefill(ids[:, :1], cache)]
        for t in range(1, ids.shape[1]):
            steps.append(m.step(ids[:, t], cache))
        dec = torch.stack(steps, 1)
        derr = float((dec - ref_logits).abs().max()) / scale
    return dict(loss=float(loss), ref=ref_loss, rel=rel, logits=lerr, grad=gerr, gname=gname, decode=derr)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
        "HB_FIXTURES", os.path.join(here, "..", "fixtures"))
    torch.set_num_threads(int(os.environ["OPENBLAS_NUM_THREADS"]))
    rows, bad = [], 0
    print("| fixture | loss (torch) | loss (ref) | rel. diff | ok ≤1e-5 | logits err | worst grad err | decode err |")
    print("|---|---|---|---|---|---|---|---|")
    for group in ("fla", "stress"):
        gdir = os.path.join(root, group)
        for name in sorted(os.listdir(gdir)):
            r = check(os.path.join(gdir, name))
            ok = r["rel"] <= 1e-5
            bad += not ok
            rows.append(r)
            print(f"| {group}/{name} | {r['loss']:.7f} | {r['ref']:.7f} | {r['rel']:.1e} | {'yes' if ok else 'NO'} | "
                  f"{r['logits']:.1e} | {r['grad']:.1e} | {r['decode']:.1e} |", flush=True)
    print(f"\n{len(rows) - bad}/{len(rows)} fixtures within 1e-5 relative loss")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
