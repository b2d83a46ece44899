"""``python -m offline serve``: the API on one port, the embedded AWS (moto's server) on another.

Both share one set of moto backends: what the API writes, ``aws --endpoint-url`` reads. A background thread
pumps the pollers, async invocations and EventBridge retries about ten times a second.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from offline.runtime import Runtime

log = logging.getLogger("offline.serve")

PUMP_INTERVAL_SECONDS = 0.1


class Server:
    def __init__(self, runtime: Runtime, *, host: str, port: int, aws_port: int) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.aws_port = aws_port
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._moto: Any = None
        self._api_server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer
        from werkzeug.serving import make_server

        self.runtime.start()
        self._moto = ThreadedMotoServer(ip_address=self.host, port=self.aws_port, verbose=False)
        self._moto.start()
        self.aws_port = self._moto.get_host_and_port()[1]
        self._spawn("offline-pump", self._pump_forever)
        app = self.runtime.api.wsgi_app() if self.runtime.apis else _no_api
        self._api_server = make_server(self.host, self.port, app, threaded=True)
        self.port = self._api_server.server_port
        self._spawn("offline-api", self._api_server.serve_forever)

    def _spawn(self, name: str, target: Any) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _pump_forever(self) -> None:
        while not self._stopping.wait(PUMP_INTERVAL_SECONDS):
            try:
                while not self._stopping.is_set() and self.runtime.pump():
                    pass
            except Exception:
                log.exception("pumping failed (the runtime keeps going)")

    def wait(self) -> None:
        self._stopping.wait()

    def request_stop(self, *_: Any) -> None:
        self._stopping.set()

    def stop(self) -> None:
        self._stopping.set()
        if self._api_server is not None:
            self._api_server.shutdown()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._moto is not None:
            self._moto.stop()
        self.runtime.stop()

    def describe(self, out: TextIO) -> None:
        rt = self.runtime
        endpoint = f"http://{self.host}:{self.aws_port}"
        print(f"\norderflow offline: stack {rt.stack_name}, region {rt.region}", file=out)
        if rt.apis:
            api = rt.api
            print(f"  API  http://{self.host}:{self.port}  (stage {api.stage}; also under /{api.stage})", file=out)
            for route in api.routes:
                auth = "" if route.authorization == "NONE" else f"  [{route.authorization}]"
                print(f"         {route.method:7} {route.resource_path}{auth}", file=out)
        print(f"  AWS  {endpoint}  (moto; any credentials, region {rt.region})", file=out)
        print("\nResources:", file=out)
        for item in rt.resources.values():
            print(f"  {item.type:36} {item.logical_id:40} {item.name}", file=out)
        if rt.skipped:
            print("  not emulated: " + ", ".join(sorted(rt.skipped)), file=out)
        print("\nLook inside:", file=out)
        print(f"  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION={rt.region}",
              file=out)
        aws = f"aws --endpoint-url {endpoint}"
        for item in rt.resources.values():
            if item.type in ("AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable"):
                print(f"  {aws} dynamodb scan --table-name {item.name}", file=out)
            elif item.type == "AWS::SQS::Queue":
                print(f"  {aws} sqs receive-message --queue-url {item.url} --max-number-of-messages 10", file=out)
            elif item.type == "AWS::StepFunctions::StateMachine":
                resource = rt.template.resources.get(item.logical_id, {})
                if str((resource.get("Properties") or {}).get("StateMachineType", "STANDARD")).upper() == "EXPRESS":
                    # Express keeps no execution history (ListExecutions is refused, as on AWS): its log is the record.
                    print(f"  .venv/bin/orderflow trace <orderId> --endpoint-url {endpoint}   (Express keeps no "
                          "execution history; trace reads its log group)", file=out)
                else:
                    print(f"  {aws} stepfunctions list-executions --state-machine-arn {item.arn}", file=out)
            elif item.type == "AWS::Events::EventBus":
                print(f"  {aws} events list-rules --event-bus-name {item.name}", file=out)
        print(f"  {aws} lambda list-event-source-mappings", file=out)
        print(f"\nReady. GET http://{self.host}:{self.port}/health  (Ctrl-C to stop)\n", file=out, flush=True)


def _no_api(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("403 Forbidden", [("Content-Type", "application/json")])
    return [json.dumps({"message": "Missing Authentication Token"}).encode()]


def serve(*, template: Path, port: int, aws_port: int, host: str, code_root: Path | None, stack_name: str | None,
          enforce_timeouts: bool = True) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("botocore", "boto3", "urllib3", "moto"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    body = json.loads(template.read_text())
    name = stack_name or (template.name[: -len(".template.json")] if template.name.endswith(".template.json")
                          else "Orderflow")
    runtime = Runtime(body, code_root, stack_name=name, fast=False, enforce_timeouts=enforce_timeouts)
    server = Server(runtime, host=host, port=port, aws_port=aws_port)
    signal.signal(signal.SIGINT, server.request_stop)
    signal.signal(signal.SIGTERM, server.request_stop)
    try:
        server.start()
        server.describe(sys.stdout)
        server.wait()
        print("stopping...", flush=True)
    except OSError as error:
        log.error("cannot serve: %s", error)
        return 1
    finally:
        server.stop()
    return 0
