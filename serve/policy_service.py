"""The policy service: a plain class (no Ray) that loads a policy and answers ``/v1/act``.

1. :meth:`PolicyService.prepare` checks a validated :class:`~serve.schemas.ActRequest` against
   the model (bars, index, positions) and builds its observations with the env's spec
   (:mod:`serve.observations`: the envs' one builder; Serve never switches on env ids).
2. :meth:`PolicyService.run` answers a LIST of prepared requests with batched forward passes
   (what ``@serve.batch`` hands over), through :class:`app.policy.batched.BatchedPolicy`:
   the rule backtests use (greedy = the distribution's mode, softmax probabilities, the value
   head), recurrent state carried per session (:class:`~serve.sessions.SessionStore`) or
   replayed from the initial state over a window.

Requests that share a session key in one batch run in successive waves, in arrival order, so
a session's steps never race. ``act`` = ``run([prepare(request)])``.

Bounded work: a request may ask for at most ``max_request_bars`` bars (every series, the index
included) and ``max_request_steps`` policy steps (symbols x replayed bars); past either it is a
:class:`~serve.errors.WorkBudgetError` (413 naming the limit) before any observation is built.
Client data never produces a 5xx: an observation or a model output that is not finite (e.g.
volumes near the float range) is a 422 naming the symbol, and is logged.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from app.policy.batched import BatchedPolicy
from app.policy.loader import PolicySource, load_module, resolve
from envs.synthetic import business_days_ts_ns, hourly_ts_ns
from serve import observations as ob
from serve.errors import RequestError, RequestTimeoutError, ServeError, WorkBudgetError
from serve.positions import position_arrays, step_positions
from serve.schemas import ActRequest, ActResponse, Decision, ModelInfo
from serve.sessions import SessionStore

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class ServiceSettings:
    session_ttl_s: float = 172_800.0
    max_sessions: int = 100_000
    torch_threads: int = 1
    max_request_bars: int = 65_536     # every series of a request, the index included
    max_request_steps: int = 4_096     # policy steps: symbols x replayed bars


@dataclass
class PreparedDecision:
    symbols: list[str]
    ts_ns: int
    obs: dict[str, np.ndarray]      # [T, ...]: the last T bars (T > 1: a replay)
    session_key: str | None
    full_history: bool
    label: str = ""                 # where it came from, for error messages ("symbols[0] (AAPL)")


@dataclass
class PreparedRequest:
    decisions: list[PreparedDecision]
    session: bool
    client: str = "default"         # the API key's name: sessions are partitioned by it
    reset: bool = False             # reset_session: start the sessions from the initial state
    deadline: float | None = None   # time.monotonic() past which nobody waits for the answer


class PolicyService:
    """Loads a policy once; prepares and answers act requests (see the module docstring)."""

    def __init__(self, source: PolicySource, module: Any, settings: ServiceSettings | None = None) -> None:
        import torch

        self.settings = settings or ServiceSettings()
        torch.set_num_threads(max(1, int(self.settings.torch_threads)))
        self.source, self.module = source, module
        try:
            self.view = ob.env_view(source.env_id, source.env_config, module.observation_space)
        except ValueError as exc:
            raise ServeError(f"{source.ref}: {exc}") from exc
        self._torch = torch
        self.policy = BatchedPolicy(module, module.action_space, 1, greedy=True, with_values=True)
        self.recurrent = self.policy.stateful
        self.max_seq_len = int(getattr(module, "model_config", {}).get("max_seq_len", 1) or 1)
        self.sessions = SessionStore(self.settings.session_ttl_s, self.settings.max_sessions)
        self.model_version = source.model_version
        self._health_obs = self._health_observation()
        self.last_ok = time.monotonic()  # the last forward pass that succeeded (health, or a batch)

    @classmethod
    def load(cls, ref: str, settings: ServiceSettings | None = None, **resolve_kwargs: Any) -> PolicyService:
        """Resolve ``ref`` (:func:`app.policy.loader.resolve`) and load its RLModule."""
        source = resolve(ref, **resolve_kwargs)
        return cls(source, load_module(source.policy_dir), settings)

    # --- preparing --------------------------------------------------------------------------------

    def prepare(self, req: ActRequest, header_session_id: str | None = None, client: str = "default"
                ) -> PreparedRequest:
        """Observations of ``req`` (RequestError, HTTP 422, for what the model cannot take;
        WorkBudgetError, 413, for more work than one request may ask for)."""
        view = self.view
        session_id = req.session_id
        if header_session_id and session_id and header_session_id != session_id:
            raise RequestError("session_id: differs from the x-session-id header", ("body", "session_id"))
        session_id = session_id or header_session_id or None
        use_session = self.recurrent and session_id is not None
        self._unused_fields(req)
        self._check_budget(req, use_session)
        index = self._index(req)
        if view.multi_asset:
            return PreparedRequest([self._prepare_portfolio(req, index, session_id if use_session else None)],
                                   use_session, client, req.reset_session)
        out = []
        for i, item in enumerate(req.symbols):
            loc = ("body", "symbols", i)
            ts, ohlcv, funding = item.bars.arrays()
            series = ob.Bars(ts, ohlcv, funding)
            self._check_index_fresh(index, ts, loc)
            steps = self._steps(req, len(ts), use_session, loc)
            positions = step_positions(view, item.position, item.position_history, steps, loc)
            full = self._history(series, index, steps, req.require_full_history, loc)
            try:
                obs = view.build_observation(series, position_arrays(view, positions), index)
            except ValueError as exc:
                raise RequestError(str(exc), loc) from exc
            label = f"symbols[{i}] ({item.symbol})"
            _check_finite(obs, label, loc)
            key = f"{session_id}|{item.symbol}" if use_session else None
            out.append(PreparedDecision([item.symbol], int(ts[-1]), obs, key, full, label))
        return PreparedRequest(out, use_session, client, req.reset_session)

    def _unused_fields(self, req: ActRequest) -> None:
        """422 for fields this model does not use (silently ignoring them hides client bugs)."""
        view = self.view
        if not self.recurrent and req.replay_bars is not None:
            raise RequestError("replay_bars: this model is not recurrent (it takes no replay)", ("body", "replay_bars"))
        if not view.multi_asset:
            for key in ("cash_usd", "initial_cash_usd"):
                if getattr(req, key) is not None:
                    raise RequestError(f"{key}: only portfolio models take it (this one is {view.kind})", ("body", key))
        if not view.observation.with_funding:
            for i, item in enumerate(req.symbols):
                if item.bars.funding_rate is not None:
                    raise RequestError("funding_rate: this model does not observe funding",
                                       ("body", "symbols", i, "bars", "funding_rate"))

    def _check_budget(self, req: ActRequest, use_session: bool) -> None:
        """The work budget (module docstring), from sizes alone: before any observation is built."""
        s = self.settings
        bars = sum(item.bars.n_bars for item in req.symbols) + (req.index.n_bars if req.index is not None else 0)
        if bars > s.max_request_bars:
            raise WorkBudgetError(f"work budget: {bars} bars in this request (symbols and index), the limit is "
                                  f"{s.max_request_bars} per request; send fewer symbols or bars", ("body", "symbols"))
        w = self.view.min_history_bars
        steps = 0
        for item in req.symbols:
            n = item.bars.n_bars
            if not self.recurrent or n < w or (use_session and req.replay_bars is None):
                steps += 1
            else:
                steps += req.replay_bars if req.replay_bars is not None else min(self.max_seq_len, n - w + 1)
        if steps > s.max_request_steps:
            raise WorkBudgetError(
                f"work budget: {len(req.symbols)} symbols x replayed bars = {steps} policy steps, the limit is "
                f"{s.max_request_steps} per request; send fewer symbols or a shorter replay_bars", ("body", "replay_bars"))

    def _check_index_fresh(self, index: ob.Bars | None, ts: np.ndarray, loc: tuple) -> None:
        """The index must reach the decision bar (a few index bars of slack for holidays)."""
        if index is None or len(index.ts_ns) < 2:
            return
        step = int(np.median(np.diff(index.ts_ns)))
        last, decision = int(index.ts_ns[-1]), int(ts[-1])
        if last < decision - STALE_INDEX_BARS * step:
            behind = int(np.searchsorted(ts, last, side="right"))
            raise RequestError(f"index: its last bar ({last}) is {len(ts) - behind} bars before the decision bar "
                               f"({decision}) of symbols[{loc[-1]}]; send the index up to the decision bar",
                               ("body", "index", "ts_ns"))

    def _prepare_portfolio(self, req: ActRequest, index: ob.Bars | None, session_id: str | None
                           ) -> PreparedDecision:
        """One decision over the model's ``n_assets`` assets (a multi-asset env)."""
        view = self.view
        if len(req.symbols) != view.n_assets:
            raise RequestError(f"symbols: this {view.kind} model trades {view.n_assets} assets, got "
                               f"{len(req.symbols)}", ("body", "symbols"))
        for key in view.account_keys:
            if getattr(req, key, None) is None:
                raise RequestError(f"{key}: required by {view.kind} models", ("body", key))
        series = [ob.Bars(*item.bars.arrays()) for item in req.symbols]
        steps = self._steps(req, min(len(s.ts_ns) for s in series), session_id is not None, ("body", "symbols"))
        tails = {tuple(s.ts_ns[-steps:]) for s in series}
        if len(tails) != 1:
            raise RequestError(f"symbols: every asset's bars must end on the same {steps} timestamp(s)",
                               ("body", "symbols"))
        per_asset, full = [], True
        for i, (item, s) in enumerate(zip(req.symbols, series, strict=True)):
            loc = ("body", "symbols", i)
            per_asset.append(position_arrays(view, step_positions(view, item.position, item.position_history,
                                                                  steps, loc)))
            full &= self._history(s, index, steps, req.require_full_history, loc)
        position = {k: np.stack([a[k] for a in per_asset], axis=1) for k in view.position_keys}  # [T, A]
        position |= {k: np.full(steps, float(getattr(req, k))) for k in view.account_keys}
        last_value = float(position[view.size_key][-1] @ np.array([s.ohlcv[-1, 3] for s in series]))
        if float(req.cash_usd) + last_value <= 0:
            raise RequestError("cash_usd: the portfolio's equity (cash + positions at the last close) is <= 0",
                               ("body", "cash_usd"))
        for s in series:
            self._check_index_fresh(index, s.ts_ns, ("body", "symbols", 0))
        try:
            obs = view.build_observation(series, position, index, req.initial_cash_usd)
        except ValueError as exc:
            raise RequestError(str(exc), ("body", "symbols")) from exc
        _check_finite(obs, "the portfolio", ("body", "symbols"))
        return PreparedDecision([s.symbol for s in req.symbols], int(series[0].ts_ns[-1]), obs, session_id, full,
                                "the portfolio")

    def _index(self, req: ActRequest) -> ob.Bars | None:
        if not self.view.observation.with_index:
            return None
        required, symbol = self.source.index_required, self.source.index_symbol
        if req.index is None and required:
            raise RequestError(f"index: this model was trained with a market index{f' ({symbol})' if symbol else ''}"
                               "; send its bars", ("body", "index"))
        if req.index is not None and required is False:
            raise RequestError("index: this model was trained without one (a flat index); omit it",
                               ("body", "index"))
        return None if req.index is None else ob.Bars(*req.index.arrays())

    def _steps(self, req: ActRequest, n_bars: int, use_session: bool, loc: tuple) -> int:
        """Bars the policy runs over: 1, or a recurrent replay's length."""
        w = self.view.min_history_bars
        if n_bars < w:
            raise RequestError(f"bars: {n_bars} given, the model's observation window needs {w} (about "
                               f"{self.view.full_history_bars()} for exact parity with the env's longer history)",
                               (*loc, "bars"))
        if not self.recurrent or (use_session and req.replay_bars is None):
            return 1
        if req.replay_bars is not None:
            if n_bars < w + req.replay_bars - 1:
                raise RequestError(f"bars: a replay of {req.replay_bars} bars needs {w + req.replay_bars - 1} "
                                   f"bars (a full {w}-bar window at each), got {n_bars}", (*loc, "bars"))
            return req.replay_bars
        return min(self.max_seq_len, n_bars - w + 1)

    def _history(self, s: ob.Bars, index: ob.Bars | None, steps: int, required: bool, loc: tuple) -> bool:
        gap = self.view.history_gap(s, index, steps)
        if gap is not None and required:
            raise RequestError(f"require_full_history: {gap}", (*loc, "bars"))
        return gap is None

    # --- running ------------------------------------------------------------------------------------

    def act(self, req: ActRequest, header_session_id: str | None = None) -> ActResponse:
        out = self.run([self.prepare(req, header_session_id)])[0]
        if isinstance(out, Exception):
            raise out
        return out

    def run(self, prepared: list[PreparedRequest]) -> list[ActResponse | ServeError]:
        """Answer prepared requests together (one forward per wave and replay length)."""
        answers: list[Any] = [None] * len(prepared)
        decisions: list[list[Decision | None]] = [[None] * len(p.decisions) for p in prepared]
        now = time.monotonic()
        for r, p in enumerate(prepared):  # the client already got its 504: spend nothing on it
            if p.deadline is not None and now > p.deadline:
                answers[r] = RequestTimeoutError("request timed out (before it ran)")
        for wave in _waves(prepared):
            tickets: dict[tuple[int, int], Any] = {}
            for r in wave:
                if answers[r] is not None:
                    continue
                try:
                    for d, dec in enumerate(prepared[r].decisions):
                        if dec.session_key is not None:
                            tickets[(r, d)] = self.sessions.begin(dec.session_key, dec.ts_ns, prepared[r].client,
                                                                  prepared[r].reset)
                except RequestError as exc:
                    answers[r] = exc
            groups: dict[int, list[tuple[int, int]]] = defaultdict(list)
            for r in wave:
                if answers[r] is None:
                    for d, dec in enumerate(prepared[r].decisions):
                        t = tickets.get((r, d))
                        resume = t is not None and t.exists and not (t.retry and t.state_in is None)
                        groups[1 if resume else len(next(iter(dec.obs.values())))].append((r, d))
            for steps, items in sorted(groups.items()):
                try:
                    self._run_group(prepared, items, steps, tickets, decisions)
                except RequestError:  # a row's outputs are not finite: rerun row by row to blame it alone
                    for item in items:
                        try:
                            self._run_group(prepared, [item], steps, tickets, decisions)
                        except ServeError as exc:
                            answers[item[0]] = exc
                except ServeError as exc:
                    for r, _ in items:
                        answers[r] = exc
        for r in range(len(prepared)):
            if answers[r] is None:
                answers[r] = ActResponse(model_version=self.model_version, env_id=self.view.env_id,
                                         decisions=decisions[r])
        return answers

    def _run_group(self, prepared, items, steps, tickets, decisions) -> None:
        decs = [prepared[r].decisions[d] for r, d in items]
        obs = {k: np.stack([dec.obs[k][-steps:] for dec in decs]) for k in decs[0].obs}
        if steps == 1:
            obs = {k: v[:, 0] for k, v in obs.items()}
        states = [tickets[i].state_in if i in tickets else None for i in items]
        step, new_states = self._forward(obs, states if steps == 1 else [None] * len(items))
        made = [self._decision(step, b, dec, steps, tickets.get(i))
                for b, (i, dec) in enumerate(zip(items, decs, strict=True))]
        for b, ((r, d), dec) in enumerate(zip(items, decs, strict=True)):  # all rows finite: commit
            ticket = tickets.get((r, d))
            if ticket is not None:
                self.sessions.commit(ticket, dec.ts_ns, new_states[b])
            decisions[r][d] = made[b]
        self.last_ok = time.monotonic()

    def _forward(self, obs: dict[str, np.ndarray], states: list[dict | None]) -> tuple[Any, list[dict]]:
        """One batched policy step (obs ``[B, ...]`` or ``[B, T, ...]``) from per-row states."""
        policy = self.policy
        step, state_out = policy.step(obs, policy.stack_states(states))
        return step, policy.split_state(state_out, len(states))

    def _decision(self, step: Any, b: int, dec: PreparedDecision, steps: int, ticket: Any) -> Decision:
        """Row ``b`` of a policy step (its last time step for a replay) as a Decision."""
        mode = "session" if ticket is not None else ("replay" if self.recurrent else "stateless")
        space, labels = self.module.action_space, self.view.action_labels
        last = (lambda a: a[-1]) if steps > 1 else (lambda a: a)
        action = last(np.asarray(step.actions[b]))
        logits = last(np.asarray(step.dist_inputs[b], dtype=np.float64))
        value = None if step.values is None else float(last(np.asarray(step.values[b])))
        probs: Any = None
        label: Any = None
        if isinstance(space, gym.spaces.Discrete):
            act: Any = int(action)
            probs = last(np.asarray(step.action_probs[b])).tolist()  # the policy layer's softmax
            label = labels[act] if labels else None
        elif isinstance(space, gym.spaces.MultiDiscrete):
            act = [int(a) for a in action]
            probs = [last(np.asarray(c[b])).tolist() for c in step.distribution.components]
            label = [labels[a] for a in act] if labels else None
        else:
            act = [float(a) for a in np.atleast_1d(action)]
        if not (np.isfinite(logits).all() and (value is None or math.isfinite(value))):
            log.warning("non-finite policy outputs for %s at ts_ns=%d", dec.label or dec.symbols, dec.ts_ns)
            raise RequestError(f"{dec.label or dec.symbols}: the policy's outputs are not finite for these bars "
                               "(magnitudes beyond what the model was trained on?)", ("body", "symbols"))
        return Decision(symbols=dec.symbols, ts_ns=dec.ts_ns, action=act, action_label=label, action_probs=probs,
                        value=value, mode=mode, replayed_bars=steps, session_step=ticket.step if ticket else None,
                        full_history=dec.full_history,
                        state_reset=None if ticket is None else ticket.state_in is None and ticket.step == 1)

    # --- health and info -------------------------------------------------------------------------------

    def _calm_series(self, n: int) -> ob.Bars:
        view = self.view
        ts = hourly_ts_ns(n) if view.observation.bar_name == "hourly" else business_days_ts_ns(n)
        close = 100.0 * np.exp(0.001 * np.sin(np.arange(n)))
        ohlcv = np.column_stack([close, close * 1.001, close * 0.999, close, np.full(n, 1e3)])
        return ob.Bars(ts, ohlcv, np.zeros(n) if view.observation.with_funding else None)

    def example_request(self) -> dict[str, Any]:
        """A valid ``/v1/act`` body for this model (the OpenAPI example): flat positions on a calm
        synthetic series just long enough for the observation window."""
        view = self.view
        s = self._calm_series(view.min_history_bars + 1)

        def bars(with_volume: bool = True) -> dict[str, Any]:
            out: dict[str, Any] = {"ts_ns": [int(t) for t in s.ts_ns]}
            out |= {k: [round(float(v), 4) for v in s.ohlcv[:, i]] for i, k in enumerate(("open", "high", "low", "close"))}
            if with_volume:
                out["volume"] = s.ohlcv[:, 4].tolist()
            if s.funding_rate is not None and with_volume:
                out["funding_rate"] = s.funding_rate.tolist()
            return out

        flat = {view.size_key: False if view.size_key == "owned" else 0.0, "bars_held": 0}
        n = int(view.n_assets or 1) if view.multi_asset else 1
        body: dict[str, Any] = {"symbols": [{"symbol": f"SYM{i}", "bars": bars(), "position": flat} for i in range(n)]}
        if view.observation.with_index and self.source.index_required is not False:
            body["index"] = bars(with_volume=False)
        if view.multi_asset:
            body["cash_usd"] = 10_000.0
        if self.recurrent:
            body["session_id"] = "desk-1"
        return body

    def _health_observation(self) -> dict[str, np.ndarray]:
        """A flat position on a calm synthetic series, through the builder (checked at load)."""
        view = self.view
        s = self._calm_series(view.min_history_bars + 2)
        obs = view.build_observation([s] * view.n_assets if view.multi_asset else s, view.flat_position(), s)
        fields = {k: tuple(v.shape[1:]) for k, v in obs.items()}
        if fields != view.fields:
            raise ServeError(f"the builder's observation {fields} does not match the module's {view.fields}")
        return obs

    def health_check(self) -> float:
        """Run one forward pass; returns its milliseconds, raises ServeError if the model cannot run."""
        t0 = time.perf_counter()
        try:
            step, _ = self._forward({k: v for k, v in self._health_obs.items()}, [None])
        except Exception as exc:  # noqa: BLE001 - whatever breaks the forward pass
            raise ServeError(f"forward pass failed: {exc}") from exc
        if not np.isfinite(np.asarray(step.dist_inputs, dtype=np.float64)).all():
            raise ServeError("forward pass produced non-finite outputs")
        self.last_ok = time.monotonic()
        return (time.perf_counter() - t0) * 1e3

    def healthy_within(self, max_age_s: float) -> bool:
        """A forward pass succeeded in the last ``max_age_s`` (health answers at once under load)."""
        return time.monotonic() - self.last_ok <= max_age_s

    def info(self) -> ModelInfo:
        view, src = self.view, self.source
        spec = view.observation
        return ModelInfo(
            model_version=self.model_version, model_class=type(self.module).__name__,
            model_settings=dict(getattr(self.module, "model_config", {}) or {}), recurrent=self.recurrent,
            env_id=view.env_id, env_kind=view.kind, env_config=_jsonable(src.env_config),
            observation_spec=_jsonable(spec.__dict__), observation_fields={k: list(s) for k, s in view.fields.items()},
            action_space=str(self.module.action_space),
            action_labels=list(view.action_labels) if view.action_labels else None,
            min_bars=view.min_history_bars, full_history_bars=view.full_history_bars(),
            index={"observed": spec.with_index, "required": src.index_required, "symbol": src.index_symbol},
            training_run=_jsonable(src.training_run) if src.training_run else None,
            sessions={"ttl_s": self.sessions.ttl_s, "max_sessions": self.sessions.max_sessions,
                      "active": len(self.sessions), "max_seq_len": self.max_seq_len if self.recurrent else None})


STALE_INDEX_BARS = 5  # index bars the index may end before the decision bar (holidays, late prints)


def _check_finite(obs: dict[str, np.ndarray], label: str, loc: tuple) -> None:
    """422 for an observation the policy cannot take: not finite as float32 (what torch sees)."""
    for name, value in obs.items():
        v = np.asarray(value)
        if v.dtype.kind == "f":
            with np.errstate(over="ignore", invalid="ignore"):
                finite = np.isfinite(v.astype(np.float32, copy=False)).all()
            if not finite:
                log.warning("non-finite observation %r for %s", name, label)
                raise RequestError(f"{label}: its observation field {name!r} is not finite (values too large, "
                                   "e.g. prices or volumes near the float range)", loc)


def _waves(prepared: list[PreparedRequest]) -> list[list[int]]:
    """Request indices grouped so that no two requests in a wave share a session key."""
    wave_of: list[int] = []
    last_wave: dict[Any, int] = {}
    for p in prepared:
        keys = {(p.client, d.session_key) for d in p.decisions if d.session_key is not None}
        w = 1 + max((last_wave[k] for k in keys if k in last_wave), default=-1)
        for k in keys:
            last_wave[k] = w
        wave_of.append(w)
    return [[r for r, w in enumerate(wave_of) if w == i] for i in range(max(wave_of, default=-1) + 1)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

