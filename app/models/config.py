"""``model_config`` parsing for the raytrade RLModules.

RLlib hands every RLModule a plain ``model_config`` dict: the ``RLModuleSpec``'s own dict merged
over ``AlgorithmConfig.model_config`` (which always carries RLlib's auto-included keys such as
``vf_share_layers``, and every ``DefaultModelConfig`` field when a user passes that dataclass).
So parsing must

* accept and ignore RLlib's own ``DefaultModelConfig`` field names (they are not ours to judge),
* reject anything else it does not know with a ``ValueError`` naming the key (a typo such as
  ``embed_dimm`` must not silently train the default model),
* validate every value once, here, so the modules can trust a frozen :class:`ModelConfig`.

This module imports neither torch nor ray at import time, so a config layer can validate a
sweep without loading them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any

MODEL_NAMES: tuple[str, ...] = ("mlp", "gru", "attention")
ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "gelu", "silu", "elu")
ASSET_AXIS_MODES: tuple[str, ...] = ("batch", "features")
ATTN_POOLS: tuple[str, ...] = ("last", "mean")
# Bounds of the Gaussian head's log std (std in [0.0067, 7.4]): below, the policy is
# numerically deterministic and logp explodes; above, a [-1, 1] action is pure noise.
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass(frozen=True)
class ModelConfig:
    """Validated model settings (defaults are the values used when a key is absent).

    Shared by all models:
        embed_dim: width of each observation entry's embedding (and of the flat-entry group's).
        fusion_hiddens: hidden sizes of the fusion MLP over the concatenated embeddings; its last
            size is the embedding the heads (or the GRU) see. Empty: the concat itself.
        head_hiddens: hidden sizes of the separate policy and value head MLPs (empty: one Linear
            each). Separate layers let the value loss and the policy loss pull apart a little
            on top of the shared trunk.
        activation: one of :data:`ACTIVATIONS` for every hidden layer (transformer FFN too).
        dropout: dropout probability in hidden layers. Keep 0 for PPO: sampling runs in eval
            mode (no dropout) while the loss runs in train mode, which biases the ratio.
        layer_norm: LayerNorm over the concatenated entry embeddings before fusion; keeps the
            scale of the heads' inputs O(1) whatever the raw feature scales, which is what keeps
            the initial policy near-uniform.
        obs_norm: standardize every observation element by a running mean and std
            (:class:`~app.models.encoders.RunningNorm`), updated only in the learner's training
            passes and stored in the module's state, so backtests and Serve apply exactly the
            statistics the policy was trained with. Makes the newest bar's features (small log
            ratios) as visible as the window's older, larger ones.
        input_symlog: apply ``sign(x) * log1p(|x|)`` to every observation value first. Near
            identity for log-ratio features (|x| << 1), compresses counts such as ``bars_held``
            or volume ratios that would otherwise dominate a Linear layer.
        asset_axis: rank-3 entries ``(n_assets, window_bars, n_features)``: ``"batch"`` embeds
            every asset's window with SHARED weights and concatenates the per-asset embeddings
            (parameters independent of n_assets, asset identity kept by position);
            ``"features"`` folds assets into features, ``(window_bars, n_assets * n_features)``.
        share_encoder: the value head reads the policy's encoder (one forward pass, RLlib's
            default PPO layout with shared layers). ``False``: the value function has its own
            encoder (CleanRL's separate actor and critic), so a noisy return regression cannot
            drag the policy's features around; stateless models only (mlp, attention).
        bar_embed: ``"flatten"`` windows only: when > 0, every bar of a window first goes through
            ONE shared ``Linear(n_features, bar_embed) -> act`` (the same weights at every
            position: a pattern in a bar is recognised wherever it is in the window, e.g. an
            event bar k days into a hold), then flatten + Linear as usual. 0: off.
        sequence_keys: rank-1 entries to treat as a ``(window_bars, 1)`` window (e.g. a volume
            window of shape ``(w,)``) instead of a flat feature vector.
        pi_init_std: std of the final policy layer's weights; small so initial logits are ~0
            and the initial policy is near-uniform (entropy ~ its maximum).
        initial_log_std: initial (state-independent) log std of the Gaussian head (Box actions).

    GRU only:
        gru_hidden: GRU state size (the state is ``{"h": [gru_hidden]}``).
        max_seq_len: training sequence length in env steps; RLlib's connectors read it from the
            module's ``model_config`` to chunk and zero-pad episodes.

    Attention only (see :mod:`app.models.attention`):
        attn_dim: transformer width (token size); divisible by attn_heads.
        attn_heads: attention heads.
        attn_layers: transformer layers (shared by all windows of a row).
        attn_ff_dim: feed-forward width inside each transformer layer.
        attn_pool: ``"last"`` (each window's newest token; windows are oldest-first) or
            ``"mean"`` (the mean of the window's tokens).
        attn_patch_bars: bars per token: each window is cut into patches of this many bars
            (the oldest patch zero-padded when it does not divide), each projected to one token.
            Attention costs grow with tokens squared; 1 is one token per bar.
    """

    embed_dim: int = 64
    fusion_hiddens: tuple[int, ...] = (128, 128)
    head_hiddens: tuple[int, ...] = ()
    activation: str = "relu"
    dropout: float = 0.0
    layer_norm: bool = True
    input_symlog: bool = True
    obs_norm: bool = False
    asset_axis: str = "batch"
    sequence_keys: tuple[str, ...] = ()
    bar_embed: int = 0
    share_encoder: bool = True
    pi_init_std: float = 0.01
    initial_log_std: float = 0.0
    gru_hidden: int = 128
    max_seq_len: int = 20
    attn_dim: int = 32
    attn_heads: int = 2
    attn_layers: int = 2
    attn_ff_dim: int = 64
    attn_pool: str = "last"
    attn_patch_bars: int = 10
    # Which model these settings are for (not a model_config key).
    model_name: str = field(default="mlp", compare=False)

    def as_model_config(self) -> dict[str, Any]:
        """The keys that apply to ``model_name``, as plain JSON-friendly values (lists, not
        tuples), e.g. for an ``RLModuleSpec`` or an MLflow params dump."""
        out: dict[str, Any] = {}
        for key in sorted(MODEL_CONFIG_KEYS[self.model_name]):
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


_COMMON_KEYS = frozenset({
    "embed_dim", "fusion_hiddens", "head_hiddens", "activation", "dropout", "layer_norm",
    "input_symlog", "obs_norm", "asset_axis", "sequence_keys", "pi_init_std", "initial_log_std",
    "bar_embed", "share_encoder",
})
MODEL_CONFIG_KEYS: dict[str, frozenset[str]] = {
    "mlp": _COMMON_KEYS,
    "gru": _COMMON_KEYS | {"gru_hidden", "max_seq_len"},
    "attention": _COMMON_KEYS | {"attn_dim", "attn_heads", "attn_layers", "attn_ff_dim", "attn_pool",
                                   "attn_patch_bars"},
}


def default_model_config(name: str) -> dict[str, Any]:
    """All keys of model ``name`` with their defaults."""
    return parse_model_config(name, {}).as_model_config()


def _rllib_keys() -> frozenset[str]:
    """Field names of RLlib's ``DefaultModelConfig`` (RLlib merges them into model_config)."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return frozenset(f.name for f in dataclasses.fields(DefaultModelConfig))


def _fail(key: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"model_config[{key!r}]: expected {expected}, got {value!r}")


def _int(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise _fail(key, f"an int >= {minimum}", value)
    return int(value)


def _float(key: str, value: Any, low: float, high: float, *, high_open: bool = False) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))
    if ok:
        ok = low <= float(value) < high if high_open else low <= float(value) <= high
    if not ok:
        bracket = ")" if high_open else "]"
        raise _fail(key, f"a finite float in [{low}, {high}{bracket}", value)
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, "a bool", value)
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(key, f"one of {list(choices)}", value)
    return str(value)


def _int_tuple(key: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _fail(key, "a list of ints >= 1", value)
    if any(isinstance(v, bool) or not isinstance(v, Integral) or v < 1 for v in value):
        raise _fail(key, "a list of ints >= 1", value)
    return tuple(int(v) for v in value)


def _str_tuple(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise _fail(key, "a list of observation keys", value)
    if not all(isinstance(v, str) for v in value):
        raise _fail(key, "a list of observation keys", value)
    return tuple(value)


def parse_model_config(name: str, raw: Mapping[str, Any] | Any | None) -> ModelConfig:
    """Validate ``raw`` for model ``name`` and fill in defaults.

    Raises:
        ValueError: unknown model name, or a key that is neither ours (for this model) nor an
            RLlib ``DefaultModelConfig`` field, or a bad value; the message names the key.
    """
    if name not in MODEL_CONFIG_KEYS:
        raise ValueError(f"unknown model {name!r}; expected one of {list(MODEL_NAMES)}")
    if raw is None:
        raw = {}
    elif dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        raw = dataclasses.asdict(raw)
    if not isinstance(raw, Mapping):
        raise ValueError(f"model_config: expected a dict, got {type(raw).__name__}")

    ours = MODEL_CONFIG_KEYS[name]
    unknown = [k for k in raw if k not in ours]
    if unknown:
        rllib_keys = _rllib_keys()
        for key in unknown:
            if key in rllib_keys:
                continue  # RLlib's generic keys (e.g. vf_share_layers) do not apply to us
            other = [m for m, keys in MODEL_CONFIG_KEYS.items() if key in keys]
            hint = f" (it belongs to model {other[0]!r})" if other else ""
            raise ValueError(
                f"model_config[{key!r}]: unknown key for model {name!r}{hint}; "
                f"known keys: {sorted(ours)}"
            )

    d = ModelConfig()
    g = {k: raw[k] for k in ours if k in raw}
    cfg = ModelConfig(
        embed_dim=_int("embed_dim", g.get("embed_dim", d.embed_dim), 1),
        fusion_hiddens=_int_tuple("fusion_hiddens", g.get("fusion_hiddens", d.fusion_hiddens)),
        head_hiddens=_int_tuple("head_hiddens", g.get("head_hiddens", d.head_hiddens)),
        activation=_choice("activation", g.get("activation", d.activation), ACTIVATIONS),
        dropout=_float("dropout", g.get("dropout", d.dropout), 0.0, 1.0, high_open=True),
        layer_norm=_bool("layer_norm", g.get("layer_norm", d.layer_norm)),
        input_symlog=_bool("input_symlog", g.get("input_symlog", d.input_symlog)),
        obs_norm=_bool("obs_norm", g.get("obs_norm", d.obs_norm)),
        asset_axis=_choice("asset_axis", g.get("asset_axis", d.asset_axis), ASSET_AXIS_MODES),
        sequence_keys=_str_tuple("sequence_keys", g.get("sequence_keys", d.sequence_keys)),
        bar_embed=_int("bar_embed", g.get("bar_embed", d.bar_embed), 0),
        share_encoder=_bool("share_encoder", g.get("share_encoder", d.share_encoder)),
        pi_init_std=_float("pi_init_std", g.get("pi_init_std", d.pi_init_std), 0.0, 10.0),
        initial_log_std=_float(
            "initial_log_std", g.get("initial_log_std", d.initial_log_std), LOG_STD_MIN, LOG_STD_MAX
        ),
        gru_hidden=_int("gru_hidden", g.get("gru_hidden", d.gru_hidden), 1),
        max_seq_len=_int("max_seq_len", g.get("max_seq_len", d.max_seq_len), 1),
        attn_dim=_int("attn_dim", g.get("attn_dim", d.attn_dim), 1),
        attn_heads=_int("attn_heads", g.get("attn_heads", d.attn_heads), 1),
        attn_layers=_int("attn_layers", g.get("attn_layers", d.attn_layers), 1),
        attn_ff_dim=_int("attn_ff_dim", g.get("attn_ff_dim", d.attn_ff_dim), 1),
        attn_pool=_choice("attn_pool", g.get("attn_pool", d.attn_pool), ATTN_POOLS),
        attn_patch_bars=_int("attn_patch_bars", g.get("attn_patch_bars", d.attn_patch_bars), 1),
        model_name=name,
    )
    if name == "gru" and not cfg.share_encoder:
        raise ValueError("model_config['share_encoder']: the GRU's value head reads the recurrent "
                         "core's output; a separate encoder (share_encoder: false) is for mlp/attention")
    if name == "attention" and cfg.attn_dim % cfg.attn_heads:
        raise ValueError(
            f"model_config['attn_heads']: attn_dim={cfg.attn_dim} must be divisible by "
            f"attn_heads={cfg.attn_heads}"
        )
    return cfg
