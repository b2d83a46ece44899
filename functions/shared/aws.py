"""boto3 clients, made once per process and only when a code path first needs them."""

from __future__ import annotations

import functools
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=2, read_timeout=5)

# What Powertools' Tracer tells the X-Ray SDK to patch: every call the functions make is an AWS call through
# botocore. Tracer's default patches every library the SDK supports, importing requests, sqlite3, httplib and
# the database drivers' hooks at cold start (about 20 ms) for calls these functions never make.
TRACED_LIBRARIES = ("botocore",)


@functools.cache
def client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)
