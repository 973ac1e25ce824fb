"""A fork server for Lambda workers: third-party packages imported once, a fork per environment.

The runtime starts it as ``python -P -m devstack.forkserver FD`` with a SEQPACKET control
socket on FD. Each request (JSON, with the worker's output pipe passed as a file
descriptor) forks a child that becomes a fresh Lambda worker: exactly the given
environment, the function's directory as working directory, ``sys.path`` = function
dir + layer dirs + the interpreter's own paths, the memory limit, then awslambdaric's
``__main__`` against the environment's Runtime API. The server replies with the
child's pid and later reports its exit status.

Only third-party packages are preloaded (boto3, Pillow, pg8000, Powertools, ...): the
layer, the functions and awslambdaric itself are imported by each worker during its
init, so their module state is never shared and cold starts stay visible. The server
process stays single-threaded, so forking it is safe.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import json
import os
import resource
import select
import signal
import socket
import sys
import traceback
from typing import Any

# Packages the functions import through the layer; none of them is ImageRepo code.
PRELOAD = (
    "boto3", "botocore.session", "botocore.client", "botocore.credentials", "s3transfer.manager",
    "PIL.Image", "PIL.ImageOps", "pg8000.native", "jwt", "cryptography.hazmat.primitives.ciphers.aead",
    "aws_lambda_powertools.logging", "aws_lambda_powertools.event_handler", "msal",
    "http.client", "json", "ssl", "email.parser", "concurrent.futures",
)
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


def _die_with_parent(sig: int = signal.SIGKILL) -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, sig)


def set_memory_limit(megabytes: int) -> None:
    """MemorySize as RLIMIT_DATA: the process's private writable memory (heap, anonymous
    mappings, thread stacks), i.e. what Lambda counts, without the file-backed code and
    the address-space reservations that RLIMIT_AS would also count."""
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _child(request: dict[str, Any], out_fd: int, ctl: socket.socket, base_path: list[str]) -> None:
    code = 1
    try:
        _die_with_parent()
        with contextlib.suppress(Exception):  # `ps -o comm` / top show the function
            name = request["env"].get("AWS_LAMBDA_FUNCTION_NAME", "lambda").encode()[:15]
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_NAME, ctypes.c_char_p(name))
        ctl.close()
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_fd, 1)
        os.dup2(out_fd, 2)
        os.close(out_fd)
        os.close(devnull)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = [*request["path"], *base_path]
        for name in [m for m in sys.modules if m == "devstack" or m.startswith("devstack.")]:
            del sys.modules[name]
        set_memory_limit(int(request["memory"]))
        sys.argv = ["awslambdaric", request["handler"]]
        import runpy

        runpy.run_module("awslambdaric", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported on the worker's output, then exit
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(ctl: socket.socket) -> None:
    root = os.environ.get("DEVSTACK_ROOT", "")
    base_path = [p for p in sys.path if p and os.path.abspath(p) != root]
    for name in PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    ctl.send(json.dumps({"ready": os.getpid()}).encode())
    children: set[int] = set()
    while True:
        readable, _, _ = select.select([ctl], [], [], 0.1 if children else 1.0)
        for pid in list(children):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.discard(pid)
                ctl.send(json.dumps({"exit": pid, "status": status}).encode())
        if not readable:
            continue
        msg, fds, _, _ = socket.recv_fds(ctl, 1 << 20, 1)
        if not msg:
            return  # the runtime is gone
        request = json.loads(msg)
        pid = os.fork()
        if pid == 0:
            _child(request, fds[0], ctl, base_path)
        for fd in fds:
            os.close(fd)
        children.add(pid)
        ctl.send(json.dumps({"id": request["id"], "pid": pid}).encode())


def main() -> None:
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the runtime's to handle
    ctl = socket.socket(fileno=int(sys.argv[1]))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        serve(ctl)


if __name__ == "__main__":
    main()
