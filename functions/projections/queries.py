"""The list query's parameters and its cursor, validated strictly (pure: no I/O).

The cursor is opaque to clients: base64url of ``{"v": 1, "s": <status filter or null>, "k": <list_key>}``, the
position after which the next page starts. It carries no secret and needs none: the partition it is used in
comes from the caller's identity, never from the cursor, so a forged cursor can only move within the caller's
own orders. It is validated (shape, the status filter it was made for, the key's form) and a bad one is a 400.
It holds no generation either, so a cursor stays valid across a rebuild.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .summary import STATUSES

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
PARAMETERS = ("status", "limit", "cursor")
_LIST_KEY = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z#[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
_CURSOR_VERSION = 1


class BadQuery(ValueError):
    pass


@dataclass(frozen=True)
class ListOrders:
    status: str | None
    limit: int
    after: str | None  # the list_key the page starts after


def encode_cursor(status: str | None, list_key: str) -> str:
    raw = json.dumps({"v": _CURSOR_VERSION, "s": status, "k": list_key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, status: str | None) -> str:
    """The list_key in the cursor; BadQuery if it is not one this API made for this status filter."""
    if not 1 <= len(cursor) <= 512 or not re.fullmatch(r"[A-Za-z0-9_-]+", cursor):
        raise BadQuery("cursor is not valid: pass back the nextCursor of the previous page unchanged")
    try:
        document = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise BadQuery("cursor is not valid: pass back the nextCursor of the previous page unchanged") from None
    if (
        not isinstance(document, dict)
        or set(document) != {"v", "s", "k"}
        or document["v"] != _CURSOR_VERSION
        or not isinstance(document["k"], str)
        or not _LIST_KEY.match(document["k"])
    ):
        raise BadQuery("cursor is not valid: pass back the nextCursor of the previous page unchanged")
    if document["s"] != status:
        raise BadQuery("cursor belongs to another status filter: keep the same status while paging")
    return document["k"]


def parse_list_orders(parameters: Mapping[str, list[str]] | None) -> ListOrders:
    """``?status=&limit=&cursor=`` (each at most once; nothing else)."""
    parameters = parameters or {}
    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise BadQuery(f"unknown query parameter(s) {', '.join(unknown)}: use {', '.join(PARAMETERS)}")
    for name, values in parameters.items():
        if len(values) != 1:
            raise BadQuery(f"give {name} once")
    value = {name: values[0] for name, values in parameters.items()}

    status = value.get("status")
    if status is not None and status not in STATUSES:
        raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
    limit = DEFAULT_LIMIT
    if "limit" in value:
        if not re.fullmatch(r"[0-9]{1,3}", value["limit"]) or not 1 <= int(value["limit"]) <= MAX_LIMIT:
            raise BadQuery(f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(value["limit"])
    after = decode_cursor(value["cursor"], status) if "cursor" in value else None
    return ListOrders(status=status, limit=limit, after=after)
