"""Run directories: where a run's config, splits, state, checkpoints and policy live.

Shared by training, tuning, evaluation, Serve and (soon) the trader and the UI; one
``runs_dir`` (:func:`default_runs_dir`) is honoured by every one of them.
"""

from app.config.schema import RUNS_DIR_ENV, default_runs_dir
from app.runs.run_dir import CHECKPOINTS, POLICY_SUBDIR, RunDir, RunState, resume_experiment

__all__ = ["CHECKPOINTS", "POLICY_SUBDIR", "RUNS_DIR_ENV", "RunDir", "RunState", "default_runs_dir",
           "resume_experiment"]
