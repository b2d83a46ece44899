"""Tests of the offline runtime itself: tiny hand-written templates, tiny handler modules in tmp_path."""

from __future__ import annotations

import importlib
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from offline.runtime import Runtime


@pytest.fixture
def code(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write a handler module ``name`` (dedented source) into the code root."""
    root = tmp_path / "code"
    root.mkdir()

    def write(name: str, source: str) -> Path:
        path = root / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        return path

    write.root = root  # type: ignore[attr-defined]
    return write


@pytest.fixture
def run(code: Any) -> Iterator[Callable[..., Runtime]]:
    """Start a Runtime on a template with the ``code`` folder as its code root; stopped after the test."""
    started: list[Runtime] = []

    def start(body: dict[str, Any], **options: Any) -> Runtime:
        runtime = Runtime(body, code.root, stack_name=options.pop("stack_name", "Test"), **options)
        started.append(runtime)
        return runtime.start()

    yield start
    for runtime in reversed(started):
        runtime.stop()

