"""Recurrent sessions: per (session, symbol) state, retries, time order, expiry, size bound, and
requests of one batch that share a session."""

from __future__ import annotations

import numpy as np
import pytest

from serve.errors import SessionConflictError, SessionLostError
from serve.schemas import ActRequest
from serve.sessions import SessionStore
from tests.unit.serve.helpers import act_body, make_service


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_store_steps_retries_and_refuses_old_bars():
    store = SessionStore(ttl_s=10, max_sessions=5, clock=Clock())
    t = store.begin("s|A", 100)
    assert (t.state_in, t.step, t.exists) == (None, 1, False)
    store.commit(t, 100, {"h": 1})
    t2 = store.begin("s|A", 200)
    assert (t2.state_in, t2.step, t2.retry) == ({"h": 1}, 2, False)
    store.commit(t2, 200, {"h": 2})
    retry = store.begin("s|A", 200)  # the same bar again: recompute from the state before it
    assert (retry.state_in, retry.step, retry.retry) == ({"h": 1}, 2, True)
    with pytest.raises(SessionConflictError, match="older"):
        store.begin("s|A", 150)


def test_store_expires_and_evicts():
    clock = Clock()
    store = SessionStore(ttl_s=10, max_sessions=2, clock=clock)
    for i, key in enumerate(("a", "b", "c")):
        store.commit(store.begin(key, 1), 1, {"h": i})
    assert len(store) == 2 and store.evicted == 1
    with pytest.raises(SessionLostError, match="evicted"):  # never restarted silently
        store.begin("a", 2)
    assert not store.begin("a", 2, reset=True).exists  # acknowledged: starts from the initial state
    clock.now = 10.5
    with pytest.raises(SessionLostError, match="expired"):
        store.begin("b", 2)
    assert store.expired >= 1 and not store.begin("new", 2).exists
    with pytest.raises(ValueError):
        SessionStore(ttl_s=0)


def test_service_sessions_step_expire_and_conflict(synth, env_config, gru):
    clock = Clock()
    service = make_service(gru, env_config)
    service.sessions = SessionStore(ttl_s=60, max_sessions=100, clock=clock)
    first = int(synth.market.offsets[0]) + 30

    def step(row: int, sid: str = "s1"):
        return service.act(ActRequest.model_validate(act_body(synth, "SYN0", row, session_id=sid))).decisions[0]

    a, b = step(first), step(first + 1)
    assert (a.session_step, b.session_step) == (1, 2)
    again = step(first + 1)  # a retry gives the same answer and does not advance
    assert again.session_step == 2 and again.action_probs == b.action_probs
    with pytest.raises(SessionConflictError):
        step(first)
    other = step(first + 1, "s2")  # another session starts from the initial state
    assert other.session_step == 1 and other.action_probs != b.action_probs
    assert (a.state_reset, b.state_reset, other.state_reset) == (True, False, True)
    clock.now = 61.0
    with pytest.raises(SessionLostError, match="expired"):  # lost state is a 409, never silent
        step(first + 2)
    body = act_body(synth, "SYN0", first + 2, session_id="s1", reset_session=True)
    restarted = service.act(ActRequest.model_validate(body)).decisions[0]
    assert (restarted.session_step, restarted.state_reset) == (1, True)
    assert service.info().sessions["active"] >= 1


def test_one_batch_with_the_same_session_twice_equals_two_calls(synth, env_config, gru):
    """``@serve.batch`` may hand over two steps of one session at once: they run in order."""
    row = int(synth.market.offsets[1]) + 50
    bodies = [act_body(synth, "SYN1", row + i, session_id="w") for i in range(3)]
    one_by_one = make_service(gru, env_config)
    expected = [one_by_one.act(ActRequest.model_validate(b)).decisions[0] for b in bodies]
    batched = make_service(gru, env_config)
    answers = batched.run([batched.prepare(ActRequest.model_validate(b)) for b in bodies])
    for got, want in zip(answers, expected, strict=True):
        d = got.decisions[0]
        assert (d.session_step, d.action) == (want.session_step, want.action)
        np.testing.assert_allclose(d.action_probs, want.action_probs, rtol=1e-6)
    # a stale request in a batch fails alone
    mixed = batched.run([batched.prepare(ActRequest.model_validate(act_body(synth, "SYN1", row, session_id="w"))),
                         batched.prepare(ActRequest.model_validate(act_body(synth, "SYN0", row - 320, session_id="w")))])
    assert isinstance(mixed[0], SessionConflictError) and mixed[1].decisions[0].session_step == 1


def test_warm_up_replay_starts_a_session_then_steps(synth, env_config, gru):
    service = make_service(gru, env_config)
    row = int(synth.market.offsets[0]) + 100
    warm = service.act(ActRequest.model_validate(act_body(synth, "SYN0", row, session_id="z", replay_bars=8)))
    d = warm.decisions[0]
    assert (d.mode, d.replayed_bars, d.session_step) == ("session", 8, 1)
    nxt = service.act(ActRequest.model_validate(act_body(synth, "SYN0", row + 1, session_id="z", replay_bars=8)))
    assert (nxt.decisions[0].replayed_bars, nxt.decisions[0].session_step) == (1, 2)
    stateless = service.act(ActRequest.model_validate(act_body(synth, "SYN0", row, replay_bars=8))).decisions[0]
    np.testing.assert_allclose(stateless.action_probs, d.action_probs, rtol=1e-6)  # warm-up == replay


def test_mlp_ignores_sessions(synth, env_config, mlp):
    service = make_service(mlp, env_config)
    d = service.act(ActRequest.model_validate(act_body(synth, "SYN0", 40, session_id="x"))).decisions[0]
    assert (d.mode, d.session_step) == ("stateless", None) and len(service.sessions) == 0


def test_one_clients_burst_cannot_evict_anothers_session():
    store = SessionStore(ttl_s=100, max_sessions=3, clock=Clock())
    store.commit(store.begin("keep|A", 1, "alice"), 1, {"h": "alice"})
    for i in range(50):  # bob opens many sessions: only his own least recently used go
        store.commit(store.begin(f"b{i}|A", 1, "bob"), 1, {"h": i})
    t = store.begin("keep|A", 2, "alice")
    assert (t.exists, t.state_in, t.step) == (True, {"h": "alice"}, 2)
    assert store.count("bob") == 3 and store.count("alice") == 1
    assert not store.begin("keep|A", 2, "bob").exists  # the same session id under another key is another session
    with pytest.raises(SessionLostError, match="at most 3 sessions"):
        store.begin("b40|A", 2, "bob")
    assert not store.begin("b0|A", 2, "bob").exists  # lost before the tombstones kept (4 x quota): looks new
