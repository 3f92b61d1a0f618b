"""The GPU checks of issue 24, point 5 (run by bench/gpu_check.sh; each check prints one line).

1. ``cuda_vs_cpu``: every registered learner's float64 meta-gradient (loss, gradients, batch-norm
   buffers) on CUDA equals the CPU's, and so does Conv4 MAML's at the Omniglot presets' shape.
2. ``loop_vs_vmap``: the per-task loop and the ``vmap`` batch give the same float64 meta-gradients
   on the device (CUDA; the CPU without one).
3. ``bf16``: Conv4 MAML's meta-gradient under ``torch.autocast(device, dtype=torch.bfloat16)``
   (forward passes only, backward outside, as ``fewshot train`` does) against float32: cosine and
   relative error. bf16 keeps 8 significant bits (relative rounding 2^-9 per value), and a
   second-order meta-gradient sums many small, partly cancelling per-example terms through ~4 layers
   forward and twice as many backward: at initialisation the whole gradient's direction survives but
   not its digits (measured on this project's CPU, glyph-like tasks: cosine 0.959 at 1 query and
   0.983 at 15, relative error 0.29 / 0.18).  The check is therefore a sanity bound that a broken
   cast fails by far (NaN or inf from an overflow, a reduced-precision gradient or buffer, an uncast
   op): cosine >= 0.9, relative error <= 0.5, float32 gradients.  The figures themselves are the
   evidence to compare.
4. (CUDA only; run by the shell script) ``bench/peers.py --device cuda``: the peers table on the
   GPU.
5. (CUDA only; run by the shell script) ``bench/train_bench.py``: a short full-speed training rate.

Checks 1-3 write ``<out>/gpu_check.json``; ``--report`` then writes ``<out>/gpu_check.md`` from it,
the training rates (``<out>/train_rate.jsonl``) and the peers table (``<out>/peers/peers.md``),
naming the device.
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from torch import nn

from episodes import TaskBatch
from fewshot import MAML, Conv4, MAMLConfig
from fewshot.learners import LEARNERS, GradientLearner, build_learner, learner_config
from fewshot.nn import StepBatchNorm1d


def _mlp(seed: int = 0, ways: int = 3) -> nn.Module:
    torch.manual_seed(seed)  # check-only init
    return nn.Sequential(nn.Linear(4, 8), StepBatchNorm1d(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(),
                         nn.Linear(8, ways)).double()


def _vectors(seed: int = 1, b: int = 3, ways: int = 3, shots: int = 2,
             queries: int = 3) -> TaskBatch:
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(b, ways, 1, 4, generator=g, dtype=torch.float64) * 2
    noise_s = torch.randn(b, ways, shots, 4, generator=g, dtype=torch.float64)
    noise_q = torch.randn(b, ways, queries, 4, generator=g, dtype=torch.float64)
    sx = (centres + noise_s).reshape(b, ways * shots, 4)
    qx = (centres + noise_q).reshape(b, ways * queries, 4)
    sy = torch.arange(ways).repeat_interleave(shots).expand(b, -1).clone()
    qy = torch.arange(ways).repeat_interleave(queries).expand(b, -1).clone()
    return TaskBatch(sx, sy, qx, qy, ways)


def _images(meta_batch: int = 8, queries: int = 1, dtype: torch.dtype = torch.float32) -> TaskBatch:
    """The Omniglot presets' shape (5-way 1-shot, 28x28, ``queries`` per class) with a learnable
    signal: each class of each task is a random binary glyph, its images that glyph plus noise (pure
    noise images with arbitrary labels would make the meta-gradient a near-cancelling sum, a poor
    test of rounding)."""
    g = torch.Generator().manual_seed(2)
    glyphs = (torch.rand(meta_batch, 5, 1, 1, 28, 28, generator=g) < 0.2).to(dtype)

    def draw(per_class: int) -> torch.Tensor:
        noise = torch.rand(meta_batch, 5, per_class, 1, 28, 28, generator=g, dtype=dtype) * 0.3
        return (glyphs * 0.7 + noise).reshape(meta_batch, 5 * per_class, 1, 28, 28)

    sx, qx = draw(1), draw(queries)
    sy = torch.arange(5).expand(meta_batch, -1).contiguous()
    return TaskBatch(sx, sy, qx,
                     torch.arange(5).repeat_interleave(queries).expand(meta_batch, -1).contiguous(),
                     5)


def _conv_maml(**overrides) -> MAML:
    torch.manual_seed(0)  # check-only init
    model = Conv4(1, 5, hidden=64, image_size=28, pool=False)
    return MAML(model, MAMLConfig(inner_steps=1, inner_lr=0.4, adapt_norm=True, **overrides))


def _meta_gradient(learner: GradientLearner, batch: TaskBatch, autocast: str | None = None):
    """(loss, gradients, floating buffers after the step) of one meta-gradient of ``batch``."""
    if autocast:
        with torch.autocast(autocast, dtype=torch.bfloat16):
            out = learner.meta_loss(batch)
    else:
        out = learner.meta_loss(batch)
    params = list(learner.parameters())
    grads = torch.autograd.grad(out.loss, params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    buffers = [b for b in learner.buffers() if b.is_floating_point()]
    return out.loss.detach(), [g.detach() for g in grads], [b.detach().clone() for b in buffers]


def _gap(a, b) -> float:
    """Largest |a - b| over the loss, every gradient and every buffer (all moved to the CPU)."""
    (la, ga, ba), (lb, gb, bb) = a, b
    pairs = [(la, lb), *zip(ga, gb), *zip(ba, bb)]
    return max(float((x.cpu().double() - y.cpu().double()).abs().max()) for x, y in pairs)


def _learner(name: str, device: torch.device, **overrides) -> GradientLearner:
    learner = build_learner(name, _mlp(), learner_config(name, {"inner_steps": 2, **overrides}))
    assert isinstance(learner, GradientLearner)
    return learner.to(device)


def cuda_vs_cpu(device: torch.device) -> dict:
    rows = {}
    for name in sorted(LEARNERS):
        cpu = _learner(name, torch.device("cpu"), task_batching="loop")
        gpu = copy.deepcopy(cpu).to(device)
        batch = _vectors()
        rows[name] = _gap(_meta_gradient(cpu, batch), _meta_gradient(gpu, batch.to(device)))
    cpu_conv = _conv_maml(task_batching="loop").double()
    gpu_conv = copy.deepcopy(cpu_conv).to(device)
    batch = _images(dtype=torch.float64)
    rows["maml Conv4 28x28"] = _gap(_meta_gradient(cpu_conv, batch),
                                    _meta_gradient(gpu_conv, batch.to(device)))
    return {"max_abs_gap": rows, "ok": all(g <= 1e-9 for g in rows.values()), "tolerance": 1e-9}


def loop_vs_vmap(device: torch.device) -> dict:
    rows = {}
    for name in sorted(LEARNERS):
        loop = _learner(name, device, task_batching="loop")
        vmapped = _learner(name, device, task_batching="vmap")
        vmapped.load_state_dict(loop.state_dict())
        batch = _vectors().to(device)
        rows[name] = _gap(_meta_gradient(loop, batch), _meta_gradient(vmapped, batch))
    return {"max_abs_gap": rows, "ok": all(g <= 1e-10 for g in rows.values()), "tolerance": 1e-10}


def bf16(device: torch.device) -> dict:
    rows = {}
    for queries in (1, 15):
        learner = _conv_maml(task_batching="loop").to(device)
        batch = _images(queries=queries).to(device)
        state = copy.deepcopy(learner.state_dict())
        _, full, _ = _meta_gradient(learner, batch)
        learner.load_state_dict(state)
        _, half, _ = _meta_gradient(learner, batch, autocast=device.type)
        a, b = torch.cat([g.flatten() for g in full]).double(), torch.cat(
            [g.flatten() for g in half]).double()
        rows[f"{queries} quer{'y' if queries == 1 else 'ies'}"] = {
            "cosine": float(torch.nn.functional.cosine_similarity(a, b, dim=0)),
            "relative_error": float((a - b).norm() / a.norm()),
            "grad_dtypes": sorted({str(g.dtype) for g in half})}
    ok = all(r["cosine"] >= 0.9 and r["relative_error"] <= 0.5 and r["grad_dtypes"]
             == ["torch.float32"]
             for r in rows.values())
    return {"rows": rows, "ok": ok,
            "tolerance": "cosine >= 0.9, relative error <= 0.5, float32 gradients"}


def report(out: Path) -> None:
    """``out/gpu_check.md``: every figure the script produced, the device named, what was
    skipped."""
    result = json.loads((out / "gpu_check.json").read_text(encoding="utf-8"))
    lines = [f"# bench/gpu_check.sh on {result['device']}", "",
             f"torch {result['torch']}, CUDA {result['cuda'] or '-'}. Checks (float64 gaps: the "
             "largest "
             "|difference| over the loss, every gradient and every batch-norm buffer):", ""]
    for check, row in result["checks"].items():
        lines.append(
            f"- **{check}** ({'ok' if row['ok'] else 'FAILED'}; tolerance {row['tolerance']}): "
                     + json.dumps(row.get("max_abs_gap", row.get("rows"))))
    rates = out / "train_rate.jsonl"
    if rates.exists() and rates.read_text(encoding="utf-8").strip():
        lines += ["",
                  "Training rate (bench/train_bench.py: sample + meta-gradient + Adam step, "
                  "synthetic tasks of "
                  "the preset's shape, 20 timed iterations after 3):", "",
                  "| preset | ms / iteration | it/s |",
                  "|---|---|---|"]
        for line in rates.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            lines.append(f"| {row['preset']} | {row['seconds_per_iteration'] * 1000:.1f} | "
                         f"{1 / row['seconds_per_iteration']:.2f} |")
    peers = out / "peers" / "peers.md"
    if peers.exists():
        lines += ["",
                  "Peers table on this device (bench/peers.py --device cuda, see peers/peers.md):",
                  "",
                  *peers.read_text(encoding="utf-8").splitlines()[2:]]
    skipped = list(result["skipped"])
    if not torch.cuda.is_available():
        skipped += ["peers table on the GPU (needs CUDA)", "training rate on the GPU (needs CUDA)"]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(skipped) + "."]
        if not torch.cuda.is_available():
            lines.append(
                "The GPU figures are missing: this run had no CUDA device (run bench/gpu_check.sh "
                "on a GPU).")
    (out / "gpu_check.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out / 'gpu_check.md'}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="where gpu_check.json goes")
    p.add_argument("--report", action="store_true",
                   help="write gpu_check.md from what the checks left in --out")
    args = p.parse_args()
    if args.report:
        report(Path(args.out))
        return 0
    cuda = torch.cuda.is_available()
    device = torch.device("cuda") if cuda else torch.device("cpu")
    name = torch.cuda.get_device_name(device) if cuda else "no CUDA device (CPU only)"
    result: dict = {"device": name, "torch": torch.__version__,
                    "cuda": torch.version.cuda if cuda else None,
                    "checks": {}, "skipped": []}
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 means float32 in the bf16 comparison
    torch.backends.cudnn.allow_tf32 = False
    if cuda:
        result["checks"]["cuda_vs_cpu_float64"] = cuda_vs_cpu(device)
    else:
        result["skipped"].append("cuda_vs_cpu_float64 (needs CUDA)")
    result["checks"][f"loop_vs_vmap_float64_on_{device.type}"] = loop_vs_vmap(device)
    result["checks"][f"bf16_autocast_on_{device.type}"] = bf16(device)
    for check, row in result["checks"].items():
        print(f"{'ok  ' if row['ok'] else 'FAIL'} {check}: "
              + json.dumps(row.get("max_abs_gap", row.get("rows"))),
              flush=True)
    for skipped in result["skipped"]:
        print(f"SKIP {skipped}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0 if all(r["ok"] for r in result["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
