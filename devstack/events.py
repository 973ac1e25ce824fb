"""S3 event delivery: SeaweedFS filer notifications → S3 event records → the template's handlers.

The filer POSTs each metadata change to a webhook (configured through the
``notification.toml`` written next to it, restricted to the prefixes the
template subscribes to, with retries). Each change becomes an S3 event record
(bucket, url-encoded key, size, eTag, sequencer) delivered asynchronously to
every function whose S3 event and filter match, at least once: the webhook
retries until acknowledged, and a failing handler is retried like an
asynchronous Lambda invocation.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
import threading
import time
import urllib.parse
import uuid
from fnmatch import fnmatchcase
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from devstack.services import free_port
from devstack.template import Template

if TYPE_CHECKING:
    from devstack.lambda_runtime import LambdaRuntime
    from devstack.stack import Stack

log = logging.getLogger("devstack.events")


def _subscribed_prefixes(template: Template) -> list[str]:
    return sorted({t.prefix for t in template.s3_triggers})


def notification_toml(stack: Stack) -> str | None:
    """The filer webhook config; None when the template subscribes to no S3 events."""
    template = Template(stack.template_path)
    prefixes = _subscribed_prefixes(template)
    if not prefixes:
        return None
    stack.webhook_port = free_port()
    stack.webhook_token = secrets.token_urlsafe(24)
    bucket_root = "/buckets/" + stack.s3_bucket + "/"
    paths = ", ".join(json.dumps(bucket_root + p) for p in prefixes)
    return (
        "[notification.webhook]\n"
        "enabled = true\n"
        f'endpoint = "http://127.0.0.1:{stack.webhook_port}/s3-events"\n'
        f'bearer_token = "{stack.webhook_token}"\n'
        "timeout_seconds = 10\nmax_retries = 10\nbackoff_seconds = 1\nmax_backoff_seconds = 10\n"
        "workers = 8\nbuffer_size = 100000\n"
        'event_types = ["create", "update", "delete"]\n'
        f"path_prefixes = [{paths}]\n"
    )


def _hex_md5(b64: str | None) -> str:
    if not b64:
        return ""
    try:
        return base64.b64decode(b64).hex()
    except ValueError:
        return ""


def s3_record(notification: dict[str, Any], bucket: str) -> dict[str, Any] | None:
    """One SeaweedFS filer notification as an AWS S3 event record (or None if not an object)."""
    full = str(notification.get("key", ""))
    root = f"/buckets/{bucket}/"
    if not full.startswith(root):
        return None
    key = full[len(root):]
    message = notification.get("message") or {}
    kind = notification.get("event_type")
    if kind in ("create", "update"):
        entry = message.get("new_entry") or {}
        name = "ObjectCreated:Put"
    elif kind == "delete":
        entry = message.get("old_entry") or {}
        name = "ObjectRemoved:Delete"
    else:
        return None
    if entry.get("is_directory") or (entry.get("attributes") or {}).get("file_mode", 0) & 0o40000_0000:
        return None
    attrs = entry.get("attributes") or {}
    chunks = entry.get("chunks") or [{}]
    ts_ns = int(chunks[-1].get("modified_ts_ns") or time.time_ns())
    obj: dict[str, Any] = {"key": urllib.parse.quote_plus(key, safe="/"),
                           "sequencer": f"{ts_ns:016X}"}
    if name.startswith("ObjectCreated"):
        obj.update(size=int(attrs.get("file_size") or 0), eTag=_hex_md5(attrs.get("md5")))
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": dt.datetime.fromtimestamp(ts_ns / 1e9, dt.UTC)
        .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": name,
        "userIdentity": {"principalId": "AWS:LOCAL"},
        "requestParameters": {"sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-request-id": uuid.uuid4().hex[:16].upper(),
                             "x-amz-id-2": secrets.token_urlsafe(32)},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "devstack",
            "bucket": {"name": bucket, "ownerIdentity": {"principalId": "LOCAL"},
                       "arn": f"arn:aws:s3:::{bucket}"},
            "object": obj,
        },
    }


def _polled_record(bucket: str, obj: dict[str, Any]) -> dict[str, Any]:
    ts = obj["LastModified"]
    entry = {"attributes": {"file_size": obj["Size"]},
             "chunks": [{"modified_ts_ns": int(ts.timestamp() * 1e9)}]}
    record = s3_record({"event_type": "create", "key": f"/buckets/{bucket}/{obj['Key']}",
                        "message": {"new_entry": entry}}, bucket)
    assert record is not None
    record["s3"]["object"]["eTag"] = obj["ETag"].strip('"')
    return record


class EventDelivery:
    def __init__(self, template: Template, runtime: LambdaRuntime, stack: Stack) -> None:
        self.template = template
        self.runtime = runtime
        self.stack = stack
        self.delivered = 0
        self._server: ThreadingHTTPServer | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def targets(self, record: dict[str, Any]) -> list[str]:
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        name = "s3:" + record["eventName"]
        return [t.function for t in self.template.s3_triggers
                if any(fnmatchcase(name, pattern) for pattern in t.events)
                and key.startswith(t.prefix) and key.endswith(t.suffix)]

    def deliver(self, record: dict[str, Any]) -> None:
        for function in self.targets(record):
            self.delivered += 1
            self.runtime.invoke_async(function, {"Records": [record]})

    def start(self) -> None:
        port = getattr(self.stack, "webhook_port", None)
        if port:
            self._start_webhook(port, self.stack.webhook_token)
        elif self.template.s3_triggers:
            # An external object store (MinIO from docker-compose): poll instead.
            t = threading.Thread(target=self._poll, name="s3-poller", daemon=True)
            t.start()
            self._threads.append(t)
        for schedule in self.template.schedules:
            t = threading.Thread(target=self._tick, args=(schedule.function, schedule.seconds),
                                 name=f"schedule-{schedule.function}", daemon=True)
            t.start()
            self._threads.append(t)

    def _tick(self, function: str, seconds: int) -> None:
        while not self._stop.wait(seconds):
            event = {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
                     "source": "aws.events", "account": "123456789012",
                     "time": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "region": "us-east-1", "resources": [], "detail": {}}
            self.runtime.invoke_async(function, event)

    def _poll(self, interval: float = 1.0) -> None:
        """List the subscribed prefixes and turn objects not seen before into events."""
        import boto3
        from botocore.config import Config

        env = self.stack.env_overrides
        s3 = boto3.client("s3", endpoint_url=env["S3_ENDPOINT_URL"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1",
                          config=Config(s3={"addressing_style": "path"}))
        bucket = self.stack.s3_bucket
        seen: dict[str, str] = {}
        first = True
        while not self._stop.wait(interval):
            current: dict[str, str] = {}
            try:
                for prefix in _subscribed_prefixes(self.template):
                    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                              Prefix=prefix):
                        for obj in page.get("Contents", []):
                            current[obj["Key"]] = obj["ETag"].strip('"')
                            if not first and seen.get(obj["Key"]) != current[obj["Key"]]:
                                self.deliver(_polled_record(bucket, obj))
            except Exception:
                log.exception("polling the object store failed")
                continue
            seen, first = current, False

    def _start_webhook(self, port: int, token: str) -> None:
        delivery = self
        bucket = self.stack.s3_bucket

        class Hook(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {token}":
                    self.send_response(401)
                    self.end_headers()
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    record = s3_record(json.loads(body), bucket)
                    if record is not None:
                        delivery.deliver(record)
                except Exception:
                    log.exception("could not deliver an S3 event")
                    self.send_response(500)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Hook)
        self._server.daemon_threads = True
        t = threading.Thread(target=self._server.serve_forever, name="s3-events", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
