"""What hostile requests are made of, and the judge of what the API answers them (issue 5, "Hostile input").

``requests(route, known)`` is a hypothesis strategy of whole requests to one route: the body from the route's own
request model (its JSON schema: schema-valid documents, then the same documents with a value swapped for junk, a
field dropped or added, a list over its bounds, money as a float or as a malformed string), serialised straight or
with repeated keys, a byte-order mark, trailing or missing bytes, or no JSON at all (random bytes, invalid UTF-8,
unicode with NUL, RTL marks, emoji, lone surrogates); wrong or missing Content-Types; good and bad
Idempotency-Keys (sent once, twice, or not at all); path parameters and query values that are real ids,
injection strings (SQL, NoSQL, JMESPath, DynamoDB expressions, path traversal, CRLF, format strings) or noise;
and a caller who is an admin, the seeded customer, a stranger or a broken token.

``Target`` sends a request through the offline API Gateway and judges the answer: never a 5xx; a 4xx is the API's
one error shape (``{"message": <non-empty str>}``, plus ``errors: [{field, problem}]`` for a validation error) as
JSON and changed nothing: every table of the template scans the same before and after, and no function made a
successful write call of any kind (DynamoDB, EventBridge, SQS, Step Functions...); a GET writes nothing even when
it succeeds. Every request sent counts as one ``fuzz_cases``.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import boto3
from hypothesis import strategies as st
from pydantic import BaseModel

from offline.runtime import Runtime
from tests.figures import record
from tests.reliability.api_surface import ApiRoute

# ====================================================================================== the ingredients
INJECTIONS = [
    # SQL and NoSQL
    "' OR '1'='1", "1' OR 1=1--", '"; DROP TABLE orders; --', "admin'--", '{"$gt": ""}', '{"$ne": null}',
    "[$ne]=1", "';return true;var a='", '{"$where": "sleep(1000)"}',
    # JMESPath (the idempotency key expressions) and DynamoDB expressions
    "[?customer_id=='alice']", "@", "`{}`", "*", "customer_id || idempotency_key", "[0:100].items", "&foo",
    "#pk", ":pk", "attribute_exists(pk)", "pk = :pk OR begins_with(pk, :a)", "order#", "g1#alice",
    # path traversal
    "../../../../etc/passwd", "..\\..\\windows\\win.ini", "%2e%2e%2f%2e%2e%2f", "/admin/accounts/alice", "....//",
    "..", ".", "~", "%00",
    # CRLF and header injection
    "a\r\nSet-Cookie: owned=1", "%0d%0aX-Injected:%201", "\r\n\r\n<html>", "x\nX-Amzn-Trace-Id: Root=1",
    # format strings, templates, markup
    "%s%s%s%n", "{0.__class__}", "${jndi:ldap://x/a}", "{{7*7}}", "<script>alert(1)</script>",
    # unicode: RTL override, NUL, BOM, emoji, full-width letters, combining marks, a lone surrogate
    "\u202eevil", "\x00", "\u0000admin", "\ufeff", "😀", "ａｄｍｉｎ", "e\u0301", "Ω≈ç√∫", "\ud800",
    # sizes and look-alike values
    "A" * 5000, "", " ", "null", "true", "-1", "0", "1e309", "NaN", "9" * 30,
]

CONTENT_TYPES = ["application/json"] * 8 + [
    None, "", "application/json; charset=utf-8", "APPLICATION/JSON", "application/json;charset=latin-1",
    "text/plain", "application/x-www-form-urlencoded", "application/xml", "multipart/form-data; boundary=x",
    "application/json-patch+json", "application/octet-stream", "*/*", "application/jsonx", "json",
    "application/json\r\nX-Injected: 1",
]

# Keys outside 1-128 visible ASCII characters without commas: refused with a 400 by every route that takes a key
# (a comma is how HTTP joins repeated header lines: "k6,k7" may be two keys).
BAD_IDEMPOTENCY_KEYS = [
    "", " ", "a b", "k" * 129, "k" * 10_000, "é", "😀", "a\x00b", "a\r\nb", "\t", "key\x7f", "\u202ekey", "k6,k7", ",",
]
# Visible ASCII, so fine keys, that look like what they are not: data to the JMESPath that selects the key, never
# an expression, and the key's own string in the order id it derives.
HOSTILE_VALID_KEYS = ["[?customer_id=='alice']", "@", "`{}`", "'OR'1'='1'--", "../../etc/passwd", "k" * 128, "%00",
                      "${jndi:ldap://x}"]

QUERY_NAMES = ["asOf", "version", "after", "limit", "cursor", "status"]

MONEY_STRINGS = [
    "12.50", "12.5", "12", "0", "0.00", "0.01", "-1.00", "+5", "1e3", "1E-2", "1,000.00", " 12.50", "12.50 ",
    "12.505", "１２", "0x10", "NaN", "Infinity", "-Infinity", "999999999999.99", "1000000.01", "1000000",
    "00012.50", ".5", "5.", "12.50\n", "1_000",
]

RAW_BODIES = [
    b"", b" ", b"{", b"}", b"[", b"null", b"[]", b'"a string"', b"1", b"true", b"{'items': []}", b'{"a": 1,}',
    b"{\"a\": 1} trailing", b"\x00", b"\xff\xfe{}", b"\xef\xbb\xbf{}", b"{\"a\": \"\xed\xa0\x80\"}",
    b"/* a comment */ {}", b"items=1&quantity=2", b"<items><sku>A</sku></items>", b"NaN", b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"{" + b'"k": 1, ' * 5000 + b'"z": 0}',
]


def json_junk() -> st.SearchStrategy[Any]:
    """Any JSON value (and NaN/Infinity, which Python's json writes), with money-like and huge numbers."""
    leaves = st.one_of(
        st.none(), st.booleans(), st.integers(), st.integers(min_value=2**53, max_value=10**40),
        st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.sampled_from(MONEY_STRINGS),
        st.sampled_from(INJECTIONS), st.decimals(allow_nan=False, allow_infinity=False, places=3).map(float),
    )
    return st.recursive(leaves, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                            max_size=3), max_leaves=6)


# ====================================================================================== bodies from the model
def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Documents that satisfy a pydantic model's JSON schema (the model's own validators may still refuse them)."""
    if "$ref" in schema:
        return st.deferred(lambda: from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs))
    for combinator in ("anyOf", "oneOf"):
        if combinator in schema:
            return st.one_of([from_schema(option, defs) for option in schema[combinator]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object":
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: from_schema(sub, defs) for name, sub in properties.items() if name in required},
            optional={name: from_schema(sub, defs) for name, sub in properties.items() if name not in required},
        )
    if kind == "array":
        low, high = schema.get("minItems", 0), schema.get("maxItems", 10)
        return st.lists(from_schema(schema.get("items", {}), defs), min_size=low, max_size=min(high, low + 8))
    if kind == "string":
        low, high = schema.get("minLength", 0), schema.get("maxLength", 100)
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda text: low <= len(text) <= high)
        # A string with no pattern may still be a number in disguise (money is a decimal string): try both.
        return st.one_of(st.text(min_size=low, max_size=min(high, low + 30)),
                         st.sampled_from([m for m in MONEY_STRINGS if low <= len(m) <= high]))
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.one_of(st.integers(low, high), st.sampled_from([v for v in (low, high) if v is not None] or [0]))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    return json_junk()


def documents(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    schema = model.model_json_schema()
    return from_schema(schema, schema.get("$defs", {}))


@st.composite
def mutated(draw: st.DrawFn, document: Any) -> Any:
    """The document with one thing wrong somewhere in it: a value of another type or out of bounds, a field
    dropped or added, a list emptied, overfilled or with a line repeated."""
    if isinstance(document, dict) and document:
        key = draw(st.sampled_from(sorted(document)))
        changed = dict(document)
        operation = draw(st.sampled_from(["replace", "drop", "add", "descend", "descend"]))
        if operation == "replace":
            changed[key] = draw(json_junk())
        elif operation == "drop":
            del changed[key]
        elif operation == "add":
            extra = draw(st.sampled_from(["price", "unitPrice", "total", "customerId", "status", "__proto__",
                                          "$where", "constructor", ""]) | st.text(max_size=10))
            changed[extra] = draw(json_junk())
        else:
            changed[key] = draw(mutated(document[key]))
        return changed
    if isinstance(document, list):
        operation = draw(st.sampled_from(["empty", "overfill", "repeat", "junk", "descend"] if document else
                                         ["junk", "overfill"]))
        if operation == "empty":
            return []
        if operation == "overfill":
            return (document or [draw(json_junk())]) * 51
        if operation == "repeat":
            return document + document[:1]
        if operation == "junk" or not document:
            return document + [draw(json_junk())]
        index = draw(st.integers(0, len(document) - 1))
        return document[:index] + [draw(mutated(document[index]))] + document[index + 1:]
    return draw(json_junk())


@st.composite
def serialised(draw: st.DrawFn, document: Any) -> bytes:
    """The document as bytes: plain JSON mostly, else malformed in one of the ways parsers disagree on."""
    ascii_only = draw(st.booleans())
    text = json.dumps(document, ensure_ascii=ascii_only)
    variant = draw(st.sampled_from(["plain"] * 6 + ["duplicate key", "bom", "trailing", "truncated", "padded",
                                                    "single quotes"]))
    if variant == "duplicate key" and isinstance(document, dict) and document:
        key = draw(st.sampled_from(sorted(document)))
        first = json.dumps(draw(json_junk() | st.just(document[key])))
        text = "{" + ", ".join([f"{json.dumps(key)}: {first}"] +
                               [f"{json.dumps(k)}: {json.dumps(v)}" for k, v in document.items()]) + "}"
    elif variant == "bom":
        text = "\ufeff" + text
    elif variant == "trailing":
        text += draw(st.sampled_from(["}", "]", ",", " x", "\x00", "{}"]))
    elif variant == "truncated" and len(text) > 1:
        text = text[: draw(st.integers(1, len(text) - 1))]
    elif variant == "padded":
        text = draw(st.sampled_from([" ", "\n", "\t", "\r\n"])) * draw(st.integers(1, 50)) + text
    elif variant == "single quotes":
        text = text.replace('"', "'")
    return text.encode("utf-8", "surrogatepass")


def raw_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(RAW_BODIES),
        st.binary(max_size=200),
        st.text(max_size=200).map(lambda text: text.encode("utf-8", "surrogatepass")),
        st.sampled_from(INJECTIONS).map(lambda text: text.encode("utf-8", "surrogatepass")),
    )


def bodies(model: type[BaseModel] | None) -> st.SearchStrategy[bytes | None]:
    if model is None:
        return st.one_of(st.none(), st.none(), raw_bodies())
    docs = documents(model)
    return st.one_of(
        docs.flatmap(serialised),
        docs.flatmap(mutated).flatmap(serialised),
        docs.flatmap(mutated).flatmap(mutated).flatmap(serialised),
        raw_bodies(),
    )


# ====================================================================================== whole requests
@dataclass
class Known:
    """Real ids the seed created, so attacks also reach the code behind a successful lookup."""

    values: dict[str, list[str]]  # path parameter name -> real values
    cursors: list[str] = field(default_factory=list)
    customer: str = "alice"  # owns the seeded orders

    def every(self) -> list[str]:
        return sorted({value for values in self.values.values() for value in values})


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes | None = None
    query: dict[str, list[str]] | None = None

    def describe(self) -> str:
        body = None if self.body is None else (self.body[:300] + (b"..." if len(self.body) > 300 else b""))
        headers = [(k, v[:200]) for k, v in self.headers]
        query = {k: [v[:200] for v in vs] for k, vs in (self.query or {}).items()}
        return f"{self.method} {self.path[:300]} query={query} headers={headers} body={body!r}"


def path_values(known: Known) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known.every()),
        st.uuids().map(str),
        st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True),
        st.sampled_from(INJECTIONS),
        st.text(max_size=80),
    )


def encode_path_value(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def rfc3339(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def query_values(known: Known) -> st.SearchStrategy[str]:
    offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda minutes: timezone(timedelta(minutes=minutes)))
    return st.one_of(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets).map(rfc3339),
        st.integers(-5, 10**12).map(str),
        st.sampled_from(known.cursors or ["eyJ2IjoxfQ"]),
        st.sampled_from(["PENDING", "CONFIRMED", "CANCELLED", "NEEDS_ATTENTION", "confirmed", "SHIPPED"]),
        st.sampled_from(INJECTIONS),
        st.text(max_size=40),
    )


def queries(known: Known) -> st.SearchStrategy[dict[str, list[str]] | None]:
    names = st.sampled_from(QUERY_NAMES) | st.text(min_size=1, max_size=10)
    return st.one_of(st.none(), st.dictionaries(names, st.lists(query_values(known), min_size=1, max_size=2),
                                                max_size=3))


def authorizations(known: Known) -> st.SearchStrategy[str | None]:
    return st.one_of(
        st.sampled_from(["Bearer dev:ops:admin"] * 4 + [f"Bearer dev:{known.customer}"] * 3),
        st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True).map(lambda name: f"Bearer dev:{name}"),
        st.sampled_from([None, "", "Bearer", "Bearer dev:", "bearer dev:alice", "Basic dev:alice", "Bearer alice",
                         "Bearer dev:al ice", "Bearer dev:alice:root", "Bearer dev:alice:admin:x",
                         "Bearer dev:" + "x" * 65, "Bearer dev:alice\r\nX-Admin: 1", "Bearer dev:ａｌｉｃｅ"]),
    )


@st.composite
def requests(draw: st.DrawFn, route: ApiRoute, known: Known) -> Request:
    values = {name: encode_path_value(draw(path_values(known))) for name in route.parameters}
    headers: list[tuple[str, str]] = []
    authorization = draw(authorizations(known))
    if authorization is not None:
        headers.append(("Authorization", authorization))
    content_type = draw(st.sampled_from(CONTENT_TYPES) | st.text(max_size=30))
    if content_type is not None:
        headers.append((draw(st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"])), content_type))
    keys = draw(st.lists(st.one_of(st.uuids().map(lambda u: u.hex), st.sampled_from(BAD_IDEMPOTENCY_KEYS),
                                   st.sampled_from(HOSTILE_VALID_KEYS), st.text(max_size=140)), max_size=2))
    for key in keys:
        headers.append((draw(st.sampled_from(["Idempotency-Key", "idempotency-key"])), key))
    if draw(st.integers(0, 9)) == 0:
        headers.append((draw(st.sampled_from(["X-Forwarded-For", "Host", "X-Amzn-Trace-Id", "Cookie", "Origin"])),
                        draw(st.sampled_from(INJECTIONS))))
    return Request(method=route.method, path=route.url(values), headers=headers, body=draw(bodies(route.body_model)),
                   query=draw(queries(known)))


# ====================================================================================== the judge
_READS = ("Get", "Query", "Scan", "Describe", "List", "BatchGet", "TransactGet")
ERROR_KEYS = {"message", "errors"}


class WriteWatcher:
    """An observer of the runtime: every AWS call a function made that succeeded and was not a read."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def after_aws_call(self, invocation: Any, service: str, operation: str, params: Any, response: Any) -> None:
        if not operation.startswith(_READS):
            self.writes.append(f"{invocation.function_name}: {service}.{operation}")


class Target:
    """The runtime's API, with every table of the template watched. ``figure``: what each request counts as in the
    reliability summary (None: nothing)."""

    def __init__(self, rt: Runtime, figure: str | None = "fuzz_cases") -> None:
        self.rt = rt
        self.figure = figure
        self.tables = sorted(item.name for item in rt.resources.values() if item.type == "AWS::DynamoDB::Table")
        assert self.tables, "the template has no tables to watch"
        self.watcher = rt.observe(WriteWatcher())
        self.state = self.scan()
        assert self.state == self.scan_through_the_api(), "reading the tables directly must see what Scan sees"

    def scan(self) -> dict[str, set[str]]:
        """Every item of every table, read from the embedded DynamoDB itself: the items a Scan returns, without
        moto's wire serialisation of each one (a Scan of every table after every request would cost ~100 ms)."""
        from moto.dynamodb.models import dynamodb_backends

        backend = dynamodb_backends[self.rt.account_id][self.rt.region]
        return {table: {json.dumps(item.to_json()["Attributes"], sort_keys=True)
                        for item in backend.get_table(table).all_items()} for table in self.tables}

    def scan_through_the_api(self) -> dict[str, set[str]]:
        client = boto3.client("dynamodb")
        state = {}
        for table in self.tables:
            items: set[str] = set()
            kwargs: dict[str, Any] = {"TableName": table}
            while True:
                page = client.scan(**kwargs)
                items.update(json.dumps(item, sort_keys=True) for item in page["Items"])
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            state[table] = items
        return state

    def send(self, request: Request) -> Any:
        """Send the request, judge the answer (AssertionError saying what is wrong), return the response."""
        self.watcher.writes.clear()
        response = self.rt.api.request(request.method, request.path, headers=request.headers, body=request.body,
                                       query=request.query)
        if self.figure:
            record(self.figure)
        before, after = self.state, self.scan()
        self.state = after
        problems = judge(request, response, before, after, list(self.watcher.writes))
        assert not problems, f"{request.describe()}\n-> {response.status} {response.body[:500]}\n" + "\n".join(problems)
        return response


def error_shape_problems(response: Any) -> list[str]:
    """The API's one error shape: JSON {"message": non-empty str} (+ "errors": [{"field", "problem"}])."""
    content_type = response.headers.get("Content-Type", "")
    if not content_type.startswith("application/json"):
        return [f"a {response.status} must be JSON, not {content_type!r}"]
    try:
        body = json.loads(response.body)
    except ValueError:
        return [f"a {response.status} body must be JSON: {response.body[:200]!r}"]
    if not isinstance(body, dict) or not isinstance(body.get("message"), str) or not body["message"].strip():
        return [f"a {response.status} must say what is wrong in a non-empty 'message': {body!r:.300}"]
    problems = []
    if set(body) - ERROR_KEYS:
        problems.append(f"a {response.status} has keys beyond the error shape: {sorted(set(body) - ERROR_KEYS)}")
    errors = body.get("errors", [])
    if not isinstance(errors, list) or not all(
            isinstance(e, dict) and set(e) == {"field", "problem"} and all(isinstance(v, str) for v in e.values())
            for e in errors):
        problems.append(f"'errors' must be a list of {{field, problem}}: {errors!r:.300}")
    if "Traceback" in response.body or "internal error" in body["message"]:
        problems.append("an error leaks internals")
    return problems


def judge(request: Request, response: Any, before: dict[str, set[str]], after: dict[str, set[str]],
          writes: list[str]) -> list[str]:
    status = response.status
    if status >= 500:
        return [f"a {status}: hostile input must never be a server error"]
    problems: list[str] = []
    if 400 <= status < 500:
        problems += error_shape_problems(response)
    elif not 200 <= status < 300:
        problems.append(f"unexpected status {status}")
    if status >= 400 or request.method == "GET":
        why = "a refused request" if status >= 400 else "a GET"
        if writes:
            problems.append(f"{why} made write calls: {writes}")
        for table in before:
            added, removed = after[table] - before[table], before[table] - after[table]
            if added or removed:
                problems.append(f"{why} changed {table}: +{[a[:200] for a in list(added)[:3]]} "
                                f"-{[r[:200] for r in list(removed)[:3]]}")
    return problems


def fresh_customer() -> str:
    return f"fuzz-{uuid.uuid4().hex[:10]}"
