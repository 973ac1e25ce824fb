"""``python -m devstack invoke``: the Docker-free ``sam local invoke``.

Runs one function once, in a fresh execution environment (a new ``python -m awslambdaric``
worker) with the template's environment, against the local services: those of a running
``make run`` for the same data folder, else Postgres and S3 started for the call and
stopped after it. The result goes to stdout as JSON, the function's logs to stderr; the
exit status is 0 when the function returned and 1 when it raised (or crashed, or timed out).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from devstack.stack import ROOT, Stack, running_stack

if TYPE_CHECKING:
    from devstack.lambda_runtime import ForkServer

log = logging.getLogger("devstack")


def _read_event(source: str | None, stdin: IO[str]) -> bytes:
    if source is None:
        return b"{}"  # as sam local invoke without -e
    text = stdin.read() if source == "-" else Path(source).read_text()
    json.loads(text or "{}")  # refuse a malformed event before starting anything
    return (text or "{}").encode()


def _env_vars(path: str | None, function: str, declared: dict[str, str]) -> dict[str, str]:
    """SAM's --env-vars file: {"Parameters": {...}, "<LogicalId>": {...}}; like SAM, only
    variables the template declares for the function are overridden."""
    if path is None:
        return {}
    data = json.loads(Path(path).read_text())
    wanted = {**(data.get("Parameters") or {}), **(data.get(function) or {})}
    ignored = sorted(k for k in wanted if k not in declared)
    if ignored:
        log.warning("--env-vars: %s not declared for %s in the template, ignored",
                    ", ".join(ignored), function)
    return {k: str(v) for k, v in wanted.items() if k in declared}


def main(argv: list[str], data_dir: Path, *, stdin: IO[str] | None = None,
         stdout: IO[str] | None = None, forkserver: ForkServer | None = None) -> int:
    """The command; ``forkserver`` (tests) forks the fresh worker from a running fork
    server instead of starting a new interpreter."""
    parser = argparse.ArgumentParser(prog="python -m devstack invoke",
                                     description="Invoke one function once, like sam local invoke.")
    parser.add_argument("function", help="the function's logical id in the template")
    parser.add_argument("-e", "--event", help="JSON event file, or - for stdin (default: {})")
    parser.add_argument("--env-vars", help="JSON file of environment overrides (SAM's format)")
    parser.add_argument("-t", "--template", default=str(ROOT / "template.yaml"))
    args = parser.parse_args(argv)
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout

    from devstack.lambda_api import start_lambda_api
    from devstack.lambda_runtime import LambdaRuntime
    from devstack.template import Template

    event = _read_event(args.event, stdin)
    stack: Stack | None = None
    state = running_stack(data_dir)
    if state is None:
        log.info("no local stack running for %s: starting Postgres and S3 for this call", data_dir)
        stack = Stack(data_dir, s3_events=False)
        stack.start_services()
        state = {"env": stack.env_overrides, "parameters": stack.template_parameters()}
    template = Template(Path(args.template), parameter_overrides=state["parameters"])
    if args.function not in template.functions:
        parser.error(f"{args.function} is not a function of {args.template} "
                     f"({', '.join(sorted(template.functions))})")
    fn = template.functions[args.function]
    env: dict[str, str] = dict(state["env"])
    runtime = LambdaRuntime(template, env, forkserver=forkserver or False)
    lambda_api = None
    if "AWS_ENDPOINT_URL_LAMBDA" not in env:
        lambda_api = start_lambda_api(runtime)
    env.update(_env_vars(args.env_vars, fn.logical_id, fn.environment))
    try:
        invocation = runtime.start(fn.logical_id, event)
        invocation.done.wait()
        runtime.drain()  # asynchronous invokes it made run to their end
    finally:
        if lambda_api is not None:
            lambda_api.stop()
        runtime.shutdown()
        if stack is not None:
            stack.stop()
    body: Any = invocation.result.decode() if invocation.outcome == "ok" else json.dumps(invocation.error)
    stdout.write(body + "\n")
    stdout.flush()
    return 0 if invocation.outcome == "ok" else 1
