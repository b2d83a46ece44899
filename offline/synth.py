"""Synthesize the CDK app into a CloudFormation template without the CDK CLI: ``python app.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from offline.errors import OfflineError

REPO_ROOT = Path(__file__).resolve().parents[1]
STACK_NAME = "Orderflow"


class SynthError(OfflineError):
    """``python app.py`` failed or wrote no template for the stack."""


def synth_template(
    app_dir: Path | str = REPO_ROOT, stack_name: str = STACK_NAME, timeout: float = 600
) -> dict[str, Any]:
    """Run ``python app.py`` (this interpreter) with CDK_OUTDIR set to a temporary folder; the stack's template."""
    app_dir = Path(app_dir)
    with tempfile.TemporaryDirectory(prefix="orderflow-synth-") as outdir:
        env = {**os.environ, "CDK_OUTDIR": outdir, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
        try:
            result = subprocess.run([sys.executable, "app.py"], cwd=app_dir, env=env, capture_output=True,
                                    text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise SynthError(f"python app.py did not finish in {timeout} s") from error
        if result.returncode != 0:
            raise SynthError(f"python app.py failed (exit {result.returncode}):\n{result.stderr.strip()}")
        path = Path(outdir) / f"{stack_name}.template.json"
        if not path.exists():
            written = ", ".join(sorted(item.name for item in Path(outdir).iterdir())) or "nothing"
            raise SynthError(f"python app.py wrote no {path.name} (wrote: {written})\n{result.stderr.strip()}")
        return json.loads(path.read_text())
