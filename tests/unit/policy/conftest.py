"""The Serve fixtures (a small synthetic market, random-weight MLP and GRU policies) are the
policy layer's fixtures too."""

from tests.unit.serve.conftest import env_config, gru, mlp, synth  # noqa: F401
