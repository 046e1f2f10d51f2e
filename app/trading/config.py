"""The trading config (``raytrade trade CONFIG``): YAML validated once, here (extra keys fail).

Secrets never appear in it: API keys come from ``RAYTRADE_<EXCHANGE>_API_KEY`` /
``_API_SECRET`` and SMTP credentials from ``RAYTRADE_SMTP_USER`` / ``_PASSWORD``; a key that
looks like a secret is refused (the experiment loader's rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.config.loader import _problems, _read_mapping, _refuse_secrets
from app.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExchangeConfig(_Strict):
    id: str = "binanceusdm"
    market_type: Literal["swap"] = "swap"
    testnet: bool = False


class RiskConfig(_Strict):
    max_drawdown: Annotated[float, Field(gt=0, le=1)] = 0.5
    max_daily_loss: Annotated[float, Field(gt=0, le=1)] = 0.2
    max_consecutive_errors: Annotated[int, Field(ge=1)] = 5
    stale_bars: Annotated[int, Field(ge=1)] = 3


class ReplayConfig(_Strict):
    """Replay mode: bars from the Parquet store (``store`` default ``$RAYTRADE_STORE`` or
    ./store) from ``start`` to ``end`` (UTC), on a fast clock."""

    store: str | None = None
    start: str
    end: str
    max_bars: int | None = Field(None, ge=1)


class EmailConfig(_Strict):
    host: str
    port: int = 587
    sender: str
    recipients: list[str] = Field(min_length=1)
    security: Literal["starttls", "ssl", "none"] = "starttls"


class NotifyConfig(_Strict):
    email: EmailConfig | None = None
    webhook_url: str | None = None


class TradeConfig(_Strict):
    """One runner: a policy, an exchange account, symbols, budget and limits."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,40}$")
    policy: str  # a run directory, run name, checkpoint path or models:/name/version
    checkpoint: Literal["final", "best", "latest"] = "final"
    runs_dir: str | None = None
    exchange: ExchangeConfig = Field(default_factory=ExchangeConfig)
    symbols: list[str] = Field(min_length=1)
    timeframe: Literal["1h"] = "1h"
    budget_usd: float = Field(gt=0)
    leverage: float | None = Field(None, gt=0)  # None: the policy's env leverage (must match if given)
    margin_mode: Literal["isolated"] = "isolated"
    bar_delay_s: float = Field(5.0, ge=0)
    state_db: str | None = None
    close_on_exit: bool = False
    risk: RiskConfig = Field(default_factory=RiskConfig)
    replay: ReplayConfig | None = None
    notify: NotifyConfig = Field(default_factory=NotifyConfig)

    @model_validator(mode="after")
    def _unique_symbols(self) -> TradeConfig:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols: listed twice")
        return self

    @property
    def per_symbol_usd(self) -> float:
        """Each symbol trades an isolated sub-account of an equal share of the budget."""
        return self.budget_usd / len(self.symbols)

    def state_path(self, base: Path | None = None) -> Path:
        return Path(self.state_db) if self.state_db else (base or Path("trading_state")) / f"{self.name}.sqlite"


def load_trade_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TradeConfig:
    """Read and validate ``path``; a ConfigError names the file and the key."""
    p = Path(path)
    raw = _read_mapping(p, "trading config")
    _refuse_secrets(raw, str(p))
    raw |= overrides or {}
    try:
        return TradeConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{p}: {_problems(exc)}") from exc
