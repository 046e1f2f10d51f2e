"""The API under abuse (issue 13), in process: strict validation (no coercion, OHLC consistency,
plausible magnitudes, a stale index, fields the model does not use), the work budget (413 naming
the limit), non-finite model outputs as a logged 422, admission (503 + Retry-After), the timeout
covering parsing and preparation (JSON 504) while /v1/health answers at once, sessions per API
key, and the OpenAPI schema: every error documented as JSON, its example accepted."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import numpy as np
import pytest

from serve.api import ApiSettings, DirectBackend, create_api
from serve.auth import ApiKeyVerifier
from tests.unit.serve.asgi import _call, request
from tests.unit.serve.helpers import API_KEY, act_body, make_service

KEY = {"X-API-Key": API_KEY}
OTHER_KEY = "other-key-0123456789abcdef"


@pytest.fixture(scope="module")
def service(env_config, gru):
    return make_service(gru, env_config, max_request_steps=64, max_request_bars=4000)


@pytest.fixture(scope="module")
def app(service):
    verifier = ApiKeyVerifier.from_keys({"alice": API_KEY, "bob": OTHER_KEY})
    return create_api(DirectBackend(service), ApiSettings(verifier, max_body_bytes=1 << 20))


def post(app, body, headers=KEY):
    return request(app, "POST", "/v1/act", headers=headers, json_body=body)


def msg(r) -> str:
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else " | ".join(f"{d['loc']}: {d['msg']}" for d in detail)


def test_strict_types_and_unknown_fields_are_422(app, synth):
    body = act_body(synth, "SYN0", 120)
    cases = [(["symbols", 0, "bars", "close", 3], "123.5", "valid number"),
             (["symbols", 0, "position", "owned"], "yes", "valid boolean"),
             (["symbols", 0, "bars", "ts_ns", 0], "946857600000000000", "valid integer"),
             (["require_full_history"], "true", "valid boolean")]
    for path, value, needle in cases:
        bad = json.loads(json.dumps(body))
        node = bad
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
        r = post(app, bad)
        assert r.status == 422 and needle in msg(r), (path, r.body)
    r = post(app, body | {"bogus": 1})
    assert r.status == 422 and "Extra inputs" in msg(r)


def test_inconsistent_or_implausible_bars_are_422(app, synth):
    body = act_body(synth, "SYN0", 120)
    bars = body["symbols"][0]["bars"]
    n = len(bars["ts_ns"])
    cases = [({"close": [h * 1.01 for h in bars["high"]]}, "close outside [low, high] at row 0"),
             ({"low": [h * 1.01 for h in bars["high"]]}, "high < low at row 0"),
             ({"volume": [1e308] * 2 + bars["volume"][2:]}, "volume: must be <= 1e+15"),
             ({"close": [1e13] + bars["close"][1:]}, "prices must be <= 1e+12"),
             ({"funding_rate": [0.0] * n}, "does not observe funding")]
    for over, needle in cases:
        r = post(app, body | {"symbols": [body["symbols"][0] | {"bars": bars | over}]})
        assert r.status == 422 and needle in msg(r), (needle, r.body)
    assert "only portfolio models" in msg(post(app, body | {"cash_usd": 5.0}))


def test_an_index_ending_before_the_decision_bar_is_422(app, synth):
    body = act_body(synth, "SYN0", 200)
    index = {k: v[:-55] for k, v in body["index"].items()}
    r = post(app, body | {"index": index})
    assert r.status == 422 and "55 bars before the decision bar" in msg(r), r.body


def test_work_budget_is_413_naming_the_limit(app, synth, service):
    body = act_body(synth, "SYN0", 300, replay_bars=200)
    r = post(app, body)
    assert r.status == 413 and "200 policy steps, the limit is 64" in msg(r), r.body
    many = act_body(synth, "SYN0", 300)
    many["symbols"] = [dict(many["symbols"][0], symbol=f"S{i}") for i in range(14)]  # 14 x 301 bars + index
    r = post(app, many)
    assert r.status == 413 and "the limit is 4000 per request" in msg(r), r.body


def test_non_finite_model_outputs_are_a_logged_422(env_config, mlp, synth, monkeypatch, caplog):
    service = make_service(mlp, env_config)
    app = create_api(DirectBackend(service), ApiSettings(ApiKeyVerifier.from_key(API_KEY)))
    step = service.policy.step

    def poisoned(obs, state=None):
        out, state = step(obs, state)
        out.dist_inputs = np.full_like(np.asarray(out.dist_inputs), np.nan)
        return out, state

    monkeypatch.setattr(service.policy, "step", poisoned)
    with caplog.at_level(logging.WARNING, logger="serve.policy_service"):
        r = post(app, act_body(synth, "SYN0", 120))
    assert r.status == 422 and "symbols[0] (SYN0)" in msg(r) and "not finite" in msg(r)
    assert any("non-finite" in rec.message for rec in caplog.records)


def test_sessions_are_per_api_key(app, synth):
    for key in (API_KEY, OTHER_KEY):
        r = post(app, act_body(synth, "SYN0", 90, session_id="shared"), {"X-API-Key": key})
        d = r.json()["decisions"][0]
        assert (d["session_step"], d["state_reset"]) == (1, True)  # bob's "shared" is not alice's
    d = post(app, act_body(synth, "SYN0", 91, session_id="shared")).json()["decisions"][0]
    assert (d["session_step"], d["state_reset"]) == (2, False)


class SlowPrepare(DirectBackend):
    """prepare() sleeps (in its worker thread): the timeout must cover it."""

    def __init__(self, service, seconds: float) -> None:
        super().__init__(service)
        self.seconds = seconds
        real = service.prepare
        outer = self

        class Proxy:
            def __getattr__(self, name):
                return getattr(service, name)

            def prepare(self, *a, **kw):
                time.sleep(outer.seconds)
                return real(*a, **kw)

        self.service = Proxy()


def test_timeout_covers_preparation_and_health_stays_fast(service, synth):
    app = create_api(SlowPrepare(service, 0.6), ApiSettings(ApiKeyVerifier.from_key(API_KEY), request_timeout_s=0.2,
                                                            max_in_flight=1))
    raw = json.dumps(act_body(synth, "SYN0", 120)).encode()
    headers = KEY | {"content-type": "application/json", "content-length": str(len(raw))}

    async def scenario():
        slow = asyncio.create_task(_call(app, "POST", "/v1/act", raw, headers, None))
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        health = await _call(app, "GET", "/v1/health", b"", {}, None)
        health_s = time.perf_counter() - t0
        busy = await _call(app, "POST", "/v1/act", raw, headers, None)  # max_in_flight=1: refused at once
        return await slow, health, health_s, busy

    slow, health, health_s, busy = asyncio.run(scenario())
    assert slow.status == 504 and "timed out after 0.2 s" in slow.json()["detail"]
    assert slow.headers["content-type"] == "application/json"
    assert health.status == 200 and health_s < 0.1, health_s
    assert busy.status == 503 and busy.headers["retry-after"] == "1" and "overloaded" in busy.json()["detail"]


def test_openapi_documents_json_errors_and_its_example_is_accepted(app):
    spec = request(app, "GET", "/openapi.json", headers=KEY).json()
    act = spec["paths"]["/v1/act"]["post"]
    for code in ("401", "409", "413", "422", "503", "504"):
        assert act["responses"][code]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
    assert act["requestBody"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ActRequest"
    example = spec["components"]["schemas"]["ActRequest"]["examples"][0]
    r = post(app, example)
    assert r.status == 200, r.body
    missing = request(app, "GET", "/v1/nothing", headers=KEY)
    assert missing.status == 404 and missing.json() == {"detail": "Not Found"}


def test_schemathesis_finds_no_server_error(service):
    """Schemathesis over the OpenAPI schema against the plain app: every check but "schema-valid
    data is accepted" (JSON schema cannot say high >= low, or that this model needs 10 bars: those
    are documented 422s), few examples."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    api = create_api(DirectBackend(service), ApiSettings(ApiKeyVerifier.from_key(API_KEY), public_docs=True))
    schema = schemathesis.openapi.from_asgi("/openapi.json", api)
    failures: list[str] = []
    lock = threading.Lock()

    def check(op) -> None:
        @settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case):
            try:
                case.call_and_validate(headers=KEY, excluded_checks=[positive_data_acceptance])
            except AssertionError as exc:  # collect, to report every operation
                with lock:
                    failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:300]}")

        run()

    for operation in schema.get_all_operations():
        check(operation.ok())
    assert not failures, failures


def test_named_keys_from_the_environment(monkeypatch):
    from app.errors import ConfigError

    monkeypatch.setenv("KEYS", f"alice:{API_KEY},bob:{OTHER_KEY}")
    verifier = ApiKeyVerifier.from_env("KEYS")
    assert (verifier.identify(API_KEY), verifier.identify(OTHER_KEY), verifier.identify("x" * 20)) == ("alice", "bob", None)
    assert API_KEY.encode() not in repr(verifier).encode() and not verifier.check(None)
    for bad in (f"alice:{API_KEY},alice:{OTHER_KEY}", f"alice:{API_KEY},bob:short", f"{API_KEY},bob"):
        monkeypatch.setenv("KEYS", bad)
        with pytest.raises(ConfigError):
            ApiKeyVerifier.from_env("KEYS")
