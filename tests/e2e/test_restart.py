"""`make run` killed with SIGKILL, then `make run` again at once: it comes up healthy with the
data intact (issue 9: the killed run's postmaster, a zombie, left a postmaster.pid behind)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.services import free_port, process_alive
from tests.e2e.conftest import make_jpeg
from tests.helpers import Api, register_and_login, wait_for

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


class Run:
    """One `make run` on its own port and data folder."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        env = {**os.environ, "PORT": str(port), "IMAGEREPO_DATA_DIR": str(data)}
        self.log_path = data.parent / f"run-{port}-{len(list(data.parent.glob('run-*')))}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115
        self.make = subprocess.Popen(["make", "-s", "run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def healthy(self, not_pid: int = 0) -> bool:
        """GET /health is 200, served by this run's stack (not one stopping on the same port)."""
        if self.make.poll() is not None:
            raise AssertionError(f"make run exited with {self.make.returncode}: "
                                 + self.log_path.read_text()[-3000:])
        try:
            if not_pid and self.stack_pid() == not_pid:
                return False
            return requests.get(f"{self.url}/health", timeout=5).status_code == 200
        except (requests.RequestException, OSError, ValueError):
            return False

    def stack_pid(self) -> int:
        return int(json.loads((self.data / "devstack.json").read_text())["pid"])

    def stop(self) -> None:
        pid = self.stack_pid() if (self.data / "devstack.json").exists() else 0
        if self.make.poll() is None:
            self.make.terminate()  # the stack stops with make (it watches its parent)
        self.make.wait(60)
        wait_for(lambda: not process_alive(pid), timeout=60)
        self.log.close()


@pytest.fixture
def data(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


@pytest.mark.parametrize("victim", ["stack", "make"])
def test_run_comes_up_right_after_a_sigkill(data: Path, victim: str) -> None:
    port = free_port()
    first = Run(data, port)
    try:
        wait_for(first.healthy, timeout=180, interval=0.3)
        api, user = register_and_login(first.url, password="s3cret-passw0rd")
        photo = make_jpeg(50, 40, seed=4242)
        r = api.post("/images", files={"file": ("k.jpg", photo)})
        assert r.status_code == 201, r.text
        image_id = r.json()["id"]
        stack_pid = first.stack_pid()
        os.kill(stack_pid if victim == "stack" else first.make.pid, signal.SIGKILL)
    except BaseException:
        first.stop()
        raise
    second = Run(data, port)  # at once
    try:
        wait_for(lambda: second.healthy(not_pid=stack_pid), timeout=180, interval=0.3)
        first.make.wait(60)
        again = Api(second.url)
        r = again.post("/login", json={"username": user["name"], "password": "s3cret-passw0rd"})
        assert r.status_code == 200, r.text
        again.token = r.json()["access_token"]
        r = again.get(f"/images/{image_id}")
        assert r.status_code == 200 and r.content == photo
        assert second.stack_pid() != stack_pid
    finally:
        second.stop()
        first.log.close()
