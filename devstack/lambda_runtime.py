"""Lambda execution environments on this machine: a worker process per environment.

Each function runs in worker processes of its own, each started with awslambdaric (the
AWS runtime interface client, the code that loads and calls Python handlers in Lambda)
against a Runtime API served for that environment (``devstack/runtime_api.py``), with
exactly the environment the template gives the function plus what Lambda sets. One
event at a time per environment, as in Lambda:

- warm environments are reused; a request to a busy function starts another one, up to
  the function's ``ReservedConcurrentExecutions`` (else ``IMAGEREPO_LAMBDA_CONCURRENCY``,
  default 32), beyond which the caller is throttled (:class:`Throttled`, 429);
- idle environments are reaped after ``IMAGEREPO_LAMBDA_IDLE_SECONDS`` (default 300);
- a worker that dies during an invocation (segfault, ``os._exit``, out of memory) fails
  it as ``Runtime.ExitError`` and the next request gets a fresh environment;
- ``Timeout`` is enforced by killing the worker; ``MemorySize`` is the worker's
  ``RLIMIT_DATA`` (a ``MemoryError`` ends the environment like Lambda's OOM kill);
- every invocation ends with Lambda's ``REPORT`` log line (duration, billed duration,
  memory size, max memory used = peak RSS, init duration on a cold start).

Workers are forked from a fork server that preloads third-party packages only
(``devstack/forkserver.py``); ``IMAGEREPO_LAMBDA_FORKSERVER=0`` starts every worker as a
fresh ``python -m awslambdaric`` instead.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import secrets
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devstack.forkserver import _die_with_parent, set_memory_limit
from devstack.runtime_api import RuntimeApiServer
from devstack.template import Function, Template

log = logging.getLogger("devstack.lambda")

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
REGION = "us-east-1"
INIT_TIMEOUT = 10.0  # Lambda's limit on the init phase of an on-demand environment
DEFAULT_CONCURRENCY = 32
DEFAULT_MAX_WORKERS = 160
DEFAULT_IDLE_SECONDS = 300.0


def _env_number(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


def function_logger(function: str) -> logging.Logger:
    return logging.getLogger(f"lambda.{function}")


class FunctionError(Exception):
    """An invocation did not return: the handler raised, the worker died, or it timed out."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        error = invocation.error or {}
        super().__init__(f"{invocation.function.logical_id} {invocation.outcome}: "
                         f"{error.get('errorType')}: {error.get('errorMessage')}")


class FunctionTimeout(FunctionError):
    pass


class Throttled(Exception):
    """No environment is free and the function is at its concurrency limit (Lambda's 429)."""


class Invocation:
    def __init__(self, function: Function, payload: bytes, timeout: float,
                 request_id: str | None = None) -> None:
        self.function = function
        self.payload = payload
        self.timeout = timeout
        self.request_id = request_id or str(uuid.uuid4())
        self.done = threading.Event()
        self._claim = threading.Lock()
        self.outcome = ""  # ok | error | crash | timeout
        self.result = b""
        self.error: dict[str, Any] | None = None
        self.started = 0.0
        self.deadline = math.inf
        self.deadline_ms = 0
        self.duration_ms = 0.0

    def runtime_headers(self) -> dict[str, str]:
        now = int(time.time())
        return {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_ms),
            "Lambda-Runtime-Invoked-Function-Arn": function_arn(self.function.logical_id),
            "Lambda-Runtime-Trace-Id": f"Root=1-{now:08x}-{secrets.token_hex(12)};"
                                       f"Parent={secrets.token_hex(8)};Sampled=0",
        }

    def value(self) -> Any:
        return json.loads(self.result) if self.result else None

    def finish(self, outcome: str, *, result: bytes = b"", error: dict[str, Any] | None = None) -> bool:
        """Record the outcome (once: False if it was already decided). The caller logs the
        REPORT line, then :meth:`release` wakes whoever waits for it."""
        with self._claim:
            if self.outcome:
                return False
            self.outcome, self.result, self.error = outcome, result, error
        self.duration_ms = (time.monotonic() - self.started) * 1000 if self.started else 0.0
        return True

    def release(self) -> None:
        self.done.set()


def function_arn(name: str) -> str:
    return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}"


class ForkServer:
    """Client side of devstack/forkserver.py."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "TZ": ":UTC",
               "PYTHONPATH": str(ROOT), "DEVSTACK_ROOT": str(ROOT),
               "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
               "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand"}
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "devstack.forkserver", str(theirs.fileno())],
                env=env, cwd="/", pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent, start_new_session=True)
        self.sock = ours
        self._lock = threading.Lock()
        self._next_id = 0
        self._replies: dict[int, int] = {}
        self._exits: dict[int, int] = {}
        self._cond = threading.Condition()
        ready = json.loads(self.sock.recv(1 << 16) or b"{}")
        if "ready" not in ready:
            raise RuntimeError("the Lambda fork server did not start")
        self._reader = threading.Thread(target=self._read, name="forkserver", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(1 << 16)
            except OSError:
                msg = b""
            if not msg:
                with self._cond:
                    self._exits[-1] = -1
                    self._cond.notify_all()
                return
            data = json.loads(msg)
            with self._cond:
                if "exit" in data:
                    self._exits[int(data["exit"])] = int(data["status"])
                else:
                    self._replies[int(data["id"])] = int(data["pid"])
                self._cond.notify_all()

    def spawn(self, *, handler: str, env: dict[str, str], cwd: str, path: list[str],
              memory: int, out_fd: int) -> int:
        with self._lock:
            self._next_id += 1
            rid = self._next_id
            request = {"id": rid, "handler": handler, "env": env, "cwd": cwd, "path": path,
                       "memory": memory}
            socket.send_fds(self.sock, [json.dumps(request).encode()], [out_fd])
        with self._cond:
            if not self._cond.wait_for(lambda: rid in self._replies or -1 in self._exits, 30):
                raise RuntimeError("the Lambda fork server did not answer")
            if rid not in self._replies:
                raise RuntimeError("the Lambda fork server is gone")
            return self._replies.pop(rid)

    def exit_status(self, pid: int, timeout: float = 2.0) -> int | None:
        with self._cond:
            self._cond.wait_for(lambda: pid in self._exits or -1 in self._exits, timeout)
            return self._exits.pop(pid, None)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.proc.kill()
        self.proc.wait()


def describe_exit(status: int | None) -> str:
    if status is None:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status))
        name = {signal.SIGSEGV: "segmentation fault", signal.SIGKILL: "killed",
                signal.SIGABRT: "aborted", signal.SIGBUS: "bus error"}.get(sig, sig.name)
        return f"signal: {name}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class Environment:
    """One execution environment: its Runtime API, its worker process, one event at a time."""

    def __init__(self, runtime: LambdaRuntime, function: Function, environ: dict[str, str]) -> None:
        self.runtime = runtime
        self.function = function
        self.environ = environ
        self.id = secrets.token_hex(16)
        self.log = function_logger(function.logical_id)
        self.cond = threading.Condition(runtime.lock)  # one lock for the runtime's whole state
        self.pending: Invocation | None = None
        self.current: Invocation | None = None
        self.initialized = False
        self.stopping = ""  # why the environment is being ended
        self.dead = False
        self.pid: int | None = None
        self.init_ms: float | None = None
        self.init_error: dict[str, Any] | None = None
        self.cold = True
        self.spawned = time.monotonic()
        self.last_used = time.monotonic()
        self.max_rss_mb = 0
        self._kill: Callable[[], None] = lambda: None
        self._wake_r, self._wake_w = os.pipe()
        self.api = RuntimeApiServer(self)
        self.thread = threading.Thread(target=self._supervise, daemon=True,
                                       name=f"env-{function.logical_id}-{self.id[:6]}")

    # -- state (called with runtime.lock held) ------------------------------------
    @property
    def available(self) -> bool:
        return not (self.dead or self.stopping or self.pending or self.current)

    def assign(self, invocation: Invocation) -> None:
        self.pending = invocation
        self.last_used = time.monotonic()
        self.cond.notify_all()

    def stop(self, reason: str) -> None:
        """End the environment (its supervisor reports what was in flight)."""
        if not self.stopping:
            self.stopping = reason
        self.cond.notify_all()
        self._kill()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- Runtime API callbacks ---------------------------------------------------
    def next_invocation(self) -> Invocation | None:
        with self.cond:
            if not self.initialized:
                self.initialized = True
                self.init_ms = (time.monotonic() - self.spawned) * 1000
                self._wake()
            while self.pending is None and not (self.stopping or self.dead):
                self.cond.wait()
            if self.pending is None:
                return None
            invocation, self.pending = self.pending, None
            self.current = invocation
            invocation.started = time.monotonic()
            invocation.deadline = invocation.started + invocation.timeout
            invocation.deadline_ms = int((time.time() + invocation.timeout) * 1000)
        self.log.debug("START RequestId: %s Version: $LATEST", invocation.request_id)
        self._wake()  # the supervisor watches the new deadline
        return invocation

    def _take_current(self, request_id: str) -> Invocation | None:
        with self.cond:
            invocation = self.current
            if invocation is None or invocation.request_id != request_id:
                return None
            self.current = None
            self.last_used = time.monotonic()
            return invocation

    def invocation_response(self, request_id: str, body: bytes) -> bool:
        invocation = self._take_current(request_id)
        if invocation is None:
            return False
        if invocation.finish("ok", result=body):
            self.report(invocation)
        return True

    def invocation_error(self, request_id: str, error: dict[str, Any]) -> bool:
        if error.get("errorType") == "MemoryError":
            # Lambda ends an environment that ran out of memory; the caller sees a runtime error.
            with self.cond:
                invocation = self.current
                if invocation is None or invocation.request_id != request_id:
                    return False
                self.stop("out of memory")
            return True
        invocation = self._take_current(request_id)
        if invocation is None:
            return False
        if invocation.finish("error", error=error):
            self.report(invocation, status="error", error_type=str(error.get("errorType")))
        return True

    def init_failed(self, error: dict[str, Any]) -> None:
        with self.cond:
            self.init_error = error
        self.log.error("INIT_REPORT Init Duration: %.2f ms Phase: init Status: error Error Type: %s",
                       (time.monotonic() - self.spawned) * 1000, error.get("errorType"))

    # -- logging -------------------------------------------------------------------
    def _read_rss(self) -> None:
        if self.pid is None:
            return
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.max_rss_mb = max(self.max_rss_mb, math.ceil(int(line.split()[1]) / 1024))

    def report(self, invocation: Invocation, *, status: str = "", error_type: str = "") -> None:
        self._read_rss()
        parts = [f"REPORT RequestId: {invocation.request_id}",
                 f"Duration: {invocation.duration_ms:.2f} ms",
                 f"Billed Duration: {math.ceil(invocation.duration_ms)} ms",
                 f"Memory Size: {self.function.memory} MB",
                 f"Max Memory Used: {self.max_rss_mb} MB"]
        if self.cold and self.init_ms is not None:
            parts.append(f"Init Duration: {self.init_ms:.2f} ms")
            self.runtime.cold_starts.append((self.function.logical_id, self.init_ms))
        if status:
            parts.append(f"Status: {status}")
        if error_type:
            parts.append(f"Error Type: {error_type}")
        self.cold = False
        self.log.debug("END RequestId: %s", invocation.request_id)
        self.log.info("\t".join(parts))
        invocation.release()

    # -- the worker ----------------------------------------------------------------
    def worker_environment(self) -> dict[str, str]:
        now = dt.datetime.now(dt.UTC)
        return {**self.environ,
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "AWS_LAMBDA_LOG_STREAM_NAME": f"{now:%Y/%m/%d}/[$LATEST]{self.id}"}

    def _spawn(self, out_w: int) -> None:
        fn = self.function
        env = self.worker_environment()
        forkserver = self.runtime.forkserver
        if forkserver is not None:
            self.pid = forkserver.spawn(handler=fn.handler, env=env, cwd=str(fn.code_dir),
                                        path=self.runtime.worker_path(fn), memory=fn.memory,
                                        out_fd=out_w)
            pidfd = os.pidfd_open(self.pid)

            def kill() -> None:
                with contextlib.suppress(OSError):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)

            self._pidfd = pidfd
            self._kill = kill
            return

        def prepare() -> None:
            _die_with_parent()
            set_memory_limit(fn.memory)

        proc = subprocess.Popen(  # from this thread, which lives as long as the worker
            [sys.executable, "-m", "awslambdaric", fn.handler], cwd=fn.code_dir, env=env,
            stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, preexec_fn=prepare)
        self.pid = proc.pid
        self._proc = proc
        self._kill = proc.kill

    def _exit_status(self) -> int | None:
        if self.runtime.forkserver is not None and self.pid is not None:
            status = self.runtime.forkserver.exit_status(self.pid)
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            return status
        proc: subprocess.Popen[bytes] = self._proc
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        return None if proc.returncode is None else (
            (-proc.returncode) if proc.returncode < 0 else proc.returncode << 8)

    def start(self) -> None:
        self.api.start()
        self.thread.start()

    def _supervise(self) -> None:
        out_r, out_w = os.pipe()
        try:
            try:
                self._spawn(out_w)
            finally:
                os.close(out_w)
            with self.cond:
                if self.stopping:
                    self._kill()
            self._watch(out_r)
        except Exception as exc:  # the environment fails, the caller is told
            self.log.exception("could not run an environment of %s", self.function.logical_id)
            self.init_error = {"errorType": "Runtime.Unknown", "errorMessage": str(exc)}
            self._kill()
        finally:
            os.close(out_r)
            status = self._exit_status() if self.pid is not None else None
            self._ended(status)

    def _watch(self, out_r: int) -> None:
        pending = b""
        while True:
            with self.cond:
                invocation = self.current
                limit = invocation.deadline if invocation else (
                    self.spawned + INIT_TIMEOUT + self.function.timeout
                    if not self.initialized else math.inf)
            wait = None if limit == math.inf else max(0.0, limit - time.monotonic())
            readable, _, _ = select.select([out_r, self._wake_r], [], [], wait)
            if self._wake_r in readable:
                os.read(self._wake_r, 4096)
            if out_r in readable:
                data = os.read(out_r, 65536)
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self.log.info("%s", line.decode(errors="replace").replace("\r", "\n    ").rstrip())
            if time.monotonic() >= limit:
                self._timed_out(invocation)
        if pending:
            self.log.info("%s", pending.decode(errors="replace").rstrip())

    def _timed_out(self, invocation: Invocation | None) -> None:
        with self.cond:
            if invocation is None:
                if self.initialized or self.stopping:
                    return
                self.init_error = {"errorType": "Runtime.InitTimeout",
                                   "errorMessage": "INIT timed out"}
                self.stop("init timeout")
                return
            if invocation is not self.current:
                return
            self.current = None
            self.stop("timeout")
        stamp = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        message = f"{stamp} {invocation.request_id} Task timed out after {invocation.timeout:.2f} seconds"
        self.log.info("%s", message)
        if invocation.finish("timeout", error={"errorType": "Sandbox.Timedout", "errorMessage": message}):
            self.report(invocation, status="timeout")

    def _ended(self, status: int | None) -> None:
        with self.cond:
            self.dead = True
            reason = self.stopping
            in_flight = [i for i in (self.current, self.pending) if i is not None]
            self.current = self.pending = None
            self.cond.notify_all()
            self.runtime.forget(self)
        self.api.stop()
        with contextlib.suppress(OSError):
            os.close(self._wake_r)
            os.close(self._wake_w)
        for invocation in in_flight:
            if self.init_error is not None and not self.initialized:
                error = dict(self.init_error)
                outcome = "error"
            elif reason == "out of memory":
                error = {"errorType": "Runtime.OutOfMemory",
                         "errorMessage": f"RequestId: {invocation.request_id} Error: Runtime exited "
                                         f"with error: out of memory ({self.function.memory} MB)"}
                outcome = "crash"
            else:
                error = {"errorType": "Runtime.ExitError",
                         "errorMessage": f"RequestId: {invocation.request_id} Error: Runtime exited "
                                         f"with error: {describe_exit(status)}"}
                outcome = "crash"
            if invocation.finish(outcome, error=error):
                self.log.error("%s\n    %s", error["errorMessage"], error["errorType"])
                self.report(invocation, status="error", error_type=str(error["errorType"]))
        if reason not in ("", "timeout", "out of memory", "idle", "stopped", "configuration changed"):
            self.log.info("environment ended: %s", reason)


class LambdaRuntime:
    """The execution environments of every function of a template."""

    def __init__(self, template: Template, env_overrides: dict[str, str], *,
                 forkserver: bool | ForkServer | None = None, concurrency: int | None = None,
                 max_workers: int | None = None, idle_seconds: float | None = None) -> None:
        self.template = template
        self.env_overrides = env_overrides
        self.lock = threading.RLock()
        self.concurrency = concurrency or int(_env_number("IMAGEREPO_LAMBDA_CONCURRENCY",
                                                          DEFAULT_CONCURRENCY))
        self.max_workers = max_workers or int(_env_number("IMAGEREPO_LAMBDA_MAX_WORKERS",
                                                          DEFAULT_MAX_WORKERS))
        self.idle_seconds = idle_seconds if idle_seconds is not None else _env_number(
            "IMAGEREPO_LAMBDA_IDLE_SECONDS", DEFAULT_IDLE_SECONDS)
        self.environments: dict[str, list[Environment]] = {}
        self.cold_starts: list[tuple[str, float]] = []
        self.throttles = 0
        self._async: list[threading.Thread] = []
        self._stopped = threading.Event()
        if forkserver is None:
            forkserver = os.environ.get("IMAGEREPO_LAMBDA_FORKSERVER", "1") != "0"
        # Started from this (long-lived) thread: it dies with it. One given is shared, not owned.
        self._own_forkserver = forkserver is True
        self.forkserver = ForkServer() if forkserver is True else forkserver or None
        self._reaper = threading.Thread(target=self._reap, name="lambda-reaper", daemon=True)
        self._reaper.start()

    # -- configuration -------------------------------------------------------------
    def environment(self, fn: Function) -> dict[str, str]:
        """What the worker's os.environ is (less the per-environment Runtime API address)."""
        layers = [str(p) for p in self.template.layer_dirs()]
        env = {**fn.environment, **self.env_overrides}
        env.setdefault("AWS_REGION", REGION)
        env.setdefault("AWS_DEFAULT_REGION", env["AWS_REGION"])
        env.update({
            "AWS_LAMBDA_FUNCTION_NAME": fn.logical_id,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fn.memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fn.logical_id}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{fn.runtime}",
            "AWS_SAM_LOCAL": "true",  # as `sam local` sets it (Powertools then skips X-Ray)
            # No developer's ~/.aws: Lambda has none.
            "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "LAMBDA_TASK_ROOT": str(fn.code_dir),
            "LAMBDA_RUNTIME_DIR": str(Path(sys.executable).parent),
            "_HANDLER": fn.handler,
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "PYTHONPATH": ":".join([str(fn.code_dir), *layers]),
            "LANG": "C.UTF-8",
            "TZ": ":UTC",
        })
        return env

    def worker_path(self, fn: Function) -> list[str]:
        return [str(fn.code_dir), *[str(p) for p in self.template.layer_dirs()]]

    def limit(self, fn: Function) -> int:
        return fn.reserved_concurrency if fn.reserved_concurrency is not None else self.concurrency

    # -- invoking ------------------------------------------------------------------
    def start(self, function_id: str, event: Any, *, timeout: float | None = None,
              request_id: str | None = None) -> Invocation:
        """Hand the event to a free environment (a new one if needed); raises Throttled."""
        fn = self.template.functions[function_id]
        payload = event if isinstance(event, bytes) else json.dumps(event).encode()
        limit = float(fn.timeout if timeout is None else min(timeout, fn.timeout))
        invocation = Invocation(fn, payload, limit, request_id)
        environ = self.environment(fn)
        with self.lock:
            if self._stopped.is_set():
                raise Throttled("the runtime is stopped")
            envs = self.environments.setdefault(fn.logical_id, [])
            for env in envs:
                if env.available and env.environ != environ:
                    env.stop("configuration changed")  # like a new function version
            free = [e for e in envs if e.available]
            if free:
                env = max(free, key=lambda e: e.last_used)
                env.assign(invocation)
                return invocation
            live = [e for e in envs if not e.stopping]
            if len(live) >= self.limit(fn) or not self._make_room():
                self.throttles += 1
                raise Throttled(f"{function_id}: concurrency limit {self.limit(fn)} reached")
            env = Environment(self, fn, environ)
            envs.append(env)
            env.assign(invocation)
        env.start()
        return invocation

    def _make_room(self) -> bool:
        live = [e for envs in self.environments.values() for e in envs if not e.stopping]
        if len(live) < self.max_workers:
            return True
        idle = [e for e in live if e.available]
        if not idle:
            return False
        min(idle, key=lambda e: e.last_used).stop("idle")
        return True

    def invoke(self, function_id: str, event: Any, *, timeout: float | None = None,
               request_id: str | None = None) -> Any:
        """Synchronous invoke: the function's result, or FunctionError / Throttled."""
        invocation = self.start(function_id, event, timeout=timeout, request_id=request_id)
        invocation.done.wait()
        if invocation.outcome == "ok":
            return invocation.value()
        if invocation.outcome == "timeout":
            raise FunctionTimeout(invocation)
        raise FunctionError(invocation)

    def invoke_async(self, function_id: str, event: Any, *, retries: int = 2) -> None:
        """Like InvocationType=Event: queued, retried twice on a function error, throttles retried."""
        def attempt() -> None:
            errors = 0
            delay = 0.2
            while not self._stopped.is_set():
                try:
                    self.invoke(function_id, event)
                    return
                except Throttled:
                    self._stopped.wait(delay)
                    delay = min(delay * 2, 5.0)
                except FunctionError as exc:
                    errors += 1
                    log.warning("async invoke of %s failed (attempt %d): %s", function_id, errors, exc)
                    if errors > retries:
                        return
                    self._stopped.wait(min(2 ** (errors - 1), 5))
        thread = threading.Thread(target=attempt, daemon=True, name=f"async-{function_id}")
        with self.lock:
            self._async = [t for t in self._async if t.is_alive()] + [thread]
        thread.start()

    def drain(self, timeout: float = 900) -> None:
        """Wait for the asynchronous invocations in flight (and those they start)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                alive = [t for t in self._async if t.is_alive()]
            if not alive:
                return
            alive[0].join(max(0.0, deadline - time.monotonic()))

    # -- bookkeeping ---------------------------------------------------------------
    def forget(self, env: Environment) -> None:
        envs = self.environments.get(env.function.logical_id, [])
        if env in envs:
            envs.remove(env)
        del self.cold_starts[:-1000]

    def workers(self, function_id: str | None = None) -> list[Environment]:
        with self.lock:
            return [e for fid, envs in self.environments.items() for e in envs
                    if function_id in (None, fid) and not e.dead]

    def _reap(self) -> None:
        while not self._stopped.wait(max(0.1, min(1.0, self.idle_seconds / 4))):
            cutoff = time.monotonic() - self.idle_seconds
            with self.lock:
                for envs in self.environments.values():
                    for env in envs:
                        if env.available and env.last_used < cutoff:
                            env.stop("idle")

    def shutdown(self) -> None:
        self._stopped.set()
        with self.lock:
            envs = [e for es in self.environments.values() for e in es]
            for env in envs:
                env.stop("stopped")
        for env in envs:
            env.thread.join(5)
        if self.forkserver is not None and self._own_forkserver:
            self.forkserver.stop()
