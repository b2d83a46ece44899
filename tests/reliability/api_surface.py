"""The API's surface as the synthesized template deploys it, for the tests that attack every route.

``api_routes(template)`` lists every method of every REST API in the template: its HTTP method, its resource path
(rebuilt from the ``AWS::ApiGateway::Resource`` tree), its authorization type, the handler of the function behind
it, and the pydantic model its body is parsed into. The model is found in the handler's own source: the route
function (``@app.<method>("<path>")``, the Powertools form of the resource path) calls
``parse_json_body(..., <Model>)`` and imports ``<Model>`` from a module of its service. So a new route, a new path
parameter or a new request model is attacked without anyone listing it here.

Nothing here imports a handler module (they read their settings at import); only the modules the models live in.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"
_PARAMETER = re.compile(r"\{([^}]+)\}")
_POWERTOOLS_PARAMETER = re.compile(r"<[^>]+>")


# One valid body per request model (by class name), for the tests that need a request that is right in every way
# but one. A new model fails test_the_attack_surface_comes_from_the_template until it has one here.
SAMPLE_BODIES: dict[str, dict[str, Any]] = {
    "PlaceOrderRequest": {"items": [{"sku": "SKU-1", "quantity": 1}]},
    "DepositRequest": {"amount": "10.00"},
    "SetProductRequest": {"name": "Seed product", "price": "2.50", "stock": 1000},
}


def sample_body(model: type[BaseModel]) -> dict[str, Any]:
    sample = SAMPLE_BODIES[model.__name__]
    model.model_validate(sample)  # a sample that no longer fits its model fails here, not as a puzzling 422
    return sample


@dataclass(frozen=True)
class ApiRoute:
    method: str
    path: str  # the resource path, API Gateway's form: /orders/{orderId}
    authorization: str  # NONE or COGNITO_USER_POOLS
    handler: str | None  # the handler string of the Lambda function behind the route (None: not a Lambda proxy)
    body_model: type[BaseModel] | None  # what the handler parses the body into (None: it reads no JSON body)

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)

    @property
    def is_public(self) -> bool:
        return self.authorization == "NONE"

    @property
    def is_admin(self) -> bool:
        """Operators' routes live under /admin (the convention stacks/api.py throttles by too)."""
        return self.path == "/admin" or self.path.startswith("/admin/")

    def url(self, values: dict[str, str]) -> str:
        """The path with each {parameter} replaced by its (already URL-encoded) value."""
        return _PARAMETER.sub(lambda match: values[match.group(1)], self.path)


@functools.cache
def load_template() -> dict[str, Any]:
    """The template `make test` synthesized (ORDERFLOW_TEMPLATE), or one fresh synth of app.py per process."""
    path = os.environ.get("ORDERFLOW_TEMPLATE")
    if path:
        return json.loads(Path(path).read_text())
    from offline.synth import synth_template

    return synth_template(ROOT)


def api_routes(template: dict[str, Any]) -> list[ApiRoute]:
    resources: dict[str, dict[str, Any]] = template["Resources"]
    apis = {lid for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::RestApi"}
    nodes = {lid: r["Properties"] for lid, r in resources.items() if r["Type"] == "AWS::ApiGateway::Resource"}

    def path_of(reference: Any) -> str:
        if isinstance(reference, dict) and "Fn::GetAtt" in reference and reference["Fn::GetAtt"][0] in apis:
            return ""  # the API's root resource
        props = nodes[reference["Ref"]]
        return path_of(props["ParentId"]) + "/" + props["PathPart"]

    routes = []
    for resource in resources.values():
        if resource["Type"] != "AWS::ApiGateway::Method":
            continue
        props = resource["Properties"]
        method = str(props["HttpMethod"]).upper()
        path = path_of(props["ResourceId"]) or "/"
        handler = _handler(resources, props.get("Integration") or {})
        routes.append(ApiRoute(method=method, path=path, authorization=str(props.get("AuthorizationType", "NONE")),
                               handler=handler, body_model=_body_model(handler, method, path) if handler else None))
    return sorted(routes, key=lambda route: (route.path, route.method))


def _handler(resources: dict[str, Any], integration: dict[str, Any]) -> str | None:
    """The handler string of the Lambda function the integration's URI names."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "Fn::GetAtt" in value:
                target = resources.get(value["Fn::GetAtt"][0], {})
                if target.get("Type") == "AWS::Lambda::Function":
                    found.append(target["Properties"]["Handler"])
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(integration.get("Uri"))
    return found[0] if found else None


def _shape(path: str) -> str:
    return _POWERTOOLS_PARAMETER.sub("*", _PARAMETER.sub("*", path)).rstrip("/") or "/"


def _body_model(handler: str, method: str, path: str) -> type[BaseModel] | None:
    """The model the route's function passes to parse_json_body, resolved through the handler module's imports."""
    module_name = handler.rsplit(".", 1)[0]
    source = FUNCTIONS / (module_name.replace(".", "/") + ".py")
    tree = ast.parse(source.read_text())
    imported: dict[str, str] = {}
    package = module_name.rsplit(".", 1)[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            absolute = f"{package}.{base}" if node.level == 1 else base
            for alias in node.names:
                imported[alias.asname or alias.name] = absolute
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or not _serves(node, method, path):
            continue
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "parse_json_body" and call.args:
                name = call.args[-1]
                if isinstance(name, ast.Name) and name.id in imported:
                    model = getattr(importlib.import_module(imported[name.id]), name.id)
                    assert isinstance(model, type) and issubclass(model, BaseModel), model
                    return model
    return None


def _serves(function: ast.FunctionDef, method: str, path: str) -> bool:
    for decorator in function.decorator_list:
        if (isinstance(decorator, ast.Call) and isinstance(decorator.func, ast.Attribute)
                and decorator.func.attr == method.lower() and decorator.args
                and isinstance(decorator.args[0], ast.Constant)
                and _shape(str(decorator.args[0].value)) == _shape(path)):
            return True
    return False
