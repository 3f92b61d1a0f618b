"""Reporting on trained learners: the fixed-episode test report, publishing a run as a pretrained
model (with the results table), and learning-curve plots.

``from fewshot.reporting import report_on_fixed_episodes``;
``report = report_on_fixed_episodes(learner, cfg, EpisodeProtocol(episodes=600))`` ->
``report["mean"], report["ci95"]``.
"""
from .folder import report_on_folder
from .publish import publish, results_table
from .report import EpisodeProtocol, Execution, report_on_fixed_episodes

__all__ = ["EpisodeProtocol", "Execution", "publish", "report_on_fixed_episodes",
           "report_on_folder", "results_table"]
