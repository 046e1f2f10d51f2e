"""Run every benchmark in this folder (``make bench``); each prints its own table and ratios.

    .venv/bin/python benchmarks/run_all.py [--quick]

``--quick`` is passed to the benchmarks that take it (``bench_env_gather.py``: the large
universe sliced to its first stocks). Aliases of another benchmark are skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: scripts that only re-run part of another benchmark (kept for their command line)
ALIASES = {"bench_envs_full_sample.py"}  # = bench_env_gather.py --datasets sample --envs stock_swing
TAKES_QUICK = {"bench_env_gather.py"}


def main(argv: list[str] | None = None) -> int:
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        if script.name in ALIASES:
            continue
        print(f"\n=== {script.name} ===", flush=True)
        extra = ["--quick"] if quick and script.name in TAKES_QUICK else []
        if subprocess.call([sys.executable, str(script), *extra], cwd=HERE.parent) != 0:
            failed.append(script.name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
