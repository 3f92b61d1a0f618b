"""The run lock and the cleanup of killed writes; they live in :mod:`fewshot.training.run_folder` (re-exported)."""
from .run_folder import LOCK_FILE, RUN_FILES, TEMP_PATTERN, RunLock, remove_run_temps

__all__ = ["LOCK_FILE", "RUN_FILES", "TEMP_PATTERN", "RunLock", "remove_run_temps"]
