"""Every function has a sample event in tests/events/<code folder>.json (what
`sam local invoke -e` takes), and each sample runs against the real local stack
without a server error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest

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


# OneDrive samples need the stand-in's configuration: tests/e2e/test_onedrive.py runs them;
# migrate answers CloudFormation's ResponseURL: tests/integration/test_migrate.py runs it.
RUNNABLE = sorted(n for n in FUNCTIONS
                  if not n.startswith("onedrive_") and n not in ("authorizer", "migrate"))


@pytest.mark.parametrize("name", RUNNABLE)
def test_sample_event_runs(stack: Any, base_url: str, name: str) -> None:
    event = load_event(name)
    auth = (event.get("requestContext") or {}).get("authorizer")
    if auth:  # make the placeholder caller a real account and session of this database
        api, user = register_and_login(base_url)
        auth["lambda"]["sub"] = str(user["id"])
        auth["lambda"]["sid"] = jwt.decode(api.token or "", options={"verify_signature": False})["sid"]
    result = stack.runtime.invoke(FUNCTIONS[name], event)
    if "routeKey" in event:
        assert result["statusCode"] < 500, result
    else:
        assert isinstance(result, dict)
