"""Ray's deprecation chatter is filtered before Ray starts (driver and worker processes)."""

from __future__ import annotations

import logging
import warnings

from app.training import quiet


def test_quiet_ray_filters_deprecations_here_and_in_workers(monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    levels = {name: logging.getLogger(name).level for name in quiet.NOISY_LOGGERS}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            quiet.quiet_ray()
            warnings.warn("old API", DeprecationWarning, stacklevel=1)
        assert caught == []
        assert "ignore::DeprecationWarning" in __import__("os").environ["PYTHONWARNINGS"]
        from ray._common.deprecation import deprecation_warning

        logger = logging.getLogger("ray._common.deprecation")
        assert not logger.isEnabledFor(logging.WARNING)
        deprecation_warning(old="x", new="y", error=False)  # would print a WARNING line
        assert quiet.ray_logging_level() == logging.WARNING
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_verbose_keeps_everything(monkeypatch):
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    assert quiet.ray_logging_level() == logging.INFO
