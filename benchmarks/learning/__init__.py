"""The learning benchmark suite (issue 11): synthetic markets with a known oracle, several
classes of edge, trained and measured per class x form x algorithm x seed.

Run ``python benchmarks/learning/run_suite.py --help``. Modules: :mod:`.cells` (cells and
their experiments from ``tune_configs/learning/``, ``algos.yaml``, ``forms.yaml``),
:mod:`.heldout` (held-out evaluation against the oracle), :mod:`.aggregate` (time to 50 % /
70 % of the oracle; means and intervals over seeds), :mod:`.report` (table and files),
:mod:`.suite` (the loop, with injectable trainer/evaluator/tracker).
"""
