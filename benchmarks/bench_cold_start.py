"""How long each Lambda handler's module takes to import in a fresh interpreter, against a bare `import boto3`.

    make bench          (or: .venv/bin/python benchmarks/bench_cold_start.py [--runs 5] [--template PATH]
                         [--functions DIR] [--strict])

What is measured. The handler strings ("orders.api.handler", ...), each function's environment and memory
come from the synthesized template: --template PATH, else $ORDERFLOW_TEMPLATE, else
cdk.out/Orderflow.template.json when it is at least as new as app.py and stacks/, else a fresh synth into
/tmp/bench-synth (a few seconds). Environment values that are CloudFormation references (table names, the
bus, ARNs) become dummy strings. Each import runs in its own `python` subprocess with PYTHONPATH=functions
(like the Lambda package; --functions DIR imports another copy, to compare two versions) and is timed around
importlib.import_module plus the handler lookup, so interpreter start-up is excluded for handlers and boto3
alike.

The Lambda-like condition. The child gets the variables the Lambda Python runtime sets (LAMBDA_TASK_ROOT,
AWS_LAMBDA_FUNCTION_NAME/MEMORY_SIZE/VERSION, AWS_EXECUTION_ENV, _HANDLER, AWS_XRAY_DAEMON_ADDRESS, dummy
credentials and the region): libraries take their Lambda code paths at import, as they do deployed. (That
matters: outside Lambda the X-Ray SDK builds a centralized sampler and two botocore clients at import, about
100 ms that Lambda never pays; inside it, Powertools' Tracer is enabled and patches what it is told to.)
The modules are byte-compiled, as in a warm package: untimed warm-up imports write the .pyc files and fill
the disk cache first, and the child reports any module it had to compile from source.

Noise. The machine is shared, so the verdict is on CPU time (the child's process time: what other processes
do barely moves it, while the wall clock of an import can triple under load), and every timed handler import
is paired with a bare `import boto3` run right before it, in a shuffled order each round; the ratio of each
pair is taken and the median over `--runs` rounds is the verdict. Wall-clock medians are shown beside it
(on an idle machine the two agree: an import with a warm disk cache is CPU work). Target: each handler at
most 3x a bare `import boto3`.

It is a benchmark, not a test: it prints PASS/FAIL per handler and a SUMMARY line. It exits 0 unless a
handler is clearly over the target, meaning every one of its paired runs was over (a median over the target
with some runs under it is reported as "FAIL noisy" and does not fail `make bench`), or a handler cannot be
imported at all with its template's environment (ERROR); with --strict, any FAIL exits 1.

To see where a handler's time goes, run `python -X importtime -c "import orders.api"` with the same
environment (LAMBDA_TASK_ROOT above all: without it the X-Ray SDK takes its non-Lambda path).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = ROOT / "functions"
TEMPLATE = ROOT / "cdk.out" / "Orderflow.template.json"
SYNTH_DIR = Path("/tmp/bench-synth")
TARGET_RATIO = 3.0
BASELINE = "import boto3"
WITH_CLIENT = "  + boto3.client('dynamodb')"
WARM_UPS = 2

# Runs in the child: times the import (CPU and wall clock), then reports the top-level packages it loaded and
# how many of the loaded source modules had no bytecode cache (compiled during the import: not the case timed).
CHILD = """
import importlib, json, os, sys, time
module, attr, argument = sys.argv[1], sys.argv[2], sys.argv[3]
before = set(sys.modules)
wall, cpu = time.perf_counter(), time.process_time()
loaded = importlib.import_module(module)
if attr:
    found = getattr(loaded, attr)
    if argument:
        found(argument)
cpu, wall = (time.process_time() - cpu) * 1000, (time.perf_counter() - wall) * 1000
new = set(sys.modules) - before
uncached = 0
for name in new:
    spec = getattr(sys.modules[name], "__spec__", None)
    if spec and spec.cached and spec.origin and spec.origin.endswith(".py") and not os.path.exists(spec.cached):
        uncached += 1
packages = sorted({name.split(".")[0] for name in new})
print(json.dumps({"cpu": cpu, "wall": wall, "packages": packages, "uncached": uncached}))
"""


@dataclass
class Target:
    label: str
    module: str
    attr: str
    env: dict[str, str]
    argument: str = ""  # when set, ``module.attr(argument)`` is called and timed too
    packages: list[str] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    paired_baseline_cpu: list[float] = field(default_factory=list)

    def record(self, seen: dict[str, Any]) -> None:
        self.cpu.append(seen["cpu"])
        self.wall.append(seen["wall"])

    @property
    def ratios(self) -> list[float]:
        return [cpu / base for cpu, base in zip(self.cpu, self.paired_baseline_cpu, strict=True)]


def template_path(explicit: str | None) -> Path:
    explicit = explicit or os.environ.get("ORDERFLOW_TEMPLATE")
    if explicit:
        return Path(explicit)
    sources = [ROOT / "app.py", *(ROOT / "stacks").rglob("*.py")]
    if TEMPLATE.exists() and TEMPLATE.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return TEMPLATE
    why = "missing" if not TEMPLATE.exists() else "older than app.py/stacks"
    print(f"({TEMPLATE.relative_to(ROOT)} is {why}: synthesizing into {SYNTH_DIR})", file=sys.stderr)
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
        return f"arn:aws:states:us-east-1:123456789012:stateMachine:bench-{name.lower()}"
    if "EMAIL" in name:
        return "bench@example.com"
    return f"bench-{name.lower().replace('_', '-')}"


def handlers(template: Path) -> list[tuple[str, dict[str, str], int]]:
    """(handler string, environment, memory MB) per Lambda function, one row per distinct handler string."""
    resources = json.loads(template.read_text())["Resources"]
    found: dict[str, tuple[dict[str, str], int]] = {}
    for resource in resources.values():
        if resource.get("Type") != "AWS::Lambda::Function":
            continue
        props = resource["Properties"]
        handler = props.get("Handler")
        if not handler or not props.get("Runtime", "").startswith("python"):
            continue  # CDK's own custom-resource providers (Node.js) are not ours
        variables = (props.get("Environment") or {}).get("Variables", {})
        env = {k: dummy(k, v) for k, v in variables.items()}
        found.setdefault(handler, (env, int(props.get("MemorySize", 128))))
    return sorted((handler, env, memory) for handler, (env, memory) in found.items())


def base_env(functions: Path) -> dict[str, str]:
    """This process's environment without AWS, Powertools or bytecode settings, plus what every Lambda has."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "POWERTOOLS_", "LAMBDA_", "_X_AMZN", "PYTHON"))
    }
    env.update(
        {
            "PYTHONPATH": str(functions),
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_SESSION_TOKEN": "testing",
            "TZ": ":UTC",
        }
    )
    return env


def lambda_env(handler: str, memory: int, functions: Path) -> dict[str, str]:
    """The variables the Lambda Python runtime sets in every execution environment."""
    name = "bench-" + handler.rsplit(".", 1)[0].replace(".", "-")
    return {
        "LAMBDA_TASK_ROOT": str(functions),
        "LAMBDA_RUNTIME_DIR": str(functions),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "AWS_LAMBDA_FUNCTION_NAME": name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
        "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",  # nothing is sent during an import
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "_HANDLER": handler,
    }


def measure(target: Target) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, target.module, target.attr, target.argument],
        cwd=ROOT,
        env=target.env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"importing {target.module} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="paired timed imports per handler (the median is shown)")
    parser.add_argument("--template", help="synthesized CloudFormation template (default: cdk.out or a synth)")
    parser.add_argument("--strict", action="store_true", help="exit 1 on any FAIL, noisy or not")
    parser.add_argument(
        "--functions", default=str(FUNCTIONS), help="the Lambda code folder to import from (to compare two versions)"
    )
    args = parser.parse_args()
    functions = Path(args.functions).resolve()

    template = template_path(args.template)
    env = base_env(functions)
    targets = []
    for handler, variables, memory in handlers(template):
        module, _, attr = handler.rpartition(".")
        targets.append(Target(handler, module, attr, {**env, **lambda_env(handler, memory, functions), **variables}))
    # The references run in a Lambda environment too (that of the first function: boto3 reads none of it).
    baseline = Target(BASELINE, "boto3", "", {**targets[0].env, "_HANDLER": "boto3"})
    # For scale, not a target: what a handler's first AWS call adds to its first request (the functions make
    # their clients when a path first needs one, and keep them for the life of the execution environment).
    with_client = Target(WITH_CLIENT, "boto3", "client", baseline.env, argument="dynamodb")

    # Warm-up: write the bytecode caches and fill the disk cache; note what each target loads. A handler that
    # cannot even be imported with its template's environment is reported, not timed.
    uncached: dict[str, int] = {}
    broken: dict[str, str] = {}
    for _ in range(WARM_UPS):
        for target in (baseline, with_client, *targets):
            if target.label in broken:
                continue
            try:
                seen = measure(target)
            except RuntimeError as error:
                broken[target.label] = str(error).strip().splitlines()[-1]
                continue
            target.packages = seen["packages"]
            uncached[target.label] = seen["uncached"]
    for reference in (BASELINE, WITH_CLIENT):
        if reference in broken:
            raise SystemExit(f"`{reference}` itself failed: {broken[reference]}")
    targets = [t for t in targets if t.label not in broken]

    shuffle = random.Random(20261126)  # a fixed seed: the same order on every run of the benchmark
    for _ in range(args.runs):
        for target in shuffle.sample(targets, len(targets)):
            seen = measure(baseline)
            baseline.record(seen)
            target.paired_baseline_cpu.append(seen["cpu"])
            target.record(measure(target))
        with_client.record(measure(with_client))
    if not baseline.cpu:
        baseline.record(measure(baseline))

    def med(values: list[float]) -> float:
        return statistics.median(values)

    boto3_cpu, boto3_wall = med(baseline.cpu), med(baseline.wall)
    boto3_packages = set(baseline.packages)
    own = {p.name for p in functions.iterdir() if p.is_dir()}  # our packages: only third-party ones are listed
    print(f"Handler import time in a fresh interpreter, Lambda environment, .pyc present (template: {template})")
    print(
        f"CPU ms and x boto3 (the verdict): medians of {args.runs} runs, each paired with a bare `{BASELINE}` "
        f"run just before it; range: the lowest and highest paired ratio. Wall: median wall-clock ms and its "
        f"ratio to boto3's. Target: <= {TARGET_RATIO:g}x.\n"
    )
    width = max(len(label) for label in [BASELINE, WITH_CLIENT, *(t.label for t in targets), *broken])
    header = (
        f"{'handler':<{width}} | {'CPU ms':>6} | {'x boto3':>7} | {'range':>11} | {'wall ms':>7} | {'x wall':>6} "
        f"| {'target':>6} | {'result':<14} | third-party packages beyond boto3"
    )
    print(header)
    print("-" * len(header))

    def row(label: str, cpu: float, ratio: str, spread: str, wall: float, target: str, result: str, note: str) -> None:
        print(
            f"{label:<{width}} | {cpu:6.1f} | {ratio:>7} | {spread:>11} | {wall:7.1f} | {wall / boto3_wall:5.2f}x "
            f"| {target:>6} | {result:<14} | {note}"
        )

    row(BASELINE, boto3_cpu, "1.00x", "", boto3_wall, "", "", "")
    row(
        WITH_CLIENT, med(with_client.cpu), f"{med(with_client.cpu) / boto3_cpu:.2f}x", "", med(with_client.wall), "",
        "(for scale)", "boto3 and one client: the client is what a function's first AWS call adds, once",
    )
    failed, clear = [], []
    for target in targets:
        ratios = target.ratios
        ratio = med(ratios)
        verdict = "PASS"
        if ratio > TARGET_RATIO:
            failed.append(target.label)
            if min(ratios) > TARGET_RATIO:
                clear.append(target.label)
                verdict = "FAIL"
            else:
                verdict = f"FAIL noisy {sum(r > TARGET_RATIO for r in ratios)}/{len(ratios)}"
        extra = sorted(set(target.packages) - boto3_packages - set(sys.stdlib_module_names) - own)
        extra = [p for p in extra if not p.startswith("_")]
        row(
            target.label, med(target.cpu), f"{ratio:.2f}x", f"{min(ratios):.2f}-{max(ratios):.2f}", med(target.wall),
            f"<= {TARGET_RATIO:g}x", verdict, ", ".join(extra),
        )
    for label, why in broken.items():
        print(f"{label:<{width}} | {'':>6} | {'':>7} | {'':>11} | {'':>7} | {'':>6} | {'':>6} | {'ERROR':<14} | {why}")
    not_compiled = {label: n for label, n in uncached.items() if n}
    if not_compiled:
        print(
            "\nWARNING: modules compiled from source during the last warm-up (no writable .pyc cache?): "
            + ", ".join(f"{label} {n}" for label, n in not_compiled.items()),
        )
    worst = max(targets, key=lambda t: med(t.ratios)) if targets else None
    print(
        f"\nSUMMARY cold start: {len(targets) - len(failed)}/{len(targets) + len(broken)} handlers within "
        f"{TARGET_RATIO:g}x boto3 ({boto3_cpu:.1f} ms CPU)"
        + (f"; worst {worst.label} at {med(worst.ratios):.2f}x" if worst else "")
        + (f"; FAIL: {', '.join(failed)}" if failed else "")
        + (f" (clearly over: {', '.join(clear)})" if clear else "")
        + (f"; ERROR (import failed): {', '.join(broken)}" if broken else "")
    )
    if clear or broken or (args.strict and failed):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
