"""What best-step adaptation does on tasks harder than a model's validation set (issue 23, point 3).

The shipped ``omniglot-20w1s-maml`` (trained with 1 inner step, validated to 10 test steps at inner
lr 2.0) on three kinds of 20-way 1-shot tasks from the Omniglot (Vinyals) test split:

- ``within``: the 20 classes all from ONE alphabet (unrotated characters, ``.../rot000``, of the
  test alphabets with at least 20 of them; alphabet drawn uniformly, then 20 of its characters): the
  hard case.
- ``mixed``: 20 unrotated characters from any test alphabets (the same pool, no alphabet
  constraint): the control that isolates the alphabet effect.
- ``standard``: the model's own protocol (``EpisodeSampler`` over the whole test split, all 4
  rotations).
- ``within_rot``: one alphabet as in ``within`` but drawing from its characters in all 4 rotations
  (a task may hold a character and its rotation as two classes).

For each, per task: the support loss before each update and after the last (``learner.adapt(...,
best_step=False).support_losses``, 10 steps; a shorter run's losses are its prefix: the same
updates), and ``learner.evaluate(batch, steps=S, best_step=on/off)`` accuracy and step used, S in
``--steps``, in the model's bn_mode (support) and transductive.  Every draw comes from seeded
generators; 1 thread. Usage: ``FEWSHOT_DATA=<data root> python bench/best_step.py --out
bench/results/best_step.json`` (also writes the ``.md`` beside it).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import torch

import fewshot
from episodes import EpisodeSampler, data_root
from episodes.files import atomic_write_text
from episodes.omniglot import load_omniglot
from episodes.sampler import gather_batch
from episodes.types import ClassSplit, TaskBatch
from fewshot.reporting.report import bn_mode_of
from fewshot.scoring import summarize

MODEL = "omniglot-20w1s-maml"
WAYS, SHOTS = 20, 1


def alphabet(name: str) -> str:
    """``Alphabet/characterNN/rotDDD`` -> ``Alphabet``."""
    return name.split("/")[0]


def draw_rows(split: ClassSplit, pools: list[list[int]], tasks: int, per_class: int,
              gen: torch.Generator) -> torch.Tensor:
    """``rows [tasks, WAYS, per_class]``: per task a pool drawn uniformly, ``WAYS`` of its classes,
    then ``per_class`` distinct examples of each (all from ``gen``)."""
    off = split.class_offsets.long()
    rows = torch.empty(tasks, WAYS, per_class, dtype=torch.long)
    for b in range(tasks):
        pool = pools[int(torch.randint(len(pools), (1,), generator=gen))]
        picks = torch.randperm(len(pool), generator=gen)[:WAYS]
        for j, p in enumerate(picks.tolist()):
            c = pool[p]
            n = int(off[c + 1] - off[c])
            rows[b, j] = off[c] + torch.randperm(n, generator=gen)[:per_class]
    return rows


def task_batches(split: ClassSplit, tasks: int, queries: int,
                 seed: int) -> tuple[dict[str, TaskBatch], dict[str, int]]:
    """The four kinds' tasks (seeds ``seed`` .. ``seed + 3``) and each test alphabet's count of
    unrotated characters."""
    names = list(split.class_names)
    unrotated = [c for c, n in enumerate(names) if n.endswith("/rot000")]
    by_alpha: dict[str, list[int]] = {}
    for c in unrotated:
        by_alpha.setdefault(alphabet(names[c]), []).append(c)
    pools = [cs for _, cs in sorted(by_alpha.items()) if len(cs) >= WAYS]
    within = gather_batch(split.data, draw_rows(split, pools, tasks, SHOTS + queries,
                                                torch.Generator().manual_seed(seed)), SHOTS)
    mixed = gather_batch(split.data, draw_rows(split, [unrotated], tasks, SHOTS + queries,
                                               torch.Generator().manual_seed(seed + 1)), SHOTS)
    standard = EpisodeSampler(split, WAYS, SHOTS, queries, seed=seed + 2).sample(tasks)
    eligible = {alphabet(names[pool[0]]) for pool in pools}
    rotated: dict[str, list[int]] = {}
    for c, n in enumerate(names):
        if alphabet(n) in eligible:
            rotated.setdefault(alphabet(n), []).append(c)
    within_rot = gather_batch(split.data,
                              draw_rows(split, [rotated[a] for a in sorted(rotated)], tasks,
                                                    SHOTS + queries,
                                                    torch.Generator().manual_seed(seed + 3)), SHOTS)
    return ({"within": within, "mixed": mixed, "standard": standard, "within_rot": within_rot},
            {a: len(cs) for a, cs in sorted(by_alpha.items())})


def chunks(batch: TaskBatch, size: int):
    for i in range(0, len(batch), size):
        s = slice(i, i + size)
        yield TaskBatch(batch.support_x[s], batch.support_y[s], batch.query_x[s], batch.query_y[s],
                        batch.ways)


def support_losses(learner, batch: TaskBatch, steps: int) -> torch.Tensor:
    """``[tasks, steps + 1]``: each task's support loss before each update, then after the last."""
    return torch.stack(
        [learner.adapt(batch.support_x[i], batch.support_y[i], steps=steps, best_step=False,
                                      ways=WAYS).support_losses for i in range(len(batch))]).double(
                                          )


def scored(learner, batch: TaskBatch, steps: int, best: bool) -> dict[str, torch.Tensor]:
    outs = [learner.evaluate(b, steps=steps, best_step=best) for b in chunks(batch, 25)]
    return {k: torch.cat([o[k] for o in outs]) for k in ("accuracy", "step", "nonfinite_at")}


def ci(values: torch.Tensor) -> dict[str, float]:
    s = summarize(values.double())
    return {"mean": s.mean, "ci95": s.ci95}


def run_condition(learner, batch: TaskBatch, steps_list: list[int], modes: list[str]) -> dict:
    top = max(steps_list)
    losses = support_losses(learner, batch, top)
    res: dict = {
        "support_loss": {"mean": losses.mean(0).tolist(),
                         "median": losses.median(0).values.tolist()},
        "by_steps": {}}
    for s in steps_list:
        traj = losses[:, :s + 1]
        rises = int((traj[:, -1] > traj[:, :-1].min(-1).values).sum())
        entry: dict = {"support_loss_first": float(traj[:, 0].mean()),
                       "support_loss_last": float(traj[:, -1].mean()),
                       "tasks_last_above_min": rises}
        for mode in modes:
            with bn_mode_of(learner, mode):
                on, off = scored(learner, batch, s, True), scored(learner, batch, s, False)
            used = Counter(int(t) for t in on["step"])
            entry["support_loss_used"] = float(traj.gather(1, on["step"].long()[:, None]).mean())
            entry[mode] = {
                "best_on": ci(on["accuracy"]), "best_off": ci(off["accuracy"]),
                "paired_gain": ci(on["accuracy"] - off["accuracy"]),
                "tasks_on_earlier_step": int((on["step"] < s).sum()),
                "steps_used": {str(k): v for k, v in sorted(used.items())},
                "tasks_nonfinite": int((on["nonfinite_at"] >= 0).sum()),
            }
        res["by_steps"][str(s)] = entry
    return res


def pct(d: dict) -> str:
    return f"{100 * d['mean']:.2f} ± {100 * d['ci95']:.2f}"


def markdown(record: dict) -> str:
    a = record["args"]
    lines = [f"# bench/best_step.py: best-step adaptation on `{MODEL}` (issue 23, point 3)", "",
             f"{record['hardware']}; {a['tasks']} tasks per kind, 20-way 1-shot, {a['queries']} "
             "query per class, "
             f"seed {a['seed']}; {record['seconds']:.0f} s.  Model test steps: "
             f"{record['test_steps']} "
             f"(inner lr {record['inner_lr']}, trained with {record['train_inner_steps']} step); "
             "shipped bn_mode "
             f"`{record['bn_mode']}`.", "",
             "Kinds: **within** = 20 unrotated characters of ONE test alphabet (alphabets with >= "
             "20: "
             + ", ".join(f"{k} {v}" for k, v in record["alphabets"].items() if v >= WAYS)
             + "); **mixed** = 20 unrotated test characters of any alphabets (control); "
               "**standard** = the model's protocol (whole test split, all 4 rotations); "
               "**within_rot** = one of those alphabets, its characters in all 4 rotations (a "
               "character and its rotation may be two classes of a task).", "",
             "Mean support loss over tasks, before each update (0..9) and after the last (10) "
             "(median in brackets):",
             "",
             "| kind | " + " | ".join(str(t) for t in range(len(next(iter(record["kinds"].values()))
                                                                   ["support_loss"]["mean"])))
             + " |",
             "|---|" + "---|" * len(next(iter(record["kinds"].values()))["support_loss"]["mean"])]
    for kind, r in record["kinds"].items():
        sl = r["support_loss"]
        lines.append(f"| {kind} | "
                     + " | ".join(f"{m:.3g} ({md:.3g})" for m, md in zip(sl["mean"], sl["median"]))
                     + " |")
    lines += ["",
              "Accuracy (%, 95% CI over tasks) with best_step on and off; gain = paired on - off; "
              "earlier = tasks whose parameters came from an earlier step (steps used: step: "
              "tasks):", "",
              "support loss: mean at the last step -> at the step used with best_step on.", "",
              "| kind | steps | support loss | bn_mode | best_step off | best_step on | gain | "
              "earlier | steps used |",
              "|---|---|---|---|---|---|---|---|---|"]
    for kind, r in record["kinds"].items():
        for s, e in r["by_steps"].items():
            for mode in record["modes"]:
                m = e[mode]
                used = ", ".join(f"{k}: {v}" for k, v in m["steps_used"].items())
                loss = f"{e['support_loss_last']:.3g} -> {e['support_loss_used']:.3g}"
                lines.append(
                    f"| {kind} | {s} | {loss} | {mode} | {pct(m['best_off'])} | "
                    f"{pct(m['best_on'])} | "
                    f"{100 * m['paired_gain']['mean']:+.2f} ± "
                    f"{100 * m['paired_gain']['ci95']:.2f} | "
                    f"{m['tasks_on_earlier_step']}/{a['tasks']} | {used} |")
    lo, hi = str(min(record["steps"])), str(max(record["steps"]))
    if lo != hi:
        lines += ["", f"Error at {hi} steps / error at {lo} step(s):", ""]
        for kind, r in record["kinds"].items():
            for mode in record["modes"]:
                err = {(s, b): 1 - r["by_steps"][s][mode][b]["mean"] for s in (lo, hi)
                       for b in ("best_off", "best_on")}
                lines.append(
                    f"- {kind}, {mode}: best_step off "
                    f"{err[hi, 'best_off'] / err[lo, 'best_off']:.2f}x, "
                    f"on {err[hi, 'best_on'] / err[lo, 'best_on']:.2f}x")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--queries", type=int, default=1,
                    help="queries per class (the model's protocol: 1)")
    ap.add_argument("--steps", default="1,TEST",
                    help="comma-separated step counts; TEST = the manifest's test_steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-transductive", action="store_true", help="only the shipped bn_mode")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "best_step.json"))
    args = ap.parse_args()
    # the rises are measured, not warned
    warnings.filterwarnings("ignore", category=fewshot.AdaptationWarning)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    learner = fewshot.load_pretrained(MODEL)
    learner.eval()
    manifest = fewshot.pretrained.show(MODEL)
    test_steps = int(manifest["test_steps"])
    steps_list = sorted({test_steps if s == "TEST" else int(s) for s in args.steps.split(",")})
    modes = [learner.config.bn_mode] + ([] if args.no_transductive else ["transductive"])
    split = load_omniglot("test", data_root(None))
    batches, alphabets = task_batches(split, args.tasks, args.queries, args.seed)
    kinds = {}
    for kind, batch in batches.items():
        kinds[kind] = run_condition(learner, batch, steps_list, modes)
        print(f"{kind} done ({time.time() - t0:.0f} s)", file=sys.stderr)
    record = {"model": MODEL, "test_steps": test_steps, "inner_lr": learner.config.inner_lr,
              "train_inner_steps": learner.config.inner_steps, "bn_mode": learner.config.bn_mode,
              "modes": modes,
              "args": vars(args), "steps": steps_list, "alphabets": alphabets,
              "hardware": f"{platform.machine()}, torch {torch.__version__}, "
                          f"{torch.get_num_threads()} thread(s)",
              "kinds": kinds, "seconds": time.time() - t0}
    atomic_write_text(args.out, json.dumps(record, indent=1) + "\n")
    md = markdown(record)
    atomic_write_text(str(Path(args.out).with_suffix(".md")), md)
    print(md)


if __name__ == "__main__":
    sys.exit(main())
