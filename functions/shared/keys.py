"""The form of an Idempotency-Key header: one definition for every API that takes one."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

# No comma: HTTP lets any server or proxy join repeated header lines into one, separated by commas (RFC 9110,
# section 5.3), so "k6,k7" may be two keys the client sent; API Gateway keeps them apart, a WSGI server does not.
IDEMPOTENCY_KEY_RULE = "1-128 visible ASCII characters, no commas"

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[\x21-\x2b\x2d-\x7e]+$")]
