"""The offline runtime: a CloudFormation template running in moto, with in-process Lambda handlers.

    rt = Runtime(template_dict, code_root=Path("functions"))
    rt.start()                      # mock_aws + patches + every resource of the template
    rt.api.request("GET", "/health")
    rt.settle()                     # run pollers, async invocations and executions until nothing is left
    rt.stop()
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from offline import patches
from offline.errors import EnvironmentConflictError, NotSettledError, OfflineError
from offline.template import DEFAULT_ACCOUNT_ID, Template

log = logging.getLogger("offline")


def _import_socket_openers() -> None:
    """Import, with this module, the libraries that open a socket when they are imported.

    The X-Ray SDK (which Powertools' Tracer imports, even when tracing is off) creates its UDP emitter socket at
    import time, and urllib3 probes IPv6 with a socket. Test suites that turn sockets off (pytest-socket) import
    the runtime while collecting, before sockets are off; without this a handler's first import of them, inside
    a test, fails with SocketBlockedError.
    """
    for name in ("urllib3", "aws_xray_sdk.core"):
        try:
            importlib.import_module(name)
        except Exception:  # not installed, or no sockets at all: the handler will say so itself
            log.debug("could not import %s up front", name, exc_info=True)


_import_socket_openers()

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CODE_ROOT = REPO_ROOT / "functions"

# Variables every invocation sees. Set once at start(), before any boto3 client exists.
BASE_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    # botocore >= 1.44 sends DynamoDB Streams calls to an account endpoint that moto 5.2.5 does not route.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
}
# Retrying a poison record quickly more often than this, with infinite retries configured, only spins.
INFINITE_RETRY_LIMIT = 20
BLOCKED_RETRY_SECONDS = 60.0


class Runtime:
    """Everything of one template, running in this process. Only one Runtime can run at a time."""

    def __init__(
        self,
        template: Mapping[str, Any],
        code_root: Path | str | None = None,
        *,
        stack_name: str = "Orderflow",
        region: str = "us-east-1",
        parameters: Mapping[str, Any] | None = None,
        fast: bool = True,
        enforce_timeouts: bool = True,
    ) -> None:
        """A runtime for ``template`` (a CloudFormation template dict); handler strings are relative to ``code_root``.

        ``stack_name`` prefixes physical names and is ``AWS::StackName``; ``parameters`` override parameter
        defaults (SSM-typed parameters otherwise resolve to a placeholder); ``fast``: ASL Wait states, Retry
        intervals and retry back-offs take no time (tests; serve mode turns it off); ``enforce_timeouts``: an
        invocation that overruns the function's Timeout fails with ``Sandbox.Timedout`` (after it ran: nothing
        can stop a thread).
        """
        self.template = Template(template, stack_name=stack_name, region=region, account_id=DEFAULT_ACCOUNT_ID,
                                 parameters=parameters)
        self.code_root = Path(code_root).resolve() if code_root is not None else DEFAULT_CODE_ROOT
        self.region = region
        self.account_id = DEFAULT_ACCOUNT_ID
        self.stack_name = stack_name
        self.fast = fast
        self.enforce_timeouts = enforce_timeouts
        self.resources: dict[str, Any] = {}
        self.skipped: dict[str, list[str]] = {}
        self.environment: dict[str, str] = {}
        self.outputs: dict[str, Any] = {}
        self.apis: dict[str, Any] = {}
        self._api: Any = None
        self._started = False
        self._mock: Any = None
        self._patcher: Any = None
        self._saved_environ: dict[str, str | None] = {}
        self._added_sys_path = False
        self._modules_before: set[str] = set()
        self._stashed_modules: dict[str, Any] = {}
        self._pump_lock = threading.RLock()
        self._stream_pollers: dict[str, Any] = {}
        self._sqs_pollers: dict[str, Any] = {}
        self.lambdas: Any = None
        self.events: Any = None
        from offline.observe import Observers

        self.observers = Observers()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> Runtime:
        if self._started:
            return self
        patches.claim(self)
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        from moto import mock_aws

        from offline.deploy import Deployer
        from offline.eventbridge import EventBridgeTargets
        from offline.gateway import build_gateways
        from offline.lambdas import InProcessLambdas
        from offline.patches import Patcher, isolate_powertools_metrics, serialize_dynamodb
        from offline.stepfunctions import emulate_workflow_types, make_fast

        self._set_environ({**BASE_ENVIRONMENT, "AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region})
        self._mock = mock_aws(config={"stepfunctions": {"execute_state_machine": True}})
        self._mock.start()
        self._patcher = Patcher()
        self.observers.install(self._patcher)  # before any boto3 session exists: sessions read the handlers once
        serialize_dynamodb(self._patcher)
        isolate_powertools_metrics(self._patcher)
        self.lambdas = InProcessLambdas(account_id=self.account_id, region=self.region,
                                        enforce_timeouts=self.enforce_timeouts, retry_delay=self._retry_delay,
                                        observers=self.observers)
        self.lambdas.install(self._patcher)
        self.events = EventBridgeTargets(lambdas=self.lambdas, retry_delay=self._retry_delay)
        self.events.install(self._patcher)
        emulate_workflow_types(self._patcher)  # Express: no name dedupe, no history API; logs for both types
        if self.fast:
            make_fast(self._patcher)
        self._add_code_root()

        deployer = Deployer(self.template, lambdas=self.lambdas)
        deployer.deploy()
        self.resources = {lid: item for lid, item in deployer.resources.items() if item.created}
        self.skipped = deployer.skipped
        self.environment = self._union_environment(deployer.function_environments)
        self._set_environ({**self.environment, **self._shared_lambda_variables()})
        self.outputs = self._outputs(deployer)
        self.apis = build_gateways(deployer.api_parts, deployer.resources, lambdas=self.lambdas,
                                   account_id=self.account_id, region=self.region)
        self._discover_mappings()
        log.info("offline runtime started: %d resources created, %d types not emulated", len(self.resources),
                 len(self.skipped))

    def stop(self) -> None:
        """Undo everything start() did (idempotent)."""
        if not self._started:
            return
        self._started = False
        try:
            if self._patcher is not None:
                self._patcher.undo()
            if self._mock is not None:
                self._mock.stop()
        finally:
            self._patcher = self._mock = None
            self._remove_code_root()
            self._restore_environ()
            self._stream_pollers.clear()
            self._sqs_pollers.clear()
            patches.release(self)

    def observe(self, observer: Any) -> Any:
        """Register an observer of invocations and of the handlers' AWS calls (see offline/observe.py)."""
        self.observers.add(observer)
        return observer

    # ------------------------------------------------------------------ what is running
    @property
    def api(self) -> Any:
        """The REST API (the only one, or the first of several: see ``apis``)."""
        if not self.apis:
            raise OfflineError("the template has no AWS::ApiGateway::RestApi")
        return next(iter(self.apis.values()))

    def physical(self, logical_id_prefix: str) -> Any:
        """The one created resource whose logical id starts with the prefix.

        An exact logical id wins, then the logical id without CDK's hash suffix (``OrdersTable`` is
        ``OrdersTable1F8332C7``, not ``OrdersTableReplica...``).
        """
        from offline.deploy import readable_name

        if logical_id_prefix in self.resources:
            return self.resources[logical_id_prefix]
        found = [item for lid, item in self.resources.items() if lid.startswith(logical_id_prefix)]
        if not found:
            raise KeyError(f"no resource's logical id starts with {logical_id_prefix!r}")
        for narrowed in ([item for item in found if readable_name(item.logical_id) == logical_id_prefix], found):
            if len(narrowed) == 1:
                return narrowed[0]
        names = ", ".join(item.logical_id for item in found)
        raise KeyError(f"{logical_id_prefix!r} is ambiguous: {names}")

    # ------------------------------------------------------------------ pumping
    def pump(self) -> bool:
        """One pass over every source of work; True if anything happened."""
        self._require_started()
        with self._pump_lock:
            self._discover_mappings()
            progressed = self.events.pump()
            progressed = self.lambdas.pump() or progressed
            for poller in list(self._stream_pollers.values()):
                progressed = poller.pump() or progressed
            for poller in list(self._sqs_pollers.values()):
                progressed = poller.pump() or progressed
            return progressed

    def settle(self, timeout: float = 30) -> None:
        """Pump until nothing is left to do and no Step Functions execution is RUNNING.

        Work scheduled for later (a back-off in serve mode, a blocked shard) does not count as left to do.
        """
        from offline.stepfunctions import running_executions

        self._require_started()
        deadline = time.monotonic() + timeout
        while True:
            if not self.pump():
                if not running_executions(self.account_id, self.region):
                    # An execution may have finished (and put events, started work) between the two looks.
                    if not self.pump():
                        return
                else:
                    time.sleep(0.005)
            if time.monotonic() > deadline:
                running = running_executions(self.account_id, self.region)
                raise NotSettledError(
                    f"not settled after {timeout} s: {len(running)} execution(s) running "
                    f"({', '.join(execution.exec_arn for execution in running[:5])}), "
                    f"{self.lambdas.pending()} async invocation(s) and {self.events.pending()} EventBridge "
                    "deliveries pending")

    # ------------------------------------------------------------------ internals
    def _require_started(self) -> None:
        if not self._started:
            raise OfflineError("the runtime is not started")

    def _retry_delay(self, attempt: int) -> float:
        return 0.0 if self.fast else min(0.5 * 2 ** (attempt - 1), 10.0)

    def _discover_mappings(self) -> None:
        """Pollers for the event source mappings in moto (from the template, or created later through the API)."""
        from offline.pollers import SqsPoller, StreamPoller

        mappings = self.lambdas.backend._event_source_mappings
        for uuid, mapping in list(mappings.items()):
            service = mapping.event_source_arn.split(":")[2]
            if service == "dynamodb" and uuid not in self._stream_pollers:
                self._stream_pollers[uuid] = StreamPoller(
                    mapping_uuid=uuid, lambdas=self.lambdas, retry_delay=self._retry_delay,
                    infinite_retry_limit=INFINITE_RETRY_LIMIT, blocked_retry_seconds=BLOCKED_RETRY_SECONDS)
            elif service == "sqs" and uuid not in self._sqs_pollers:
                self._sqs_pollers[uuid] = SqsPoller(mapping_uuid=uuid, lambdas=self.lambdas,
                                                    infinite_retry_limit=INFINITE_RETRY_LIMIT)
            elif service not in ("dynamodb", "sqs") and uuid not in self._stream_pollers:
                log.warning("event source mapping %s reads %s, which is not polled offline", uuid, service)
                self._stream_pollers[uuid] = _Inert()
        for pollers in (self._stream_pollers, self._sqs_pollers):
            for uuid in [uuid for uuid in pollers if uuid not in mappings]:
                del pollers[uuid]

    def _union_environment(self, environments: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
        union: dict[str, str] = {}
        owner: dict[str, str] = {}
        for logical_id, variables in environments.items():
            for key, value in variables.items():
                if key in union and union[key] != value:
                    raise EnvironmentConflictError(
                        f"environment variable {key} is {union[key]!r} in {owner[key]} but {value!r} in "
                        f"{logical_id}: every function runs in one process with one environment offline, so a "
                        "variable must have the same value in every function that sets it (or use another name)")
                union[key] = value
                owner.setdefault(key, logical_id)
        return union

    def _shared_lambda_variables(self) -> dict[str, str]:
        """Lambda's own variables, but only those with the same value for every function."""
        functions = [item for item in self.resources.values() if item.type == "AWS::Lambda::Function"]
        if not functions:
            return {}
        configs = [self.lambdas.backend.get_function(item.arn, None) for item in functions]
        shared: dict[str, str] = {}
        memory = {str(config.memory_size) for config in configs}
        if len(memory) == 1:
            shared["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = memory.pop()
        runtimes = {str(config.run_time) for config in configs}
        if len(runtimes) == 1:
            shared["AWS_EXECUTION_ENV"] = f"AWS_Lambda_{runtimes.pop()}"
        return shared

    def _outputs(self, deployer: Any) -> dict[str, Any]:
        outputs = {}
        for name, output in self.template.outputs.items():
            try:
                outputs[name] = self.template.resolve(output.get("Value"), deployer)
            except OfflineError as error:
                log.debug("output %s not resolved offline: %s", name, error)
        return outputs

    def _set_environ(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            if key not in self._saved_environ:
                self._saved_environ[key] = os.environ.get(key)
            os.environ[key] = value

    def _restore_environ(self) -> None:
        for key, value in self._saved_environ.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_environ.clear()

    def _add_code_root(self) -> None:
        root = str(self.code_root)
        # A new runtime is a new deployment: every function starts cold. Modules from the code root that are
        # already imported (say, by unit tests, with another environment) are put aside for the runtime's
        # lifetime and put back at stop(), so whoever holds them keeps consistent objects.
        self._stashed_modules = {name: module for name, module in sys.modules.items() if _is_under(module, root)}
        for name in self._stashed_modules:
            del sys.modules[name]
        self._modules_before = set(sys.modules)
        if root not in sys.path:
            sys.path.insert(0, root)
            self._added_sys_path = True

    def _remove_code_root(self) -> None:
        """Forget the handler modules this runtime imported first, so the next runtime starts them cold.

        A new runtime is a new deployment: module-level state (settings read from the environment at import,
        cached clients, caches) must not leak from one to the next, and tests write tiny handler modules with the
        same names into different folders. The modules put aside at start() come back.
        """
        root = str(self.code_root)
        if self._added_sys_path and root in sys.path:
            sys.path.remove(root)
        self._added_sys_path = False
        for name in set(sys.modules) - self._modules_before:
            if _is_under(sys.modules.get(name), root):
                del sys.modules[name]
        sys.modules.update(self._stashed_modules)
        self._stashed_modules = {}
        self._modules_before = set()


def _is_under(module: Any, root: str) -> bool:
    module_file = getattr(module, "__file__", None) or ""
    return module_file.startswith(root + os.sep)


class _Inert:
    def pump(self) -> bool:
        return False
