"""Who is calling, from the claims the API's authorizer verified.

Deployed, API Gateway's Cognito authorizer puts the token's claims in ``requestContext.authorizer.claims``:
the customer id is ``sub`` and admins are in the ``admins`` group. Locally the offline gateway plays the
authorizer and fills the same claims from ``Bearer dev:<customerId>`` / ``Bearer dev:<name>:admin``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ADMINS_GROUP = "admins"
_GROUP_SPLIT = re.compile(r"[\s,\[\]]+")


@dataclass(frozen=True)
class Caller:
    customer_id: str
    is_admin: bool = False
    email: str | None = None  # the token's verified email claim, where the identity provider gives one


def caller_from_claims(claims: dict[str, Any] | None) -> Caller | None:
    """The caller, or None when the request carries no verified identity."""
    if not claims:
        return None
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        return None
    groups = claims.get("cognito:groups") or ""
    # API Gateway passes the groups claim as a string: "admins", "admins,ops" or "[admins ops]".
    names = set(groups) if isinstance(groups, list) else {g for g in _GROUP_SPLIT.split(str(groups)) if g}
    email = claims.get("email")
    return Caller(customer_id=subject, is_admin=ADMINS_GROUP in names, email=email if isinstance(email, str) and email else None)
