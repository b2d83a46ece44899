"""Command line of the offline runtime.

    python -m offline serve --template cdk.out/Orderflow.template.json --port 3000 --aws-port 4566
    python -m offline trace <orderId> --endpoint-url http://127.0.0.1:4566     (also: orderflow trace ...)
    python -m offline rebuild-projections --endpoint-url http://127.0.0.1:4566  (also: orderflow rebuild-projections)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline", description="orderflow's offline runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the API and the embedded AWS until stopped")
    serve.add_argument("--template", type=Path, required=True, help="synthesized CloudFormation template (JSON)")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "3000")), help="API port")
    serve.add_argument("--aws-port", type=int, default=4566, help="port of the embedded AWS (moto server)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--code-root", type=Path, default=None, help="folder the handler strings are relative to "
                                                                    "(default: the repository's functions/)")
    serve.add_argument("--stack-name", default=None, help="default: the template file name up to the first dot")
    serve.add_argument("--ignore-timeouts", action="store_true",
                       help="do not fail invocations that overrun their Timeout (e.g. while in a debugger)")
    from offline import trace

    trace.add_arguments(commands.add_parser("trace", help="print one order's timeline across every service"))
    from offline import rebuild

    rebuild.add_arguments(commands.add_parser("rebuild-projections", help="replay the event store into a fresh "
                                              "order list and swap to it"))
    args = parser.parse_args(argv)
    if args.command == "serve":
        from offline.serve import serve as run_serve

        return run_serve(template=args.template, port=args.port, aws_port=args.aws_port, host=args.host,
                         code_root=args.code_root, stack_name=args.stack_name,
                         enforce_timeouts=not args.ignore_timeouts)
    if args.command == "trace":
        return trace.run(args)
    if args.command == "rebuild-projections":
        return rebuild.run(args)
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
