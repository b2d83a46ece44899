"""The ``orderflow`` console script (pyproject.toml) is ``python -m offline``."""

from __future__ import annotations

from offline.__main__ import main

__all__ = ["main"]
