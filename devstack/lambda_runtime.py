"""Runs Lambda handlers in-process: per-function environment, context object, timeout.

Each function sees exactly the environment the template gives it: ``os.environ``
is replaced by a mapping that layers the invocation's variables (held in a
context variable) over the process environment, so concurrent invocations of
different functions do not see each other's variables.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import contextvars
import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from devstack.template import Function, Template

log = logging.getLogger("devstack")

_overlay: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "lambda_env", default=None)


class LayeredEnviron(MutableMapping[str, str]):
    """``os.environ`` replacement: the current invocation's variables over the process's."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self.base = base

    def __getitem__(self, key: str) -> str:
        layer = _overlay.get()
        if layer is not None and key in layer:
            return layer[key]
        return self.base[key]

    def __setitem__(self, key: str, value: str) -> None:
        layer = _overlay.get()
        if layer is not None:
            layer[key] = value
        else:
            self.base[key] = value

    def __delitem__(self, key: str) -> None:
        layer = _overlay.get()
        if layer is not None and key in layer:
            del layer[key]
        else:
            del self.base[key]

    def __iter__(self) -> Iterator[str]:
        layer = _overlay.get() or {}
        yield from layer
        yield from (k for k in self.base if k not in layer)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)


def install_layered_environ() -> None:
    if not isinstance(os.environ, LayeredEnviron):
        os.environ = LayeredEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int
    aws_request_id: str
    deadline: float
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class FunctionTimeout(Exception):
    pass


class LambdaRuntime:
    """Loads each function once (a warm container) and invokes it on a worker thread."""

    def __init__(self, template: Template, env_overrides: dict[str, str],
                 max_workers: int = 64) -> None:
        install_layered_environ()
        self.template = template
        self.env_overrides = env_overrides
        for layer in template.layer_dirs():
            if str(layer) not in sys.path:
                sys.path.insert(0, str(layer))
        self._handlers: dict[str, Callable[[Any, Any], Any]] = {}
        self._load_lock = threading.Lock()
        # Powertools keeps the current event on a class attribute shared by every resolver of
        # the process (BaseRouter.current_event) and per-request context on the app: two HTTP
        # invocations overlapping in one process see each other's event. Lambda runs one event
        # per container, so HTTP functions run one at a time here (until each function has its
        # own worker process); S3, schedule and async handlers keep running alongside.
        self._http_functions = {route.function for route in template.routes}
        self._http_lock = threading.Lock()
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers, thread_name_prefix="lambda")

    def environment(self, fn: Function) -> dict[str, str]:
        env = {**fn.environment, **self.env_overrides}
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(fn.timeout),
        })
        return env

    def _handler(self, fn: Function) -> Callable[[Any, Any], Any]:
        with self._load_lock:
            if fn.logical_id not in self._handlers:
                module_name, _, attr = fn.handler.rpartition(".")
                path = fn.code_dir / (module_name.replace(".", "/") + ".py")
                spec = importlib.util.spec_from_file_location(f"lambda_{fn.logical_id}", path)
                if spec is None or spec.loader is None:
                    raise RuntimeError(f"cannot load {path}")
                module: ModuleType = importlib.util.module_from_spec(spec)
                token = _overlay.set(self.environment(fn))
                try:
                    spec.loader.exec_module(module)
                finally:
                    _overlay.reset(token)
                self._handlers[fn.logical_id] = getattr(module, attr)
            return self._handlers[fn.logical_id]

    def _run(self, fn: Function, event: Any, request_id: str, timeout: float) -> Any:
        handler = self._handler(fn)
        context = LambdaContext(function_name=fn.logical_id, memory_limit_in_mb=fn.memory,
                                aws_request_id=request_id, deadline=time.monotonic() + timeout)
        serial = self._http_lock if fn.logical_id in self._http_functions else contextlib.nullcontext()
        with serial:
            token = _overlay.set(self.environment(fn))
            try:
                return handler(event, context)
            finally:
                _overlay.reset(token)

    def invoke(self, function_id: str, event: Any, *, timeout: float | None = None,
               request_id: str | None = None) -> Any:
        """Synchronous invoke; raises FunctionTimeout, or what the handler raised."""
        fn = self.template.functions[function_id]
        limit = float(fn.timeout if timeout is None else min(timeout, fn.timeout))
        future = self._pool.submit(self._run, fn, event, request_id or str(uuid.uuid4()), limit)
        try:
            return future.result(timeout=limit)
        except concurrent.futures.TimeoutError as exc:
            # A thread cannot be killed: it finishes in the background, its result dropped.
            raise FunctionTimeout(f"{function_id} timed out after {limit:.0f}s") from exc

    def invoke_async(self, function_id: str, event: Any, *, retries: int = 2) -> None:
        """Like InvocationType=Event: queued, retried twice on error, errors logged."""
        def attempt() -> None:
            for n in range(retries + 1):
                try:
                    self.invoke(function_id, event)
                    return
                except Exception:
                    log.exception("async invoke of %s failed (attempt %d)", function_id, n + 1)
                    time.sleep(min(2 ** n, 5))
        threading.Thread(target=attempt, daemon=True, name=f"async-{function_id}").start()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
