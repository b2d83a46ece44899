"""How long each Lambda handler's module takes to import in a fresh interpreter, against a bare `import boto3`.

    make bench          (or: .venv/bin/python benchmarks/bench_cold_start.py [--runs 5] [--template PATH])

The handler strings ("orders.api.handler", ...) and each function's environment come from the synthesized
template: --template PATH, else cdk.out/Orderflow.template.json when it is at least as new as app.py and
stacks/, else a fresh synth into /tmp/bench-synth (a few seconds). Environment values that are CloudFormation
references (table names, the bus, ARNs) become dummy strings; AWS_DEFAULT_REGION=us-east-1 and dummy
credentials are set the way Lambda sets them, so no client creation ever looks for credentials elsewhere.

Each target is imported in its own `python` subprocess (PYTHONPATH=functions, like the Lambda package) and
timed with time.perf_counter around importlib.import_module plus the handler lookup, so interpreter start-up
is excluded for handlers and boto3 alike. One untimed warm-up per target writes the bytecode caches; then the
targets are timed round-robin (`--runs` rounds) so that noise on this shared machine hits all of them alike,
and the median is reported. Target: each handler at most 3x a bare `import boto3`.

It is a benchmark, not a test: it prints PASS/FAIL per handler and a summary line, and exits 0 either way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "cdk.out" / "Orderflow.template.json"
SYNTH_DIR = Path("/tmp/bench-synth")
TARGET_RATIO = 3.0
BASELINE = "import boto3"

# Runs in the child: times the import, then reports the top-level packages it loaded.
CHILD = """
import importlib, json, sys, time
module, attr = sys.argv[1], sys.argv[2]
before = set(sys.modules)
started = time.perf_counter()
loaded = importlib.import_module(module)
if attr:
    getattr(loaded, attr)
elapsed = (time.perf_counter() - started) * 1000
packages = sorted({name.split(".")[0] for name in set(sys.modules) - before})
print(json.dumps({"ms": elapsed, "packages": packages}))
"""


def template_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    sources = [ROOT / "app.py", *(ROOT / "stacks").rglob("*.py")]
    if TEMPLATE.exists() and TEMPLATE.stat().st_mtime >= max(
        p.stat().st_mtime for p in sources
    ):
        return TEMPLATE
    why = "missing" if not TEMPLATE.exists() else "older than app.py/stacks"
    print(
        f"({TEMPLATE.relative_to(ROOT)} is {why}: synthesizing into {SYNTH_DIR})",
        file=sys.stderr,
    )
    subprocess.run(
        [sys.executable, "app.py"],
        cwd=ROOT,
        env={**os.environ, "CDK_OUTDIR": str(SYNTH_DIR)},
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return SYNTH_DIR / "Orderflow.template.json"


def dummy(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if name.endswith("_ARN"):
        return (
            f"arn:aws:states:us-east-1:123456789012:stateMachine:bench-{name.lower()}"
        )
    if "EMAIL" in name:
        return "bench@example.com"
    return f"bench-{name.lower().replace('_', '-')}"


def handlers(template: Path) -> list[tuple[str, dict[str, str]]]:
    """(handler string, environment) per Lambda function, one row per distinct handler string."""
    resources = json.loads(template.read_text())["Resources"]
    found: dict[str, dict[str, str]] = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        handler = props.get("Handler")
        if not handler or not props.get("Runtime", "").startswith("python"):
            continue  # CDK's own custom-resource providers (Node.js) are not ours
        variables = (props.get("Environment") or {}).get("Variables", {})
        found.setdefault(handler, {k: dummy(k, v) for k, v in variables.items()})
    return sorted(found.items())


def base_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_"))
    }
    env.update(
        {
            "PYTHONPATH": str(ROOT / "functions"),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
        }
    )
    return env


def measure(module: str, attr: str, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, module, attr],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing {module} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=5,
        help="timed imports per target (the median is shown)",
    )
    parser.add_argument(
        "--template",
        help="synthesized CloudFormation template (default: cdk.out or a synth)",
    )
    args = parser.parse_args()

    template = template_path(args.template)
    env = base_env()
    targets: list[tuple[str, str, str, dict[str, str]]] = [(BASELINE, "boto3", "", env)]
    for handler, variables in handlers(template):
        module, _, attr = handler.rpartition(".")
        targets.append((handler, module, attr, {**env, **variables}))

    packages: dict[str, list[str]] = {}
    for (
        label,
        module,
        attr,
        target_env,
    ) in targets:  # warm-up: bytecode caches, and the packages loaded
        packages[label] = measure(module, attr, target_env)["packages"]
    timings: dict[str, list[float]] = {label: [] for label, *_ in targets}
    for _ in range(args.runs):
        for label, module, attr, target_env in targets:
            timings[label].append(measure(module, attr, target_env)["ms"])

    medians = {label: statistics.median(values) for label, values in timings.items()}
    baseline = medians[BASELINE]
    boto3_packages = set(packages[BASELINE])
    own = {
        p.name for p in (ROOT / "functions").iterdir() if p.is_dir()
    }  # our packages: only third-party shown
    print(
        f"Handler import time in a fresh interpreter, median of {args.runs} (template: {template})"
    )
    print(
        f"Target: each handler <= {TARGET_RATIO:g}x a bare `{BASELINE}` measured in the same run.\n"
    )
    width = max(len(label) for label in medians)
    print(
        f"{'handler':<{width}} | {'median':>9} | {'x boto3':>7} | {'target':>7} | result | third-party packages beyond boto3"
    )
    print(f"{'-' * width}-+-{'-' * 9}-+-{'-' * 7}-+-{'-' * 7}-+--------+-{'-' * 30}")
    print(f"{BASELINE:<{width}} | {baseline:6.1f} ms | {1:>6.2f}x | {'':>7} |        |")
    failed = []
    for label, *_ in targets[1:]:
        ratio = medians[label] / baseline
        verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
        if verdict == "FAIL":
            failed.append(label)
        extra = sorted(
            set(packages[label]) - boto3_packages - set(sys.stdlib_module_names) - own
        )
        extra = [p for p in extra if not p.startswith("_")]
        print(
            f"{label:<{width}} | {medians[label]:6.1f} ms | {ratio:>6.2f}x | {'<= ' + format(TARGET_RATIO, 'g') + 'x':>7} "
            f"| {verdict:<6} | {', '.join(extra)}"
        )
    handlers_count = len(targets) - 1
    worst = max(targets[1:], key=lambda t: medians[t[0]])[0]
    print(
        f"\nSUMMARY cold start: {handlers_count - len(failed)}/{handlers_count} handlers within "
        f"{TARGET_RATIO:g}x boto3 ({baseline:.1f} ms); worst {worst} at {medians[worst] / baseline:.2f}x"
        + (f"; FAIL: {', '.join(failed)}" if failed else "")
    )


if __name__ == "__main__":
    main()
