"""The one atomic-write helper: a file is either its old content or its new content, never half.

Every writer in raytrade (Parquet store, splits, run state, backtest records, reports, study
tables) goes through :func:`atomic_write`: the content is written to a hidden temp file in the
same directory (``.tmp-<name>-<random>``), flushed and fsync'ed, moved over the target with
``os.replace`` and the directory entry fsync'ed. On any error the temp file is removed and the
error re-raised, so nothing half-written is ever left behind under the target's name. Readers
that list directories (the store's catalog) skip hidden names, so even a temp file left by a
``kill -9`` between write and rename is never mistaken for data.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

TMP_PREFIX = ".tmp-"


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` to produce the content, then move it over ``path`` atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{target.name}-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def is_temp(path: str | os.PathLike[str]) -> bool:
    """True for names this module (or an older writer) uses for in-flight files."""
    name = Path(path).name
    return name.startswith((TMP_PREFIX, ".latest-", ".")) or name.endswith(".tmp")


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Persist a directory's entries (a rename is durable only once its directory is synced)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    if path.is_dir():
        return
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
