"""Keep Ray's own chatter (deprecation warnings, INFO banners) out of raytrade's output.

Called by ``raytrade train`` / ``tune`` before Ray starts: Python warning filters and logger
levels for this process, ``PYTHONWARNINGS`` for the worker processes Ray spawns. Errors and
warnings about our own runs still show; ``RAYTRADE_RAY_VERBOSE=1`` turns this off.
"""

from __future__ import annotations

import logging
import os
import warnings

VERBOSE_ENV = "RAYTRADE_RAY_VERBOSE"
#: loggers whose WARNINGs are deprecation notices or advice not meant for raytrade's users
#: ("You are running PPO on the new API stack!", "Install gputil for GPU system monitoring")
NOISY_LOGGERS = ("ray._common.deprecation", "ray.rllib.utils.deprecation",
                 "ray.rllib.algorithms.algorithm_config", "ray.tune.utils.util")
#: INFO chatter: database set-up lines
INFO_LOGGERS = ("mlflow.store.db.utils", "alembic.runtime.migration")
#: ``ray.init(logging_level=...)``: Ray's own INFO lines ("Started a local Ray instance") are dropped
RAY_LOGGING_LEVEL = logging.WARNING
WORKER_WARNINGS = "ignore::DeprecationWarning,ignore::FutureWarning"


def quiet_ray() -> None:
    """Filter deprecation warnings here and in Ray's workers (idempotent)."""
    if os.environ.get(VERBOSE_ENV):
        return
    os.environ.setdefault("PYTHONWARNINGS", WORKER_WARNINGS)
    for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in INFO_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def ray_logging_level() -> int:
    """The ``logging_level`` for ``ray.init`` (INFO when ``RAYTRADE_RAY_VERBOSE`` is set)."""
    return logging.INFO if os.environ.get(VERBOSE_ENV) else RAY_LOGGING_LEVEL
