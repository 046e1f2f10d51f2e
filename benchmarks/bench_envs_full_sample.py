"""StockSwing-v0 on the REAL embedded sample (93 stocks, store-backed): issue 12's measurement.

    .venv/bin/python benchmarks/bench_envs_full_sample.py [--rounds 3] [--seconds 0.5] [--envs ...]

The envs built from the whole sample (as a training run builds them, through the store) with
observations gathered per step and with precomputed tables, single face and vector face (B=256),
interleaved, with gym-anytrading on the same data: ``bench_env_gather.py --datasets sample
--envs stock_swing`` (that benchmark covers every env and the large universe too; ``run_all.py``
runs it and skips this alias).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_env_gather import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[1:1] = ["--datasets", "sample", "--envs", "stock_swing"]  # later flags win
    main()
