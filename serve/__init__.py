"""Serving a trained policy over HTTP: Ray Serve + FastAPI (``/v1/act``, ``/v1/models``, ``/v1/health``).

Layout: :mod:`serve.schemas` (request/response models), :mod:`app.policy.loader` and
:mod:`app.tracking.registry` (what to serve: runs, checkpoints, MLflow registered models),
:mod:`serve.observations` (the envs' one observation builder), :mod:`serve.policy_service`
(a plain class: prepare, run batched, sessions), :mod:`serve.api` (FastAPI app: API key, limits,
errors), :mod:`serve.deployment` (Ray Serve), :mod:`serve.app` (``serve run serve.app:build_app``).

Importing this package imports nothing heavy; ``serve`` never imports training, tuning or data
ingestion code (import-linter contract in pyproject.toml).
"""
