"""Read a CloudFormation template: parameters, conditions, dependency order and intrinsic functions.

The resolver knows nothing about AWS services: values of resources (``Ref``, ``Fn::GetAtt``) come from a
``ResourceLookup`` that the deployer fills in as it creates resources in dependency order.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from offline.errors import TemplateError

DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account

# What an SSM-typed parameter (``AWS::SSM::Parameter::Value<...>``) resolves to when the caller gives no value:
# the runtime has no access to the real parameter store. Layers (the usual case) are ignored anyway.
SSM_PLACEHOLDER_PREFIX = "offline-ssm-placeholder:"

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _NoValue:
    """``{"Ref": "AWS::NoValue"}``: the property or list item disappears."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class ResourceLookup(Protocol):
    def ref(self, logical_id: str) -> Any: ...

    def get_att(self, logical_id: str, attribute: str) -> Any: ...


class Template:
    """A parsed template plus the values of its parameters, pseudo parameters and conditions."""

    def __init__(
        self,
        body: Mapping[str, Any],
        *,
        stack_name: str,
        region: str,
        account_id: str = DEFAULT_ACCOUNT_ID,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.body = body
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.resources: dict[str, dict[str, Any]] = dict(body.get("Resources") or {})
        self.parameter_specs: dict[str, dict[str, Any]] = dict(body.get("Parameters") or {})
        self.conditions: dict[str, Any] = dict(body.get("Conditions") or {})
        self.mappings: dict[str, Any] = dict(body.get("Mappings") or {})
        self.outputs: dict[str, Any] = dict(body.get("Outputs") or {})
        self._overrides = dict(parameters or {})
        unknown = set(self._overrides) - set(self.parameter_specs)
        if unknown:
            raise TemplateError(f"values given for parameters the template does not declare: {sorted(unknown)}")
        self._parameter_values: dict[str, Any] = {}
        self._condition_values: dict[str, bool] = {}
        self._conditions_in_progress: set[str] = set()

    # ------------------------------------------------------------------ parameters, pseudo parameters, conditions
    def pseudo(self, name: str) -> Any:
        values = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}"
                "/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in values:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return values[name]

    def parameter(self, name: str) -> Any:
        if name not in self._parameter_values:
            self._parameter_values[name] = self._parameter_value(name)
        return self._parameter_values[name]

    def _parameter_value(self, name: str) -> Any:
        spec = self.parameter_specs[name]
        kind = str(spec.get("Type", "String"))
        if name in self._overrides:
            value = self._overrides[name]
        elif kind.startswith("AWS::SSM::Parameter::Value<"):
            if "Default" not in spec:
                raise TemplateError(f"SSM-typed parameter {name} has no Default: pass parameters={{{name!r}: ...}}")
            value = f"{SSM_PLACEHOLDER_PREFIX}{spec['Default']}"
        elif "Default" in spec:
            value = spec["Default"]
        else:
            raise TemplateError(f"parameter {name} has no Default: pass parameters={{{name!r}: ...}}")
        if isinstance(value, list):
            return [str(v) for v in value]
        if kind.startswith("List<") or kind == "CommaDelimitedList" or "<List<" in kind:
            return [part.strip() for part in str(value).split(",")] if value != "" else []
        return _cfn_string(value)

    def condition(self, name: str) -> bool:
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self.conditions:
            raise TemplateError(f"unknown condition {name}")
        if name in self._conditions_in_progress:
            raise TemplateError(f"condition {name} refers to itself")
        self._conditions_in_progress.add(name)
        try:
            value = self._condition_expression(self.conditions[name])
        finally:
            self._conditions_in_progress.discard(name)
        self._condition_values[name] = value
        return value

    def is_enabled(self, logical_id: str) -> bool:
        name = self.resources[logical_id].get("Condition")
        return True if name is None else self.condition(name)

    def _condition_expression(self, expression: Any, lookup: ResourceLookup | None = None) -> bool:
        if isinstance(expression, bool):
            return expression
        if isinstance(expression, str) and expression.lower() in ("true", "false"):
            return expression.lower() == "true"
        if not (isinstance(expression, Mapping) and len(expression) == 1):
            raise TemplateError(f"not a condition: {expression!r}")
        (function, argument), = expression.items()
        if function == "Condition":
            return self.condition(argument)
        if function == "Fn::Equals":
            left, right = (self.resolve(item, lookup) for item in argument)
            return _cfn_string(left) == _cfn_string(right)
        if function == "Fn::And":
            return all(self._condition_expression(item, lookup) for item in argument)
        if function == "Fn::Or":
            return any(self._condition_expression(item, lookup) for item in argument)
        if function == "Fn::Not":
            return not self._condition_expression(argument[0], lookup)
        if function == "Fn::Contains":
            haystack, needle = (self.resolve(item, lookup) for item in argument)
            return _cfn_string(needle) in [_cfn_string(item) for item in haystack]
        raise TemplateError(f"unsupported function in a condition: {function}")

    # ------------------------------------------------------------------ dependency order
    def dependencies(self, logical_id: str) -> set[str]:
        """The resources this one refers to (Ref, Fn::GetAtt, Fn::Sub) or names in DependsOn."""
        resource = self.resources[logical_id]
        found: set[str] = set()
        depends_on = resource.get("DependsOn") or []
        found.update([depends_on] if isinstance(depends_on, str) else depends_on)
        for value in (resource.get("Properties") or {}, resource.get("Condition")):
            found.update(self._references(value))
        found.discard(logical_id)
        return {name for name in found if name in self.resources}

    def _references(self, value: Any) -> Iterator[str]:
        if isinstance(value, Mapping):
            if len(value) == 1:
                (key, argument), = value.items()
                if key == "Ref" and isinstance(argument, str):
                    yield argument
                    return
                if key == "Fn::GetAtt":
                    yield argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
                    return
                if key == "Fn::Sub":
                    text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
                    for name in _sub_variable_names(text):
                        if name not in variables:
                            yield name.split(".", 1)[0]
                    yield from self._references(variables)
                    return
            for item in value.values():
                yield from self._references(item)
        elif isinstance(value, list):
            for item in value:
                yield from self._references(item)

    def creation_order(self) -> list[str]:
        """Logical ids, every resource after the ones it depends on; template order breaks ties."""
        order: list[str] = []
        state: dict[str, str] = {}

        def visit(logical_id: str, path: tuple[str, ...]) -> None:
            if state.get(logical_id) == "done":
                return
            if state.get(logical_id) == "visiting":
                cycle = " -> ".join((*path[path.index(logical_id):], logical_id))
                raise TemplateError(f"circular dependency between resources: {cycle}")
            state[logical_id] = "visiting"
            for dependency in sorted(self.dependencies(logical_id), key=list(self.resources).index):
                visit(dependency, (*path, logical_id))
            state[logical_id] = "done"
            order.append(logical_id)

        for logical_id in self.resources:
            visit(logical_id, ())
        return order

    # ------------------------------------------------------------------ intrinsic functions
    def resolve(self, value: Any, lookup: ResourceLookup | None = None) -> Any:
        """The value with every intrinsic function evaluated; ``AWS::NoValue`` items are dropped."""
        if isinstance(value, Mapping):
            if len(value) == 1:
                (key, argument), = value.items()
                if key == "Ref" or key.startswith("Fn::"):
                    return self._intrinsic(key, argument, lookup)
            resolved = {key: self.resolve(item, lookup) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        if isinstance(value, list):
            return [item for item in (self.resolve(item, lookup) for item in value) if item is not NO_VALUE]
        return value

    def _intrinsic(self, function: str, argument: Any, lookup: ResourceLookup | None) -> Any:
        if function == "Ref":
            return self._ref(argument, lookup)
        if function == "Fn::GetAtt":
            if isinstance(argument, str):
                logical_id, attribute = argument.split(".", 1)
            else:
                logical_id, attribute = argument[0], self.resolve(argument[1], lookup)
            return self._get_att(logical_id, attribute, lookup)
        if function == "Fn::Join":
            delimiter, items = argument
            items = self.resolve(items, lookup)
            return self.resolve(delimiter, lookup).join(_cfn_string(item) for item in items)
        if function == "Fn::Sub":
            return self._sub(argument, lookup)
        if function == "Fn::Select":
            index, items = self.resolve(argument[0], lookup), self.resolve(argument[1], lookup)
            try:
                return items[int(index)]
            except (IndexError, ValueError, TypeError) as error:
                raise TemplateError(f"Fn::Select {index!r} out of {items!r}") from error
        if function == "Fn::Split":
            delimiter, text = self.resolve(argument[0], lookup), self.resolve(argument[1], lookup)
            return _cfn_string(text).split(delimiter)
        if function == "Fn::If":
            name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(name) else when_false, lookup)
        if function in ("Fn::Equals", "Fn::And", "Fn::Or", "Fn::Not", "Fn::Contains"):
            return self._condition_expression({function: argument}, lookup)
        if function == "Fn::FindInMap":
            items = [self.resolve(item, lookup) for item in argument]
            try:
                return self.mappings[items[0]][items[1]][items[2]]
            except KeyError:
                if len(items) > 3 and isinstance(items[3], Mapping) and "DefaultValue" in items[3]:
                    return items[3]["DefaultValue"]
                raise TemplateError(f"Fn::FindInMap found nothing at {items[:3]}") from None
        if function == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if function == "Fn::Base64":
            return base64.b64encode(_cfn_string(self.resolve(argument, lookup)).encode()).decode()
        if function == "Fn::Length":
            return len(self.resolve(argument, lookup))
        if function == "Fn::ToJsonString":
            return json.dumps(self.resolve(argument, lookup), separators=(",", ":"))
        if function == "Fn::ImportValue":
            raise TemplateError(
                f"Fn::ImportValue {argument!r}: imports from other stacks cannot be resolved offline"
            )
        raise TemplateError(f"intrinsic function {function} is not supported offline")

    def _ref(self, name: Any, lookup: ResourceLookup | None) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"Ref needs a name, got {name!r}")
        if name in self.parameter_specs:
            return self.parameter(name)
        if name.startswith("AWS::"):
            return self.pseudo(name)
        if name in self.resources:
            if lookup is None:
                raise TemplateError(f"Ref {name}: resources cannot be resolved here")
            return lookup.ref(name)
        raise TemplateError(f"Ref to {name}, which is neither a parameter nor a resource")

    def _get_att(self, logical_id: str, attribute: str, lookup: ResourceLookup | None) -> Any:
        if logical_id not in self.resources:
            raise TemplateError(f"Fn::GetAtt on {logical_id}, which is not a resource")
        if lookup is None:
            raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute}: resources cannot be resolved here")
        return lookup.get_att(logical_id, attribute)

    def _sub(self, argument: Any, lookup: ResourceLookup | None) -> str:
        if isinstance(argument, str):
            text, variables = argument, {}
        else:
            text, variables = argument[0], self.resolve(argument[1], lookup)

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _cfn_string(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                logical_id, attribute = name.split(".", 1)
                return _cfn_string(self._get_att(logical_id, attribute, lookup))
            return _cfn_string(self._ref(name, lookup))

        return _SUB_VARIABLE.sub(replace, text)


def _sub_variable_names(text: str) -> Iterator[str]:
    for match in _SUB_VARIABLE.finditer(text):
        if not match.group(1).startswith("!"):
            yield match.group(1)


def _cfn_string(value: Any) -> str:
    """How CloudFormation turns a scalar into a string (booleans are lower case)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        raise TemplateError(f"expected a string, got {value!r}")
    return str(value)


def cfn_string(value: Any) -> str:
    return _cfn_string(value)
