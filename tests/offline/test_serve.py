"""``python -m offline serve``: the API and the embedded AWS on real ports, sharing one set of backends."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest

from offline.runtime import REPO_ROOT
from tests.offline.support import function, queue, table, template
from tests.offline.test_gateway import method, resource

HANDLER = """
    import json, os
    import boto3

    def health(event, context):
        return {"statusCode": 200, "body": json.dumps({"status": "ok"})}

    def put(event, context):
        boto3.client("dynamodb").put_item(TableName=os.environ["TABLE"],
                                          Item={"pk": {"S": json.loads(event["body"])["id"]}})
        return {"statusCode": 201, "body": "{}"}

    def copy(event, context):
        for record in event["Records"]:
            boto3.client("sqs").send_message(QueueUrl=os.environ["OUTBOX"],
                                             MessageBody=record["dynamodb"]["Keys"]["pk"]["S"])
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


@pytest.mark.socket
def test_serve_answers_health_shares_backends_and_stops_on_sigint(tmp_path: Path, socket_enabled: Any) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "h_serve.py").write_text(__import__("textwrap").dedent(HANDLER))
    env = {"TABLE": {"Ref": "Items"}, "OUTBOX": {"Ref": "Outbox"}}
    body = template(
        Items=table(), Outbox=queue(),
        Health=function("h_serve.health", env=env), Put=function("h_serve.put", env=env),
        Copy=function("h_serve.copy", env=env),
        Mapping={"Type": "AWS::Lambda::EventSourceMapping", "Properties": {
            "EventSourceArn": {"Fn::GetAtt": ["Items", "StreamArn"]}, "FunctionName": {"Ref": "Copy"},
            "StartingPosition": "TRIM_HORIZON"}},
        Api={"Type": "AWS::ApiGateway::RestApi", "Properties": {"Name": "serve-api"}},
        HealthResource=resource(None, "health"), HealthGet=method("HealthResource", "GET", "Health"),
        ItemsResource=resource(None, "items"), ItemsPost=method("ItemsResource", "POST", "Put"),
    )
    template_path = tmp_path / "Smoke.template.json"
    template_path.write_text(json.dumps(body))
    port, aws_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "offline", "serve", "--template", str(template_path), "--port", str(port),
         "--aws-port", str(aws_port), "--code-root", str(code)],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        api = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, answer = http("GET", f"{api}/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, process.stdout.read() if process.stdout else ""
                assert time.monotonic() < deadline, "the server did not answer /health in time"
                time.sleep(0.1)
        assert (status, answer) == (200, {"status": "ok"})
        assert http("GET", f"{api}/nope")[0] == 403
        assert http("POST", f"{api}/items", {"id": "i-1"})[0] == 201

        aws = {"endpoint_url": f"http://127.0.0.1:{aws_port}", "region_name": "us-east-1",
               "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        scanned = boto3.client("dynamodb", **aws).scan(TableName="Smoke-Items")["Items"]
        assert scanned == [{"pk": {"S": "i-1"}}]  # written through the API, read through the AWS endpoint
        sqs = boto3.client("sqs", **aws)
        outbox = sqs.get_queue_url(QueueName="Smoke-Outbox")["QueueUrl"]
        received: list[str] = []
        while not received and time.monotonic() < deadline:  # the background pump runs the stream mapping
            received = [m["Body"] for m in sqs.receive_message(QueueUrl=outbox).get("Messages", [])]
            time.sleep(0.1)
        assert received == ["i-1"]
        [mapping] = boto3.client("lambda", **aws).list_event_source_mappings()["EventSourceMappings"]
        assert mapping["State"] == "Enabled"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert f"http://127.0.0.1:{port}" in output and f"http://127.0.0.1:{aws_port}" in output
    assert f"aws --endpoint-url http://127.0.0.1:{aws_port} dynamodb scan --table-name Smoke-Items" in output
