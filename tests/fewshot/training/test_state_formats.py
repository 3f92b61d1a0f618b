"""Every shipped model and training state, and every long run's committed state, loads into the
learner the current code builds from its config: weights key for key and shape for shape, the
meta-optimizer's state slot for slot, the schedule. A code change that renames a parameter or
reorders the meta-parameters fails here, before a shipped model stops loading or a long run stops
resuming (distillation runs: their data, Adam, schedule and draws)."""
from __future__ import annotations

from pathlib import Path

import pytest
from safetensors.torch import load_file

import fewshot.pretrained as pt
from fewshot.config.distill import DistillConfig
from fewshot.config.manifest import META_INITIALIZATION
from fewshot.config.typed import from_dict
from fewshot.training import distill
from fewshot.training.build import build_learner_from_config, build_optimizer
from fewshot.training.checkpoint import TrainingState, load_checkpoint, restore_training_state
from fewshot.training.run_folder import config_of_checkpoint, load_run_config

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = [n for n in pt.list() if pt.show(n).get("kind", META_INITIALIZATION)
           == META_INITIALIZATION
           and (pt.locate(n).parent == ROOT / "pretrained")]
COMMITTED = sorted(p.parent for p in (ROOT / "scripts" / "long-runs").glob("*/last.pt"))
LONG_RUNS = [p for p in COMMITTED if (p / "config.yaml").is_file()]  # fewshot train runs
DISTILL_RUNS = [p for p in COMMITTED if p not in LONG_RUNS]  # fewshot distill runs


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_weights_fit_the_learner_built_from_the_manifest(name):
    weights = load_file(str(pt.locate(name) / pt.show(name)["weights"]))
    learner, _, _ = pt.load_with_config(name)  # strict: every key present and no other
    state = learner.state_dict()
    assert sorted(state) == sorted(weights)
    assert all(tuple(state[k].shape) == tuple(weights[k].shape) for k in weights)


@pytest.mark.parametrize("name", [n for n in SHIPPED if pt.show(n).get("training_state")])
def test_shipped_training_states_restore_into_the_current_code(name):
    folder = pt.locate(name)
    entry = pt.show(name)["training_state"]
    for which in ("last", "best"):
        _restore(folder / entry[which]["file"])


@pytest.mark.parametrize("run", LONG_RUNS, ids=[p.name for p in LONG_RUNS])
def test_a_long_runs_committed_state_restores_into_the_current_code(run):
    cfg = load_run_config(run)
    for which in ("last.pt", "best.pt"):
        ckpt = load_checkpoint(run / which)
        assert config_of_checkpoint(ckpt).to_dict() == cfg.to_dict()
        _restore(run / which)


@pytest.mark.parametrize("run", DISTILL_RUNS, ids=[p.name for p in DISTILL_RUNS])
def test_a_distillation_runs_committed_state_restores_into_the_current_code(run):
    ckpt = load_checkpoint(run / "last.pt", expect=distill.IDENTITY)
    state = distill.distillation_state(from_dict(DistillConfig, ckpt["config"]))
    assert restore_training_state(ckpt, state, rng=False) == ckpt["iteration"]
    assert len(state.optimizer.state) == len(ckpt["optimizer"]["state"])


def _restore(path: Path) -> None:
    ckpt = load_checkpoint(path)
    cfg = config_of_checkpoint(ckpt)
    learner = build_learner_from_config(cfg, "cpu")
    optimizer, scheduler = build_optimizer(learner, cfg)
    assert restore_training_state(ckpt, TrainingState(learner, optimizer, scheduler),
                                  rng=False) == ckpt["iteration"]
    assert len(optimizer.state) == len(ckpt["optimizer"]["state"])
