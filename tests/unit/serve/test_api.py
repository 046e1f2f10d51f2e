"""The HTTP API in process (no server, no Ray): every route, the API key, 401/404/409/413/422/
503/504 answers, and validation errors that never echo the input."""

from __future__ import annotations

import asyncio
import json

import pytest

from serve.api import ApiSettings, DirectBackend, create_api
from serve.auth import ApiKeyVerifier
from serve.errors import ServeError
from tests.unit.serve.asgi import request
from tests.unit.serve.helpers import API_KEY, act_body, make_service

KEY = {"X-API-Key": API_KEY}


@pytest.fixture(scope="module")
def service(env_config, gru):
    return make_service(gru, env_config)


def make_app(service, **settings):
    return create_api(DirectBackend(service), ApiSettings(ApiKeyVerifier.from_key(API_KEY), **settings))


@pytest.fixture(scope="module")
def app(service):
    return make_app(service, max_body_bytes=256 * 1024)


def test_health_needs_no_key_and_everything_else_does(app):
    assert request(app, "GET", "/v1/health").json() == {"status": "ok", "detail": None}
    for method, path in (("GET", "/v1/models"), ("POST", "/v1/act"), ("GET", "/docs"), ("GET", "/openapi.json")):
        for headers in ({}, {"X-API-Key": "wrong-key-0123456789"}, {"Authorization": "Bearer nope"}):
            r = request(app, method, path, headers=headers, json_body={})
            assert r.status == 401, (method, path, headers)
            assert r.json() == {"detail": "missing or invalid API key"} and "www-authenticate" in r.headers
    assert request(app, "GET", "/v1/nothing", headers=KEY).status == 404


def test_models_route_describes_the_policy(app):
    for headers in (KEY, {"Authorization": f"Bearer {API_KEY}"}):
        info = request(app, "GET", "/v1/models", headers=headers).json()
        assert info["model_version"] == "test@0" and info["recurrent"] is True
        assert info["env_id"] == "raytrade/SyntheticMeanReversion-v0" and info["env_kind"] == "stock"
        assert info["observation_fields"]["daily_hloc"] == [10, 4] and info["min_bars"] == 10
        assert info["action_labels"] == ["hold", "buy", "sell"] and info["training_run"] == {"name": "test"}


def test_act_answers_decisions(app, synth, service):
    r = request(app, "POST", "/v1/act", headers=KEY, json_body=act_body(synth, "SYN0", 120))
    assert r.status == 200, r.body
    out = r.json()
    assert out["model_version"] == "test@0" and len(out["decisions"]) == 1
    d = out["decisions"][0]
    assert d["mode"] == "replay" and d["replayed_bars"] == service.max_seq_len and d["action_label"] in ("hold", "buy", "sell")
    assert abs(sum(d["action_probs"]) - 1) < 1e-5 and isinstance(d["value"], float)


def test_nan_and_inf_are_422_without_echoing_the_input(app, synth):
    text = json.dumps(act_body(synth, "SYN0", 120))
    for bad in ("NaN", "Infinity", "-Infinity"):
        data = text.replace('"close": [', f'"close": [{bad}, ', 1).encode()
        r = request(app, "POST", "/v1/act", headers=KEY, data=data)
        assert r.status == 422, r.body
        detail = r.json()["detail"]
        assert detail[0]["loc"][-2:] == ["close", 0] and "finite" in detail[0]["msg"]
        assert set(detail[0]) == {"loc", "msg", "type"} and b"NaN" not in r.body


def test_shape_order_and_length_errors_are_422(app, synth):
    body = act_body(synth, "SYN0", 120)
    bars = body["symbols"][0]["bars"]
    cases = [
        ({**bars, "close": bars["close"][:-1]}, "close: 120 values for 121 timestamps"),
        ({**bars, "ts_ns": bars["ts_ns"][::-1]}, "strictly increase"),
        ({k: v[-4:] for k, v in bars.items()}, "4 given, the model's observation window needs 10"),
    ]
    for bad, needle in cases:
        body["symbols"][0]["bars"] = bad
        r = request(app, "POST", "/v1/act", headers=KEY, json_body=body)
        assert r.status == 422 and needle in r.json()["detail"][0]["msg"], r.body
    r = request(app, "POST", "/v1/act", headers=KEY, data=b"{not json")
    assert r.status == 422


def test_oversized_bodies_are_413_declared_or_streamed(app):
    big = b'{"symbols": [' + b" " * (300 * 1024) + b"]}"
    r = request(app, "POST", "/v1/act", headers=KEY, data=big)
    assert r.status == 413 and "larger than" in r.json()["detail"]
    r = request(app, "POST", "/v1/act", headers=KEY, data=big, chunk=64 * 1024, content_length=False)
    assert r.status == 413
    assert request(app, "POST", "/v1/act", data=big).status == 413  # before the key is even looked at


def test_session_conflict_is_409(app, synth):
    ok = request(app, "POST", "/v1/act", headers=KEY | {"x-session-id": "api-s"}, json_body=act_body(synth, "SYN0", 90))
    assert ok.status == 200 and ok.json()["decisions"][0]["session_step"] == 1
    stale = request(app, "POST", "/v1/act", headers=KEY, json_body=act_body(synth, "SYN0", 80, session_id="api-s"))
    assert stale.status == 409 and "older" in stale.json()["detail"][0]["msg"]
    clash = request(app, "POST", "/v1/act", headers=KEY | {"x-session-id": "a"},
                    json_body=act_body(synth, "SYN0", 90, session_id="b"))
    assert clash.status == 422


def test_docs_and_openapi(app, service):
    spec = request(app, "GET", "/openapi.json", headers=KEY).json()
    assert {"/v1/act", "/v1/models", "/v1/health"} <= set(spec["paths"])
    assert "ActRequest" in spec["components"]["schemas"]
    assert b"swagger" in request(app, "GET", "/docs", headers=KEY).body.lower()
    public = make_app(service, public_docs=True)
    assert request(public, "GET", "/docs").status == 200 and request(public, "GET", "/v1/models").status == 401


class SlowBackend(DirectBackend):
    async def run(self, prepared):
        await asyncio.sleep(0.5)
        return await super().run(prepared)


def test_request_timeout_is_504(service, synth):
    app = create_api(SlowBackend(service), ApiSettings(ApiKeyVerifier.from_key(API_KEY), request_timeout_s=0.05))
    r = request(app, "POST", "/v1/act", headers=KEY, json_body=act_body(synth, "SYN0", 120))
    assert r.status == 504 and "timed out" in r.json()["detail"]


def test_health_is_503_when_the_model_cannot_run(env_config, mlp, monkeypatch):
    service = make_service(mlp, env_config)
    app = make_app(service)
    monkeypatch.setattr(service.policy, "step", lambda obs, state=None: (_ for _ in ()).throw(RuntimeError("weights gone")))
    assert request(app, "GET", "/v1/health").status == 200  # a forward pass succeeded in the last 30 s
    service.last_ok -= 3600  # none recently: health runs one itself
    r = request(app, "GET", "/v1/health")
    assert r.status == 503 and r.json()["status"] == "unhealthy"
    assert "weights gone" not in r.json()["detail"]  # no internals to anonymous callers
    with pytest.raises(ServeError):
        service.health_check()


def test_the_api_key_is_never_kept(monkeypatch):
    monkeypatch.setenv("MY_KEY", API_KEY)
    verifier = ApiKeyVerifier.from_env("MY_KEY")
    assert API_KEY.encode() not in verifier.digest + verifier.salt and "redacted" in repr(verifier)
    assert verifier.check(API_KEY) and not verifier.check(API_KEY[:-1]) and not verifier.check(None)
    from app.errors import ConfigError

    monkeypatch.delenv("MY_KEY")
    with pytest.raises(ConfigError, match="MY_KEY is not set"):
        ApiKeyVerifier.from_env("MY_KEY")
    with pytest.raises(ConfigError, match="at least 16"):
        ApiKeyVerifier.from_key("short")
