"""orderflow's offline runtime: the synthesized CloudFormation template running in moto, handlers in-process.

    from offline.runtime import Runtime
    from offline.synth import synth_template

See offline/runtime.py for the API and ../shared/ARCHITECTURE.md ("The offline runtime") for the design.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Runtime", "synth_template"]


def __getattr__(name: str) -> Any:  # lazy: `python -m offline` and synth do not need moto imported up front
    if name == "Runtime":
        from offline.runtime import Runtime

        return Runtime
    if name == "synth_template":
        from offline.synth import synth_template

        return synth_template
    raise AttributeError(name)
