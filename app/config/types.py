"""Shared pydantic building blocks of the experiment schema (:mod:`app.config.schema`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: a learning rate: > 0, constant or piecewise linear in env steps
PositiveSchedule = PositiveFloat | list[tuple[NonNegInt, PositiveFloat]]
#: a coefficient such as the entropy bonus: >= 0, constant or piecewise linear in env steps
NonNegSchedule = NonNegFloat | list[tuple[NonNegInt, NonNegFloat]]


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
