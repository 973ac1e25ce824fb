"""The whole local stack: services, schema, admin bootstrap, gateway, event delivery.

Used by ``make run`` (``python -m devstack run``) and by the test suite, so the
tests exercise exactly what a user runs.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import threading
import time
from pathlib import Path
from typing import Any

from devstack.services import Postgres, SeaweedS3, process_alive

log = logging.getLogger("devstack")

ROOT = Path(__file__).resolve().parents[1]
LOCAL_BUCKET = "imagerepo-local"
STATE_FILE = "devstack.json"  # in the data folder while a stack serves it


def running_stack(data_dir: Path) -> dict[str, Any] | None:
    """What a live stack on ``data_dir`` published (its functions' environment), or None."""
    path = data_dir.resolve() / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return state if process_alive(int(state.get("pid", 0))) and state.get("ready") else None


def _wait_for_previous(data_dir: Path, timeout: float = 30.0) -> None:
    """A stack killed a moment ago may still be stopping (its services get SIGTERM when it
    dies): wait for it; a stack that is really running keeps its data folder."""
    path = data_dir / STATE_FILE
    try:
        pid = int(json.loads(path.read_text()).get("pid", 0))
    except (OSError, ValueError):
        return
    if pid == os.getpid() or not process_alive(pid):
        path.unlink(missing_ok=True)
        return
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    if "devstack" not in cmdline:
        path.unlink(missing_ok=True)  # a reused pid
        return
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{data_dir} is in use by another local stack (pid {pid}); stop it first")
        time.sleep(0.1)
    path.unlink(missing_ok=True)


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """Local credentials, generated once and kept (0600) with the data."""
    wanted = ("jwt_secret", "db_password", "s3_access_key", "s3_secret_key")
    current: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    if all(k in current for k in wanted):
        return current
    for key in wanted:
        current.setdefault(key, secrets.token_urlsafe(32) if key != "s3_access_key"
                           else "AK" + secrets.token_hex(9).upper())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2))
    tmp.chmod(0o600)
    tmp.replace(path)
    return current


class Stack:
    def __init__(self, data_dir: Path, *, port: int = 3000, host: str = "127.0.0.1",
                 template_path: Path | None = None, env: dict[str, str] | None = None,
                 s3_events: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.s3_events = s3_events
        self._state_written = False
        self.port = port
        self.host = host
        self.template_path = template_path or ROOT / "template.yaml"
        self.extra_env = env or {}
        self.pg: Postgres | None = None
        self.s3: SeaweedS3 | None = None
        self.server: Any = None
        self.gateway: Any = None
        self.runtime: Any = None
        self.events: Any = None
        self.lambda_api: Any = None
        self._threads: list[threading.Thread] = []
        self.s3_bucket = LOCAL_BUCKET
        self.s3_endpoint = ""
        self.database: dict[str, str] = {}
        self.webhook_port: int | None = None
        self.webhook_token = ""

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start_services(self) -> None:
        """Start (or, when configured, connect to) Postgres and the S3 server."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        _wait_for_previous(self.data_dir)
        creds = load_or_create_secrets(self.data_dir / "secrets.json")
        env = os.environ
        if not env.get("IMAGEREPO_DB_HOST"):
            self.pg = Postgres(self.data_dir / "postgres", user="imagerepo",
                               password=creds["db_password"], database="imagerepo",
                               port=int(env.get("IMAGEREPO_PG_PORT") or 0) or None)
        if not env.get("IMAGEREPO_S3_ENDPOINT_URL"):
            self.s3 = SeaweedS3(self.data_dir / "seaweedfs", access_key=creds["s3_access_key"],
                                secret_key=creds["s3_secret_key"], bucket=LOCAL_BUCKET,
                                s3_port=int(env.get("IMAGEREPO_S3_PORT") or 0) or None)
        # Spawned from this thread (children die with the thread that forked them),
        # then both boot at once.
        if self.pg is not None:
            self.pg.spawn()
        if self.s3 is not None:
            self.s3.spawn(self.notification_toml() if self.s3_events else None)
        if self.pg is not None:
            self.pg.wait_ready()
        if self.s3 is not None:
            self.s3.wait_ready()
        self.database = {
            "DB_HOST": env.get("IMAGEREPO_DB_HOST", "127.0.0.1"),
            "DB_PORT": env.get("IMAGEREPO_DB_PORT", "5432") if self.pg is None else str(self.pg.port),
            "DB_NAME": env.get("IMAGEREPO_DB_NAME", "imagerepo"),
            "DB_USER": env.get("IMAGEREPO_DB_USER", "imagerepo"),
            "DB_PASSWORD": env.get("IMAGEREPO_DB_PASSWORD", "") if self.pg is None
            else creds["db_password"],
        }
        self.s3_endpoint = self.s3.endpoint if self.s3 else env["IMAGEREPO_S3_ENDPOINT_URL"]
        if self.s3 is None:
            self.s3_bucket = env.get("IMAGEREPO_S3_BUCKET", LOCAL_BUCKET)
        self.env_overrides = {
            # What `sam local --env-vars` would give: local endpoints and secrets.
            **self.database,
            "DB_SECRET_ARN": "",
            "DB_SSL": "disable",  # the local Postgres has no TLS (the template says require)
            "JWT_SECRET": creds["jwt_secret"],
            "JWT_SECRET_ARN": "",
            "BUCKET_NAME": self.s3_bucket,
            "S3_ENDPOINT_URL": self.s3_endpoint,
            "AWS_ACCESS_KEY_ID": env.get("IMAGEREPO_S3_ACCESS_KEY", creds["s3_access_key"])
            if self.s3 is None else creds["s3_access_key"],
            "AWS_SECRET_ACCESS_KEY": env.get("IMAGEREPO_S3_SECRET_KEY", creds["s3_secret_key"])
            if self.s3 is None else creds["s3_secret_key"],
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "GC_GRACE_SECONDS": env.get("IMAGEREPO_GC_GRACE_SECONDS", "0"),
            # OneDrive settings (real ones, or the local stand-in's), like --env-vars.
            **{k: v for k, v in env.items() if k.startswith("ONEDRIVE_") or k == "GRAPH_BASE_URL"},
            **self.extra_env,
        }
        # The runtime process uses the layer too (migrations, admin bootstrap).
        os.environ.update(self.env_overrides)
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        self._import_layer()
        from imagerepo.migrate import apply_migrations

        applied = apply_migrations(ROOT / "shared" / "migrations")
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        if self.s3 is None:
            self._ensure_external_bucket()
        self._bootstrap_admin()

    def _ensure_external_bucket(self) -> None:
        from imagerepo.s3 import client

        s3 = client()
        try:
            s3.head_bucket(Bucket=self.s3_bucket)
        except Exception:  # noqa: BLE001 - absent: create it
            s3.create_bucket(Bucket=self.s3_bucket)

    def notification_toml(self) -> str | None:
        """The filer webhook that turns object-store writes into S3 events (see events.py)."""
        try:
            from devstack.events import notification_toml
        except ImportError:
            return None
        return notification_toml(self)

    def _import_layer(self) -> None:
        layer = str(ROOT / "layers" / "imagerepo")
        if layer not in sys.path:
            sys.path.insert(0, layer)
        from imagerepo.config import settings

        settings.cache_clear()

    def _bootstrap_admin(self) -> None:
        email = os.environ.get("IMAGEREPO_ADMIN_EMAIL", "")
        password = os.environ.get("IMAGEREPO_ADMIN_PASSWORD", "")
        if email and password:
            from imagerepo.users import ensure_admin

            user = ensure_admin(email, password)
            log.info("admin account ready: %s (id %d)", user.email, user.id)

    def start_gateway(self) -> None:
        from devstack.gateway import GatewayServer, LocalGateway
        from devstack.lambda_runtime import LambdaRuntime
        from devstack.template import Template

        template = Template(self.template_path, parameter_overrides=self.template_parameters())
        self.runtime = LambdaRuntime(template, self.env_overrides)
        from devstack.lambda_api import start_lambda_api

        # The Lambda Invoke API (like `sam local start-lambda`), for InvocationType=Event.
        self.lambda_api = start_lambda_api(self.runtime)
        self.gateway = LocalGateway(template, self.runtime)
        self.server = GatewayServer(self.gateway, self.host, self.port)
        self.port = self.server.server_address[1]
        thread = threading.Thread(target=self.server.serve_forever, name="gateway", daemon=True)
        thread.start()
        self._threads.append(thread)
        self._start_events(template)

    def template_parameters(self) -> dict[str, str]:
        return {"DbHost": self.database["DB_HOST"], "DbPort": self.database["DB_PORT"],
                "DbSecretArn": "", "S3EndpointUrl": self.s3_endpoint}

    def write_state(self) -> None:
        """Publish the running stack (0600: it holds the local secrets) for `devstack invoke`."""
        path = self.data_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "url": self.url, "ready": True,
                                   "env": self.env_overrides,
                                   "parameters": self.template_parameters()}, indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)
        self._state_written = True

    def _start_events(self, template: Any) -> None:
        try:
            from devstack.events import EventDelivery
        except ImportError:
            return
        self.events = EventDelivery(template, self.runtime, self)
        self.events.start()

    def start(self) -> None:
        self.start_services()
        self.start_gateway()
        self.write_state()

    def stop(self) -> None:
        if self.events is not None:
            self.events.stop()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.lambda_api is not None:
            self.lambda_api.stop()
        if self.runtime is not None:
            self.runtime.shutdown()
        from contextlib import suppress

        with suppress(Exception):
            from imagerepo.db import discard_connection

            discard_connection()
        if self.s3 is not None:
            self.s3.stop()
        if self.pg is not None:
            self.pg.stop()
        if self._state_written:  # last: a new start waits for this stack until here
            (self.data_dir / STATE_FILE).unlink(missing_ok=True)
