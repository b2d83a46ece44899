"""Environment variables as a model, validated at cold start: a missing name fails loudly at init."""

from __future__ import annotations

import os
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Settings = TypeVar("Settings", bound=BaseModel)


class EnvSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def load_settings(model: type[Settings]) -> Settings:
    try:
        return model.model_validate(dict(os.environ))
    except ValidationError as error:
        missing = ", ".join(str(e["loc"][0]) for e in error.errors())
        raise RuntimeError(f"{model.__name__}: bad or missing environment variables: {missing}") from error
