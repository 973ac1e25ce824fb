"""Every function has a sample event in tests/events/<code folder>.json (what
`sam local invoke -e` takes), and `python -m devstack invoke` (its Docker-free
counterpart) runs each one once against the real local stack without a server error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jwt
import pytest

from devstack import invoke
from devstack.template import Template
from tests.helpers import load_event, register_and_login

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Template(ROOT / "template.yaml")
FUNCTIONS = {fn.code_dir.name: fn.logical_id for fn in TEMPLATE.functions.values()}
ROUTES = {r.function: r.route_key for r in TEMPLATE.routes}


def test_every_function_has_a_sample_event() -> None:
    missing = [name for name in FUNCTIONS if not (ROOT / "tests" / "events" / f"{name}.json").exists()]
    assert not missing


@pytest.mark.parametrize("name", sorted(n for n, lid in FUNCTIONS.items() if lid in ROUTES))
def test_http_sample_routes_to_its_function(name: str) -> None:
    assert load_event(name)["routeKey"] == ROUTES[FUNCTIONS[name]]


# OneDrive samples need the stand-in's configuration (unconfigured, they would reach for AWS
# Secrets Manager): tests/e2e/test_onedrive.py runs them; migrate answers CloudFormation's
# ResponseURL: tests/integration/test_migrate.py runs it.
RUNNABLE = sorted(n for n in FUNCTIONS if not n.startswith("onedrive_") and n != "migrate")


def _cli(stack: Any, argv: list[str], forkserver: Any) -> tuple[int, str]:
    """`python -m devstack invoke ARGV` in this process, against the test stack's data folder
    (each worker forked fresh from the stack's fork server rather than a new interpreter)."""
    out = io.StringIO()
    code = invoke.main(argv, stack.data_dir, stdout=out, forkserver=forkserver)
    return code, out.getvalue()


def test_devstack_invoke_runs_every_sample_event(stack: Any, base_url: str, tmp_path: Path) -> None:
    """Each function once, in a fresh environment, with its sample (four at a time); the
    OneDrive ones and migrate run against their stand-ins in their own tests."""
    def run(name: str) -> str | None:
        event = load_event(name)
        auth = (event.get("requestContext") or {}).get("authorizer")
        if auth:  # make the placeholder caller a real account and session of this database
            api, user = register_and_login(base_url)
            auth["lambda"]["sub"] = str(user["id"])
            auth["lambda"]["sid"] = jwt.decode(api.token or "", options={"verify_signature": False})["sid"]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(event))
        code, out = _cli(stack, [FUNCTIONS[name], "-e", str(path)], stack.runtime.forkserver)
        try:
            result = json.loads(out)
        except ValueError:
            return f"{name}: exit {code}, not JSON: {out[:300]}"
        if code != 0 or not isinstance(result, dict):
            return f"{name}: exit {code}: {out[:300]}"
        if "statusCode" in result and result["statusCode"] >= 500:
            return f"{name}: {result}"
        return None

    with ThreadPoolExecutor(4) as pool:
        failures = [f for f in pool.map(run, RUNNABLE) if f]
    assert not failures, "\n".join(failures)


def test_devstack_invoke_command_line(stack: Any, tmp_path: Path) -> None:
    """The real command: event on stdin, --env-vars (SAM's format), result on stdout, logs on
    stderr, exit 0; a handler that raises exits 1 with Lambda's error body."""
    fixture = ROOT / "tests" / "fixtures" / "gateway" / "template.yaml"
    env = {**os.environ, "IMAGEREPO_DATA_DIR": str(stack.data_dir)}
    cmd = [sys.executable, "-m", "devstack", "invoke"]
    done = subprocess.run([*cmd, "HealthFunction", "-e", "-"], input=json.dumps(load_event("health")),
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["statusCode"] == 200
    assert "REPORT RequestId:" in done.stderr and "Init Duration:" in done.stderr
    env_vars = tmp_path / "env.json"
    env_vars.write_text(json.dumps({"EchoFunction": {"ONLY_ECHO": "from env-vars", "NOT_DECLARED": "x"}}))
    echo = subprocess.run([*cmd, "EchoFunction", "-t", str(fixture), "--env-vars", str(env_vars)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert echo.returncode == 0, echo.stderr
    assert json.loads(json.loads(echo.stdout)["body"])["env"]["ONLY_ECHO"] == "from env-vars"
    assert "NOT_DECLARED not declared" in echo.stderr
    failed = subprocess.run([*cmd, "BoomFunction", "-t", str(fixture)], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["errorType"] == "RuntimeError"
    assert "secret internal detail" in failed.stderr
