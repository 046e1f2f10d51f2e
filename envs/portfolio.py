"""Portfolio-v0: N assets (stocks, spot coins or perpetuals) traded at once with shared equity.

Execution semantics
    The action is chosen on bar t's close and fills at bar t+1's open: every asset that trades
    is rebalanced to its target weight of the equity marked at that open, at the open moved
    against the trader by ``slippage_bps``, paying ``fee_bps`` of the notional
    (:func:`envs.core.costs.rebalance`: the target's notional plus its fee is ``weight *
    equity``). Then funding is paid (perpetuals), the margin is checked over bar t+1's range,
    and the book is marked at bar t+1's close, where the reward is computed; the next
    observation is bar t+1's. Orders for an asset with no bar at t+1 (a calendar gap) wait.
    After the fill, gross exposure ``sum(|qty * open|) / equity <= max_leverage``: where the
    plain rebalance would exceed it (costs, drifted positions), every asset is rebalanced with
    its target sized on an equity reduced so that the cap holds after slippage and fees (an
    asset without a bar at t+1 cannot be traded back under it).

Actions (``action_mode=``)
    * ``"discrete"`` (default): ``MultiDiscrete([3] * n_assets)``, per asset 0 = short, 1 = flat,
      2 = long, the target weight ``(action - 1) * w`` with ``w = max_leverage / n_assets``
      (``allow_short=False``: ``MultiDiscrete([2] * n_assets)``, 0 = flat, 1 = long). An asset
      trades only when the wanted side differs from the side held: a held position is left to
      drift (no fees for re-weighting it) unless the cap forces a rebalance.
    * ``"continuous"``: ``Box(-1, 1, (n_assets,))`` (``Box(0, 1)`` without shorts) target
      weights ``max_leverage * a / max(1, sum(|a|))``, so gross exposure <= max_leverage; an
      asset trades where its target differs from its weight by more than ``rebalance_band``.

Observation (Dict of float32)
    Per-asset windows from the one observation builder (:mod:`envs.core.observation`), one row
    per asset: ``daily_hloc``, ``weekly_hloc``, ``monthly_hloc``, ``index_hloc`` (if
    ``with_index``) ``[n_assets, window_bars, 4]``, ``daily_volume``, ``weekly_volume`` and, when
    the market carries funding, ``funding_bps`` ``[n_assets, window_bars, 1]``; ``positions``
    ``[n_assets, 2]``: signed weight ``qty * close / equity`` (clipped to ``+-10 *
    max_leverage``) and bars since the position was opened (or flipped); ``portfolio`` ``[3]``:
    cash / equity, gross exposure / equity and ``log(equity / initial_cash_usd)`` (clipped to
    ``+-clip_log_ratio``). Serve and the trader build the same floats from plain windows with
    :func:`envs.core.observation.build_portfolio_observation`.

Rewards (``reward=``): ``log_return`` (default; the episode sum is ``log(E_T / E_0)``),
    ``linear_return`` (``(E_t - E_{t-1}) / E_0``, sum ``(E_T - E_0) / E_0``),
    ``excess_log_return`` (over the index), ``differential_sharpe``.

Margin and funding (:mod:`envs.core.portfolio_engine`)
    Cross margin: where the equity at every asset's adverse extreme of the bar (mark OHLC if the
    market has it) falls to ``maintenance_margin_bps`` of the gross notional, every position is
    closed at those prices, cash is floored at 0 and the episode terminates (``info
    ["liquidated"]``). When the market carries ``funding_rate`` (perpetuals), each bar pays
    ``qty * mark_open * rate`` per asset after the fill: longs pay and shorts receive when
    the rate is positive.

Episodes
    All assets share one calendar (the union of their timestamps; a missing bar is a flat gap
    bar at the last close, zero volume). Each reset samples a start bar (seeded) and, when the
    universe (``symbols``, default the whole market) has more than ``n_assets`` assets, a seeded
    subset of ``n_assets`` assets that all have ``warmup_bars`` of history and data over the
    episode (kept in universe order); ``n_assets=None`` trades every symbol. ``episode_bars=None,
    random_start=False`` with ``symbols``/``start_ts_ns``/``end_ts_ns`` runs a fixed backtest;
    ``reset(options={"symbols": [...]})`` forces the asset set. Episodes truncate after
    ``episode_bars`` steps and terminate on liquidation.

Info (one value per env; ``[n_assets]`` arrays per asset)
    ``equity_usd``, ``cash_usd``, ``position_qty``, ``fill_price_usd`` (0 where nothing filled),
    ``fee_usd`` and ``funding_usd`` (this bar; funding > 0 paid), ``fees_paid_usd``,
    ``exposure_at_fill`` (gross / equity right after the fill, at the open), ``liquidated``,
    ``assets`` (indices into ``env.engine.universe``), ``bar_ts_ns``.

Inputs
    ``market`` (:class:`~envs.core.market.MarketArrays`, optional ``funding_rate`` and
    ``mark_ohlc``) and ``index`` (one series, aligned causally; flat if omitted). Without a
    market a seeded synthetic multi-asset one is generated (``synthetic``, ``market_seed``), so
    ``gym.make("raytrade/Portfolio-v0")`` works with no arguments.
"""

from __future__ import annotations

from functools import partial

from gymnasium import spaces as gym_spaces

from envs.core import from_bars
from envs.core.market import MarketArrays
from envs.core.observation import POSITION_KEYS
from envs.core.portfolio_config import ACTION_MODES as ACTION_MODES  # re-exported: the env's names
from envs.core.portfolio_config import REWARDS as REWARDS
from envs.core.portfolio_config import PortfolioConfig as PortfolioConfig
from envs.core.portfolio_engine import PortfolioEngine
from envs.core.portfolio_engine import action_mask as action_mask  # re-exported: the env's rule
from envs.core.render import check_render_mode
from envs.core.spec import (
    DEFAULT_MAX_BARS_HELD,
    EnvSpec,
    action_mask_fields,
    box,
    check_fields,
    config_from,
    space_shapes,
)
from envs.vector import EngineEnv, EngineVectorEnv, resolve_inputs

SHORT, FLAT, LONG = 0, 1, 2  # discrete actions with allow_short (without: 0 = flat, 1 = long)


def env_spec(config: PortfolioConfig | dict | None = None, observation_space: gym_spaces.Dict | None = None,
             env_id: str = "raytrade/Portfolio-v0") -> EnvSpec:
    """Portfolio's :class:`~envs.core.spec.EnvSpec`. The asset count, ``bars_held`` bound and the
    funding window come from ``observation_space``; without it from ``n_assets`` (or
    ``symbols``), the default bound and no funding. Clients describe per-asset ``qty`` and
    ``bars_held`` ``[T, n_assets]`` and the account's ``cash_usd`` ``[T]``."""
    cfg = config_from(PortfolioConfig, {}, config)
    shapes = space_shapes(observation_space)
    if observation_space is not None:
        positions = box(observation_space, "positions")
        n_assets, held = int(positions.shape[0]), int(positions.high[0, 1])
    elif cfg.n_assets is not None:
        n_assets, held = cfg.n_assets, DEFAULT_MAX_BARS_HELD
    elif cfg.symbols is not None:
        n_assets, held = len(cfg.symbols), DEFAULT_MAX_BARS_HELD
    else:
        raise ValueError(f"{env_id}: n_assets is None and symbols is None; pass the observation space")
    obs_spec = cfg.observation_spec(held, with_funding=shapes is not None and "funding_bps" in shapes)
    fields: dict[str, tuple[int, ...]] = {
        k: (n_assets, obs_spec.window_bars, 4 if "hloc" in k else 1)
        for k in obs_spec.fields() if k not in POSITION_KEYS}
    fields |= {"positions": (n_assets, 2), "portfolio": (3,)}
    n_choices = 3 if cfg.allow_short else 2
    discrete = cfg.action_mode == "discrete"
    fields |= action_mask_fields(cfg, shapes, (n_assets, n_choices) if discrete else None)
    check_fields(env_id, fields, shapes)
    labels = ("short", "flat", "long") if cfg.allow_short else ("flat", "long")
    return EnvSpec(
        env_id, "portfolio", cfg, obs_spec, fields, labels if discrete else None,
        position_keys=("qty", "bars_held"), size_key="qty", account_keys=("cash_usd",), n_assets=n_assets,
        build_observation=partial(from_bars.portfolio, obs_spec, max_leverage=float(cfg.max_leverage),
                                  default_initial_cash_usd=float(cfg.initial_cash_usd)),
        action_mask=partial(action_mask, n_choices=n_choices) if discrete else None)


class PortfolioEnv(EngineEnv):
    """Portfolio-v0 single face: a B = 1 view of the batched :class:`PortfolioEngine`."""

    env_spec = staticmethod(env_spec)

    def __init__(self, market: MarketArrays | None = None, index: MarketArrays | None = None,
                 config: PortfolioConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        check_render_mode("PortfolioEnv", render_mode)
        market, index, config = resolve_inputs(PortfolioConfig, market, index, config, overrides)
        super().__init__(PortfolioEngine(market, config, index=index, num_envs=1), render_mode)
        self.config = config

    def _observe_unbatched(self) -> tuple[dict, dict]:
        obs, info = self.engine.observe(), self.engine.info()
        return ({k: v[0] for k, v in obs.items()},
                {k: v[0].item() if v.ndim == 1 else v[0] for k, v in info.items()})


class PortfolioVectorEnv(EngineVectorEnv):
    """Portfolio-v0 as a native VectorEnv of ``num_envs`` portfolios (one numpy engine)."""

    def __init__(self, num_envs: int = 1, market: MarketArrays | None = None, index: MarketArrays | None = None,
                 config: PortfolioConfig | None = None, render_mode: str | None = None, **overrides) -> None:
        check_render_mode("PortfolioVectorEnv", render_mode)
        market, index, config = resolve_inputs(PortfolioConfig, market, index, config, overrides)
        super().__init__(PortfolioEngine(market, config, index=index, num_envs=num_envs), render_mode)
        self.config = config


PortfolioEnv.__doc__ = __doc__  # the env documents its semantics (gymnasium convention)
