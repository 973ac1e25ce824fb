"""``imagerepo upload``: files and folders, in parallel, skipping what the server already has.

A file goes to ``POST /images`` when it fits a Lambda request, else through ``POST /uploads``
(a presigned S3 POST, then the upload's status until the ingest made it an image). Files are
skipped when one of the user's images already has the same SHA-256, and a file whose content
appears twice in one run is sent once.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from imagerepo_cli.api import ApiError, Client, CliError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".webp", ".tif", ".tiff",
                  ".heic", ".heif", ".avif", ".mpo"}
DIRECT_LIMIT = 4_500_000  # the API's MaxUploadBytes default; larger files use /uploads
BLOCK = 256 * 1024


def collect(paths: list[str]) -> list[Path]:
    """Files named, plus the image files (by extension) under folders, recursively, in order."""
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        real = p.resolve()
        if real not in seen:
            seen.add(real)
            out.append(p)

    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                        add(Path(root) / name)
        elif p.is_file():
            add(p)
        else:
            raise CliError(f"{raw}: no such file or folder")
    return out


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1024 * 1024):
            h.update(block)
    return h.hexdigest()


def content_type_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".heic", ".heif"):
        return f"image/{suffix[1:]}"
    if suffix == ".avif":
        return "image/avif"
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


class MultipartStream:
    """A multipart/form-data body streamed from disk: fields, then the file, read in blocks.

    ``on_read(n)`` is called for each block of the file that leaves, for progress bars."""

    def __init__(self, fields: list[tuple[str, str]], file_field: str, path: Path, content_type: str,
                 on_read: Callable[[int], None] | None = None, boundary: str = "") -> None:
        self.boundary = boundary or "imagerepo-" + secrets.token_hex(16)
        b = self.boundary.encode()
        head = b"".join(b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                        % (b, k.encode(), v.encode()) for k, v in fields)
        filename = path.name.replace('"', "%22").replace("\r", " ").replace("\n", " ")
        head += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                 b"Content-Type: %s\r\n\r\n" % (b, file_field.encode(), filename.encode(),
                                                content_type.encode()))
        self._head, self._tail = head, b"\r\n--%s--\r\n" % b
        self._path, self._size = path, path.stat().st_size
        self._file: Any = None
        self._stage = 0
        self._on_read = on_read

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return len(self._head) + self._size + len(self._tail)

    def read(self, size: int = -1) -> bytes:
        while True:
            if self._stage == 0:
                self._stage = 1
                return self._head
            if self._stage == 1:
                if self._file is None:
                    self._file = self._path.open("rb")
                block = self._file.read(BLOCK if size is None or size < 0 else max(size, BLOCK))
                if block:
                    if self._on_read:
                        self._on_read(len(block))
                    return block
                self._file.close()
                self._stage = 2
                continue
            if self._stage == 2:
                self._stage = 3
                return self._tail
            return b""

    def __iter__(self) -> Iterator[bytes]:
        while block := self.read(BLOCK):
            yield block


@dataclass
class Options:
    description: str = ""
    private: bool = False
    group_id: int | None = None
    jobs: int = 4
    direct_limit: int = DIRECT_LIMIT
    poll_timeout: float = 600.0


@dataclass
class Result:
    path: Path
    status: str  # uploaded | skipped | failed
    sha256: str = ""
    image: dict[str, Any] | None = None
    error: str = ""
    duplicate_of: str = ""
    exit_code: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path), "status": self.status, "sha256": self.sha256}
        if self.image:
            out["id"] = self.image.get("id")
            out["image"] = self.image
        if self.error:
            out["error"] = self.error
        if self.duplicate_of:
            out["duplicateOf"] = self.duplicate_of
        return out


@dataclass
class Progress:
    """Byte bars: one overall and one per file in flight (on a terminal), lines otherwise."""

    total_bytes: int
    total_files: int
    show_bars: bool
    quiet: bool
    _done: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _slots: list[bool] = field(default_factory=list)
    overall: Any = None

    def __post_init__(self) -> None:
        if self.show_bars:
            self.overall = tqdm(total=self.total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                                desc=f"0/{self.total_files} files", position=0, file=sys.stderr,
                                dynamic_ncols=True)

    def file_bar(self, path: Path, size: int) -> tuple[Any, int]:
        if not self.show_bars:
            return None, -1
        with self._lock:
            slot = next((i for i, busy in enumerate(self._slots) if not busy), len(self._slots))
            if slot == len(self._slots):
                self._slots.append(True)
            self._slots[slot] = True
        name = path.name if len(path.name) <= 28 else path.name[:25] + "..."
        return tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                    position=slot + 1, leave=False, file=sys.stderr, dynamic_ncols=True), slot

    def advance(self, bar: Any, n: int) -> None:
        if bar is not None:
            bar.update(n)
        if self.overall is not None:
            self.overall.update(n)

    def finish(self, bar: Any, slot: int, result: Result, sent: int, size: int) -> None:
        with self._lock:
            self._done += 1
            done = self._done
            if slot >= 0:
                self._slots[slot] = False
        if bar is not None:
            bar.close()
        if self.overall is not None:
            self.overall.update(max(0, size - sent))  # a failed or skipped file counts as done
            self.overall.set_description(f"{done}/{self.total_files} files")
        if not self.quiet:
            line = f"[{done}/{self.total_files}] {describe(result)}"
            with self._lock:  # one whole line at a time from the worker threads
                if self.overall is not None:
                    tqdm.write(line, file=sys.stdout)
                else:
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()

    def close(self) -> None:
        if self.overall is not None:
            self.overall.close()


def describe(r: Result) -> str:
    if r.status == "uploaded" and r.image:
        img = r.image
        return (f"uploaded {r.path} -> id {img['id']} "
                f"({img.get('width')}x{img.get('height')}, {img.get('size')} B)")
    if r.status == "skipped":
        return f"skipped  {r.path} ({r.duplicate_of})"
    return f"failed   {r.path}: {r.error}"


def existing_hashes(client: Client) -> dict[str, int]:
    """SHA-256 → image id of every image the logged-in user owns."""
    out: dict[str, int] = {}
    for item in client.pages("/images", {"owner": "me", "pageSize": 100}, auth=True):
        out.setdefault(str(item.get("sha256", "")), int(item["id"]))
    return out


class Uploader:
    def __init__(self, client: Client, options: Options) -> None:
        self.client = client
        self.options = options

    def _form(self) -> list[tuple[str, str]]:
        o = self.options
        fields = [("description", o.description), ("isPrivate", "1" if o.private else "0")]
        if o.group_id is not None:
            fields.append(("groupId", str(o.group_id)))
        return fields

    def direct(self, path: Path, on_read: Callable[[int], None]) -> dict[str, Any] | None:
        """POST /images; None when the server says the file is too large for it."""
        boundary = "imagerepo-" + secrets.token_hex(16)

        def body() -> MultipartStream:  # built again if a refreshed token makes us retry
            return MultipartStream(self._form(), "file", path, content_type_of(path), on_read, boundary)

        r = self.client.request("POST", "/images", body=body,
                                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if r.status_code == 413:
            return None
        if r.status_code != 201:
            raise ApiError.from_response(r, "uploads")
        return dict(r.json())

    def large(self, path: Path, on_read: Callable[[int], None]) -> dict[str, Any]:
        """POST /uploads, the presigned S3 POST, then GET /uploads/{id} until it is an image."""
        o = self.options
        ticket_request: dict[str, Any] = {"fileName": path.name, "contentType": content_type_of(path),
                                          "size": path.stat().st_size, "description": o.description,
                                          "isPrivate": 1 if o.private else 0}
        if o.group_id is not None:
            ticket_request["groupId"] = o.group_id
        ticket = self.client.call("POST", "/uploads", json=ticket_request, what="large uploads (/uploads)")
        stream = MultipartStream(list(ticket["fields"].items()), "file", path, content_type_of(path), on_read)
        r = self.client.send("POST", ticket["url"], data=stream,
                             headers={"Content-Type": stream.content_type})
        if r.status_code not in (200, 201, 204):
            raise CliError(f"the object store refused the upload (HTTP {r.status_code}): "
                           f"{_s3_message(r.text)}")
        deadline = time.monotonic() + o.poll_timeout
        delay = 0.3
        while True:
            status = self.client.call("GET", f"/uploads/{ticket['uploadId']}")
            if status["status"] == "ready":
                return dict(self.client.call("GET", f"/images/{status['imageId']}/info"))
            if status["status"] == "failed":
                raise CliError(f"the server could not ingest it: {status.get('error') or 'failed'}")
            if time.monotonic() > deadline:
                raise CliError(f"still {status['status']} after {o.poll_timeout:.0f}s (upload "
                               f"{ticket['uploadId']})")
            time.sleep(delay)
            delay = min(delay * 1.5, 2.0)

    def one(self, path: Path, on_read: Callable[[int], None]) -> dict[str, Any]:
        size = path.stat().st_size
        if size <= self.options.direct_limit:
            image = self.direct(path, on_read)
            if image is not None:
                return image
        return self.large(path, on_read)


def _s3_message(text: str) -> str:
    start, end = text.find("<Message>"), text.find("</Message>")
    return text[start + 9:end] if 0 <= start < end else text[:200]


def run(client: Client, paths: list[str], options: Options, *, show_bars: bool, quiet: bool) -> list[Result]:
    files = collect(paths)
    client.require_session()
    hashes: dict[Path, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
        for path, digest in zip(files, pool.map(sha256_of, files), strict=True):
            hashes[path] = digest
    on_server = existing_hashes(client)
    results: list[Result] = []
    todo: list[Path] = []
    first_in_run: dict[str, Path] = {}
    for path in files:
        digest = hashes[path]
        if digest in on_server:
            results.append(Result(path, "skipped", digest,
                                  duplicate_of=f"already uploaded as id {on_server[digest]}"))
        elif digest in first_in_run:
            results.append(Result(path, "skipped", digest,
                                  duplicate_of=f"same content as {first_in_run[digest]}"))
        else:
            first_in_run[digest] = path
            todo.append(path)
    sizes = {p: p.stat().st_size for p in todo}
    progress = Progress(sum(sizes.values()), len(files), show_bars=show_bars, quiet=quiet)
    for r in results:
        progress.finish(None, -1, r, 0, 0)
    uploader = Uploader(client, options)

    def task(path: Path) -> Result:
        bar, slot = progress.file_bar(path, sizes[path])
        sent = 0

        def on_read(n: int) -> None:
            nonlocal sent
            sent += n
            progress.advance(bar, n)

        try:
            result = Result(path, "uploaded", hashes[path], image=uploader.one(path, on_read))
        except CliError as e:
            result = Result(path, "failed", hashes[path], error=e.message, exit_code=e.exit_code)
        progress.finish(bar, slot, result, sent, sizes[path])
        return result

    try:
        with ThreadPoolExecutor(max_workers=max(1, options.jobs)) as pool:
            futures = [pool.submit(task, p) for p in todo]
            done = [f.result() for f in as_completed(futures)]
    finally:
        progress.close()
    order = {p: i for i, p in enumerate(files)}
    return sorted(results + done, key=lambda r: order[r.path])
