"""Running a training run: build its objects from a config, the meta-training loop, checkpoints
(with every RNG state, for bit-identical resume) and the metrics log.

``from fewshot.training import train``; ``result = train(cfg, out="runs/sine")``.
Configs live in ``fewshot.config``; evaluation reports, publishing and plots in
``fewshot.reporting``.
"""
from .calibrate import calibrate_batchnorm, calibrated_run, make_per_step
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .loop import TrainResult, train

__all__ = ["TrainResult", "TrainingState", "calibrate_batchnorm", "calibrated_run",
           "load_checkpoint", "make_per_step",
           "save_checkpoint", "train"]
