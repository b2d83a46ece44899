"""Test-wide set-up: fake AWS credentials and region before any boto3 client exists; sockets stay off."""

import os

os.environ.update(
    {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        # botocore >= 1.44 routes DynamoDB Streams calls to an account endpoint that moto 5.2.5 does not match.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)

# The X-Ray SDK (imported by Powertools' Tracer) opens its UDP emitter socket when first imported. Import it
# here, before pytest-socket switches sockets off for the tests, as the Lambda runtime would at init.
import aws_xray_sdk.core  # noqa: E402,F401

# --------------------------------------------------------------------------- the reliability summary line
import pytest  # noqa: E402

from tests import figures  # noqa: E402


_IS_XDIST_WORKER = False


def pytest_configure(config: pytest.Config) -> None:
    global _IS_XDIST_WORKER
    _IS_XDIST_WORKER = hasattr(config, "workeroutput")


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: hand its figures to the controller
        workeroutput["reliability_figures"] = figures.snapshot()


def pytest_testnodedown(node, error) -> None:  # xdist controller hook
    figures.merge(getattr(node, "workeroutput", {}).get("reliability_figures", {}))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # Counted where the reports end up (the controller, or the only process without xdist), once per test phase.
    if not _IS_XDIST_WORKER and report.failed and "reliability" in report.keywords:
        figures.record("violations")


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if getattr(config, "workeroutput", None) is not None:
        return
    counts = figures.snapshot()
    if not counts:  # no reliability test ran (a partial run): nothing to report
        return
    terminalreporter.write_sep("=", "reliability figures")
    terminalreporter.write_line(figures.summary_line())
