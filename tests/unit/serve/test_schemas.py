"""Request validation at the boundary: every malformed request is a ValidationError naming the
field (the API turns it into a 422), and the model-dependent checks of the service are clear."""

from __future__ import annotations

import json
import math

import pytest
from pydantic import ValidationError

from serve.errors import RequestError
from serve.schemas import ActRequest, Bars
from tests.unit.serve.helpers import act_body, make_service


def bars(n: int = 4, **over) -> dict:
    base = {"ts_ns": [86_400_000_000_000 * (i + 1) for i in range(n)], "open": [10.0 + i for i in range(n)],
            "high": [11.0 + i for i in range(n)], "low": [9.0 + i for i in range(n)], "close": [10.5 + i for i in range(n)]}
    return base | over


def error_of(payload: dict, model=Bars) -> str:
    with pytest.raises(ValidationError) as err:
        model.model_validate(payload)
    first = err.value.errors()[0]
    return f"{'.'.join(map(str, first['loc']))}: {first['msg']}"


def test_valid_bars_become_arrays():
    b = Bars.model_validate(bars(volume=[1.0, 2.0, 0.0, 3.0]))
    ts, ohlcv, funding = b.arrays()
    assert ts.dtype.name == "int64" and ohlcv.shape == (4, 5) and funding is None
    assert ohlcv[:, 4].tolist() == [1.0, 2.0, 0.0, 3.0]


@pytest.mark.parametrize(("over", "needle"), [
    ({"close": [10.0, math.nan, 11.0, 12.0]}, "close.1: Input should be a finite number"),
    ({"high": [11.0, math.inf, 11.0, 12.0]}, "high.1: Input should be a finite number"),
    ({"close": [10.0, 11.0]}, "close: 2 values for 4 timestamps"),
    ({"ts_ns": [3, 2, 5, 6]}, "strictly increase"),
    ({"ts_ns": [1, 2, 2, 3]}, "row 2 is not after row 1"),
    ({"low": [9.0, 0.0, 9.0, 9.0]}, "prices must be > 0; row 1"),
    ({"volume": [1.0, -1.0, 1.0, 1.0]}, "volume: must be >= 0"),
    ({"funding_rate": [0.0, 1.5, 0.0, 0.0]}, "funding_rate: every rate must be in (-1, 1)"),
    ({"ts_ns": [1.5, 2, 3, 4]}, "ts_ns.0"),
    ({"ts_ns": []}, "ts_ns"),
    ({"extra": 1}, "extra: Extra inputs are not permitted"),
])
def test_malformed_bars_are_named(over, needle):
    assert needle in error_of(bars(**over))


def test_nan_from_json_text_is_rejected():
    """Python's json accepts NaN/Infinity literals: they must not get past validation."""
    raw = json.loads(json.dumps(bars()).replace("10.5", "NaN").replace("11.0", "Infinity"))
    assert "finite number" in error_of(raw)


def test_request_level_checks():
    item = {"symbol": "AAPL", "bars": bars()}
    assert "appears twice" in error_of({"symbols": [item, item]}, ActRequest)
    assert "symbols" in error_of({"symbols": []}, ActRequest)
    assert "session_id" in error_of({"symbols": [item], "session_id": "bad id!"}, ActRequest)
    assert "symbol" in error_of({"symbols": [item | {"symbol": "$$$"}]}, ActRequest)
    assert "replay_bars" in error_of({"symbols": [item], "replay_bars": 0}, ActRequest)
    assert "position.bars_held" in error_of({"symbols": [item | {"position": {"bars_held": -1}}]}, ActRequest)
    assert "position.oops" in error_of({"symbols": [item | {"position": {"oops": 1}}]}, ActRequest)


def test_model_dependent_checks_are_request_errors(synth, env_config, mlp):
    service = make_service(mlp, env_config)
    row = int(synth.market.offsets[1]) - 1

    def loc_and_message(body: dict) -> tuple[tuple, str]:
        with pytest.raises(RequestError) as err:
            service.prepare(ActRequest.model_validate(body))
        return err.value.loc, err.value.message

    short = act_body(synth, "SYN0", row)
    short["symbols"][0]["bars"] = {k: v[-5:] for k, v in short["symbols"][0]["bars"].items()}
    loc, msg = loc_and_message(short)
    assert loc == ("body", "symbols", 0, "bars") and "5 given" in msg and "needs 10" in msg
    loc, msg = loc_and_message(act_body(synth, "SYN0", row) | {"index": None})
    assert loc == ("body", "index") and "INDEX" in msg
    loc, msg = loc_and_message(act_body(synth, "SYN0", row, owned=True, bars_held=0))
    assert loc[-1] == "bars_held" and ">= 1 bar" in msg
    loc, msg = loc_and_message(act_body(synth, "SYN0", row, owned=False, bars_held=4))
    assert loc[-1] == "bars_held" and "0 when flat" in msg
    body = act_body(synth, "SYN0", row)
    body["symbols"][0]["position"]["qty"] = 1.0
    loc, msg = loc_and_message(body)
    assert loc[-1] == "qty" and "stock models" in msg
    body = act_body(synth, "SYN0", row)
    body["index"]["ts_ns"] = [t + 10**18 for t in body["index"]["ts_ns"]]
    loc, msg = loc_and_message(body)
    assert "index starts after the last bar" in msg
