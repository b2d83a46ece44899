"""synth_template runs ``python app.py`` with CDK_OUTDIR and returns the stack's template (tiny fake apps)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from offline.synth import SynthError, synth_template


def app(folder: Path, source: str) -> Path:
    (folder / "app.py").write_text(textwrap.dedent(source))
    return folder


def test_returns_the_template_written_to_cdk_outdir(tmp_path: Path) -> None:
    app(tmp_path, """
        import json, os, pathlib
        out = pathlib.Path(os.environ["CDK_OUTDIR"])
        silenced = os.environ["JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION"]
        (out / "Orderflow.template.json").write_text(json.dumps({"Resources": {}, "Silenced": silenced}))
    """)
    assert synth_template(tmp_path) == {"Resources": {}, "Silenced": "20"}


def test_a_failing_app_raises_with_its_stderr(tmp_path: Path) -> None:
    app(tmp_path, """
        import sys
        print("cdk-nag: AwsSolutions-IAM5 unsuppressed", file=sys.stderr)
        sys.exit(1)
    """)
    with pytest.raises(SynthError, match="AwsSolutions-IAM5 unsuppressed"):
        synth_template(tmp_path)


def test_an_app_without_the_stack_is_an_error(tmp_path: Path) -> None:
    app(tmp_path, "print('nothing')\n")
    with pytest.raises(SynthError, match="wrote no Orderflow.template.json"):
        synth_template(tmp_path)
