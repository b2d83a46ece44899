"""The orderflow CDK app: the "Orderflow" stack, checked by cdk-nag (AwsSolutions and Serverless) on every synth.

`cdk synth` runs this file; so does the offline runtime (``python app.py`` with CDK_OUTDIR set), without the
CDK CLI. The context from cdk.json (feature flags, ``workflow``) is loaded here too, so both produce the same
template. Context given on the command line (``cdk synth -c workflow=express``, ``-c senderEmail=...``) still
wins.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks, NagPack, ServerlessChecks

from stacks.orderflow_stack import DEFAULT_SENDER_EMAIL, OrderflowStack

ROOT = Path(__file__).resolve().parent
STACK_NAME = "Orderflow"
# What the CDK CLI passes by default (with "versionReporting": false from cdk.json), so that running this file
# directly gives the very template `cdk synth` gives. The CLI's own values still take precedence.
CLI_DEFAULTS = {
    "aws:cdk:enable-path-metadata": True,
    "aws:cdk:enable-asset-metadata": True,
    "aws:cdk:version-reporting": False,
}


# The cdk-nag rule packs every synth runs: AWS Solutions (security) and Serverless (operational best practices:
# failure destinations, tracing, throttling, log retention...). Any finding not acknowledged on its construct,
# with a written reason, fails the synth.
NAG_PACKS: tuple[type[NagPack], ...] = (AwsSolutionsChecks, ServerlessChecks)


def cdk_json_context() -> dict[str, Any]:
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def build_app(context: dict[str, Any] | None = None) -> tuple[App, OrderflowStack]:
    app = App(context={**CLI_DEFAULTS, **cdk_json_context(), **(context or {})})
    stack = OrderflowStack(
        app,
        STACK_NAME,
        workflow=app.node.try_get_context("workflow") or "standard",
        sender_email=app.node.try_get_context("senderEmail") or DEFAULT_SENDER_EMAIL,
    )
    # cdk-nag v3 packs are policy validation plugins: findings go to the synth's validation report and fail the
    # synth. Acknowledgements (Validations.of(construct).acknowledge) are also written into the resources' Metadata.
    Validations.of(app).add_plugins(*(pack(app, write_suppressions_to_cloud_formation=True) for pack in NAG_PACKS))
    return app, stack


if __name__ == "__main__":
    build_app()[0].synth()
