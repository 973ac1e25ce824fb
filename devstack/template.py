"""Reads template.yaml: functions, HTTP API routes, the Lambda authorizer, S3 and schedule events.

Intrinsic functions are resolved the way a local run needs them: parameters
from their defaults and overrides, pseudo parameters from fixed local values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PSEUDO = {
    "AWS::AccountId": "123456789012",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "imagerepo-local",
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}


class _Loader(yaml.SafeLoader):
    pass


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_Loader.add_multi_constructor("!", _intrinsic)


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.load(f, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a template")
    return data


@dataclass
class Function:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, str]
    runtime: str = "python3.13"
    reserved_concurrency: int | None = None


@dataclass
class Route:
    method: str
    path: str
    function: str
    authorizer: str | None
    regex: re.Pattern[str] = field(repr=False, default=re.compile(""))

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Authorizer:
    name: str
    function: str
    identity_headers: list[str]
    ttl: int
    simple_responses: bool


@dataclass
class S3Trigger:
    function: str
    events: list[str]
    prefix: str
    suffix: str


@dataclass
class Schedule:
    function: str
    seconds: int


_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}


def _path_regex(path: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\{[^}]+\})", path):
        if piece.startswith("{") and piece.endswith("+}"):
            parts.append(f"(?P<{piece[1:-2]}>.+)")
        elif piece.startswith("{"):
            parts.append(f"(?P<{piece[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(piece))
    return re.compile("^" + "".join(parts) + "$")


def _optional_int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


class Template:
    def __init__(self, path: Path, parameter_overrides: dict[str, str] | None = None) -> None:
        self.path = path.resolve()
        self.root = self.path.parent
        self.data = load_yaml(self.path)
        self.resources: dict[str, Any] = self.data.get("Resources", {})
        params = self.data.get("Parameters", {})
        self.parameters = {k: str(v.get("Default", "")) for k, v in params.items()}
        self.parameters.update(parameter_overrides or {})
        self.globals = (self.data.get("Globals") or {}).get("Function", {})
        self.functions = self._functions()
        self.authorizers = self._authorizers()
        self.routes = self._routes()
        self.s3_triggers = self._events_of("S3", self._s3_trigger)
        self.schedules = self._events_of("Schedule", self._schedule) + self._events_of(
            "ScheduleV2", self._schedule)

    # -- intrinsic resolution -------------------------------------------------
    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            (key, arg), = value.items()
            if key == "Ref":
                return self._ref(arg)
            if key == "Fn::Sub":
                text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                return re.sub(r"\$\{([^}!]+)\}",
                              lambda m: str(self.resolve(extra[m.group(1)]) if m.group(1) in extra
                                            else self._ref(m.group(1).split(".")[0])), text)
            if key == "Fn::GetAtt":
                return f"arn:aws:local:::{arg[0]}/{arg[1]}"
            if key == "Fn::Join":
                return str(arg[0]).join(str(self.resolve(v)) for v in self.resolve(arg[1]))
            if key == "Fn::If":
                return self.resolve(arg[1])
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        return value

    def _ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.resources:
            return name
        return ""

    # -- model ----------------------------------------------------------------
    def _functions(self) -> dict[str, Function]:
        out = {}
        g_env = (self.globals.get("Environment") or {}).get("Variables", {})
        for lid, res in self.resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            props = res.get("Properties", {})
            env_vars = {**g_env, **((props.get("Environment") or {}).get("Variables", {}))}
            out[lid] = Function(
                logical_id=lid,
                code_dir=(self.root / props["CodeUri"]).resolve(),
                handler=props.get("Handler", self.globals.get("Handler", "app.lambda_handler")),
                timeout=int(props.get("Timeout", self.globals.get("Timeout", 3))),
                memory=int(props.get("MemorySize", self.globals.get("MemorySize", 128))),
                environment={k: str(self.resolve(v)) for k, v in env_vars.items()},
                runtime=str(props.get("Runtime", self.globals.get("Runtime", "python3.13"))),
                reserved_concurrency=_optional_int(self.resolve(props.get(
                    "ReservedConcurrentExecutions", self.globals.get("ReservedConcurrentExecutions")))),
            )
        return out

    def layer_dirs(self) -> list[Path]:
        return [(self.root / res["Properties"]["ContentUri"]).resolve()
                for res in self.resources.values()
                if res.get("Type") == "AWS::Serverless::LayerVersion"]

    def _http_api(self) -> dict[str, Any]:
        for res in self.resources.values():
            if res.get("Type") == "AWS::Serverless::HttpApi":
                return dict(res.get("Properties", {}))
        return {}

    def _authorizers(self) -> dict[str, Authorizer]:
        auth = self._http_api().get("Auth") or {}
        out = {}
        for name, spec in (auth.get("Authorizers") or {}).items():
            arn = spec.get("FunctionArn", {})
            fn = arn.get("Fn::GetAtt", [""])[0] if isinstance(arn, dict) else ""
            identity = spec.get("Identity") or {}
            out[name] = Authorizer(
                name=name, function=fn,
                identity_headers=[h.lower() for h in identity.get("Headers", [])],
                ttl=int(identity.get("ReauthorizeEvery", 300)),
                simple_responses=bool(spec.get("EnableSimpleResponses", False)),
            )
        return out

    def _routes(self) -> list[Route]:
        default_auth = (self._http_api().get("Auth") or {}).get("DefaultAuthorizer")
        routes = []
        for lid, props in self._function_events("HttpApi"):
            auth = (props.get("Auth") or {}).get("Authorizer", default_auth)
            route = Route(method=props.get("Method", "ANY").upper(), path=props["Path"],
                          function=lid, authorizer=None if auth in (None, "NONE") else auth)
            route.regex = _path_regex(route.path)
            routes.append(route)
        # API Gateway prefers the most specific route: fewer variables, greedy last.
        routes.sort(key=lambda r: ("+}" in r.path, r.path.count("{"), -len(r.path)))
        return routes

    def _function_events(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        found = []
        for lid, res in self.resources.items():
            if res.get("Type") != "AWS::Serverless::Function":
                continue
            for event in (res.get("Properties", {}).get("Events") or {}).values():
                if event.get("Type") == kind:
                    found.append((lid, event.get("Properties", {})))
        return found

    def _events_of(self, kind: str, build: Any) -> list[Any]:
        return [build(lid, props) for lid, props in self._function_events(kind)]

    def _s3_trigger(self, lid: str, props: dict[str, Any]) -> S3Trigger:
        events = props.get("Events", [])
        rules = ((props.get("Filter") or {}).get("S3Key") or {}).get("Rules", [])
        prefix = next((r["Value"] for r in rules if r.get("Name", "").lower() == "prefix"), "")
        suffix = next((r["Value"] for r in rules if r.get("Name", "").lower() == "suffix"), "")
        return S3Trigger(function=lid, events=events if isinstance(events, list) else [events],
                         prefix=prefix, suffix=suffix)

    def _schedule(self, lid: str, props: dict[str, Any]) -> Schedule:
        expr = str(self.resolve(props.get("Schedule") or props.get("ScheduleExpression") or ""))
        m = _RATE.match(expr)
        if not m:
            raise ValueError(f"{lid}: only rate(...) schedules run locally, got {expr!r}")
        return Schedule(function=lid, seconds=int(m.group(1)) * _UNIT[m.group(2)])
