"""One reusable check of the store's invariants, for tests, fault injection and `make soak`.

Run it when the system is quiet (no request in flight). ``after_gc=True`` means a
GC at grace 0 and the sweeps have just run, so orphan objects and abandoned
uploads must be gone too. Each violation is one line naming what is wrong.

1. No visible image with missing bytes: every image names a blob at refcount > 0
   whose chunk list is complete (``chunk_count`` rows, sizes adding up to the blob's
   size) and every one of whose chunks has a row and an object in the bucket.
2. Refcounts equal references: ``blobs.refcount`` = images naming the blob;
   ``chunks.refcount`` = ``blob_chunks`` rows naming the chunk.
3. After GC: no object without its row (chunks/, manifests/, thumbnails/ in both of its
   layouts, see imagerepo.chunkstore), no blob or
   chunk at refcount 0, no incoming/ object of a settled upload.
4. After the sweeps: no upload left ``processing``, none ``pending`` with its object
   present.

Thumbnails a blob says are ``ready`` but whose objects are gone are reported as
``warnings`` (the API answers 404 ``thumbnail_missing`` and re-renders them).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "violations": self.violations, "warnings": self.warnings,
                "counts": self.counts}

    def __str__(self) -> str:
        head = "invariants: OK" if self.ok else f"invariants: {len(self.violations)} VIOLATION(S)"
        lines = [head + " " + json.dumps(self.counts, sort_keys=True)]
        lines += [f"  violation: {v}" for v in self.violations[:50]]
        lines += [f"  warning: {w}" for w in self.warnings[:20]]
        return "\n".join(lines)


def _keys(store: Any, prefix: str) -> set[str]:
    return {o["Key"] for page in store.list_objects(prefix) for o in page}


def check(*, after_gc: bool = True, store: Any = None) -> Report:
    """Check every invariant against the database and bucket the layer is configured for."""
    from imagerepo import thumbnails
    from imagerepo.chunkstore import (
        CHUNK_PREFIX,
        MANIFEST_PREFIX,
        THUMBNAIL_PREFIX,
        blob_of_key,
        chunk_key,
        default_store,
        legacy_thumbnail_key,
        manifest_key,
        thumbnail_key,
    )
    from imagerepo.db import unit_of_work
    from imagerepo.uploads import INCOMING

    store = store or default_store()
    report = Report()
    bad = report.violations.append
    with unit_of_work() as uow:
        images = uow.rows("SELECT i.id, i.blob_sha256 AS sha, b.refcount, b.sha256 IS NULL AS no_blob"
                          " FROM images i LEFT JOIN blobs b ON b.sha256 = i.blob_sha256")
        blobs = uow.rows(
            "SELECT b.sha256 AS sha, b.refcount, b.size, b.chunk_count, b.thumb_status, b.chunker,"
            " (SELECT count(*) FROM images i WHERE i.blob_sha256 = b.sha256) AS refs,"
            " (SELECT count(*) FROM blob_chunks bc WHERE bc.blob_sha256 = b.sha256) AS links,"
            " (SELECT coalesce(sum(c.size), 0) FROM blob_chunks bc JOIN chunks c ON c.hash = bc.chunk_hash"
            "   WHERE bc.blob_sha256 = b.sha256) AS linked_bytes FROM blobs b")
        chunks = uow.rows(
            "SELECT c.hash, c.refcount, (SELECT count(*) FROM blob_chunks bc WHERE bc.chunk_hash = c.hash)"
            " AS refs FROM chunks c")
        dangling = uow.run("SELECT DISTINCT bc.chunk_hash FROM blob_chunks bc"
                           " LEFT JOIN chunks c ON c.hash = bc.chunk_hash WHERE c.hash IS NULL")
        needed = uow.run("SELECT DISTINCT bc.chunk_hash FROM blob_chunks bc"
                         " JOIN blobs b ON b.sha256 = bc.blob_sha256"
                         " JOIN images i ON i.blob_sha256 = b.sha256")
        uploads = uow.rows("SELECT id::text AS id, status FROM uploads WHERE status IN"
                           " ('pending', 'processing')") if after_gc else []
        settled = {r[0] for r in uow.run("SELECT id::text FROM uploads WHERE status IN ('ready', 'failed')")}
    chunk_objects = _keys(store, CHUNK_PREFIX)
    blob_objects = _keys(store, MANIFEST_PREFIX) | _keys(store, THUMBNAIL_PREFIX)
    incoming = {k.removeprefix(INCOMING) for k in _keys(store, INCOMING)}
    report.counts = {"images": len(images), "blobs": len(blobs), "chunks": len(chunks),
                     "chunk_objects": len(chunk_objects), "blob_objects": len(blob_objects),
                     "incoming_objects": len(incoming)}

    # 1. visible images have all their bytes
    for img in images:
        if img["no_blob"]:
            bad(f"image {img['id']} names blob {img['sha'].strip()} which has no row")
        elif img["refcount"] <= 0:
            bad(f"image {img['id']} names blob {img['sha'].strip()} at refcount {img['refcount']}")
    for b in blobs:
        sha = b["sha"].strip()
        if b["refs"] and (b["links"] != b["chunk_count"] or b["linked_bytes"] != b["size"]):
            bad(f"blob {sha}: {b['links']}/{b['chunk_count']} chunk links, "
                f"{b['linked_bytes']}/{b['size']} bytes")
    for (h,) in dangling:
        bad(f"blob_chunks names chunk {h.strip()} which has no row")
    for (h,) in needed:
        if chunk_key(h.strip()) not in chunk_objects:
            bad(f"chunk object {h.strip()} of a visible image is missing from the bucket")
    # 2. refcounts equal references
    for b in blobs:
        if b["chunker"] != "gc-claim" and b["refcount"] != b["refs"]:
            bad(f"blob {b['sha'].strip()} refcount {b['refcount']} != {b['refs']} images")
    for c in chunks:
        if c["refcount"] != c["refs"] and not (c["refcount"] == 0 and c["refs"] == 0):
            bad(f"chunk {c['hash'].strip()} refcount {c['refcount']} != {c['refs']} blob links")
    # thumbnails said ready
    for b in blobs:
        sha = b["sha"].strip()
        if b["refs"] and b["thumb_status"] == "ready":
            missing = [s for s in thumbnails.SIZES if thumbnail_key(sha, s) not in blob_objects
                       and legacy_thumbnail_key(sha, s) not in blob_objects]
            if missing:
                report.warnings.append(f"blob {sha} is thumbnail-ready but lacks {', '.join(missing)}")
    if not after_gc:
        return report
    # 3. after GC at grace 0: nothing without its row, nothing left at 0
    chunk_rows = {c["hash"].strip() for c in chunks}
    blob_rows = {b["sha"].strip() for b in blobs}
    for key in sorted(chunk_objects):
        if key.rsplit("/", 1)[-1] not in chunk_rows:
            bad(f"orphan object {key} (no chunk row) after GC")
    for key in sorted(blob_objects):
        owner = blob_of_key(key)
        if owner is None:
            bad(f"object {key} under {MANIFEST_PREFIX} or {THUMBNAIL_PREFIX} fits neither key layout")
        elif owner not in blob_rows:
            bad(f"orphan object {key} (no blob row) after GC")
    for b in blobs:
        if b["refcount"] == 0:
            bad(f"blob {b['sha'].strip()} still at refcount 0 after GC")
        elif manifest_key(b["sha"].strip()) not in blob_objects and b["thumb_status"] != "ready":
            report.warnings.append(f"blob {b['sha'].strip()} has no manifest and no thumbnails yet")
    for c in chunks:
        if c["refcount"] == 0:
            bad(f"chunk {c['hash'].strip()} still at refcount 0 after GC")
    # 4. after the sweeps: no upload stuck
    for u in uploads:
        if u["status"] == "processing" or u["id"] in incoming:
            bad(f"upload {u['id']} stuck {u['status']}" + (" with its object present"
                                                           if u["id"] in incoming else ""))
    for upload_id in sorted(incoming & settled):
        bad(f"incoming object of settled upload {upload_id} left behind")
    return report


def settle_and_check() -> Report:
    """Run what a quiet system runs on its schedules, as if their waiting periods had
    passed (upload sweep at staleness 0; thumbnail claims aged past their stale window,
    then the thumbnail sweep; GC at grace 0), then :func:`check` with ``after_gc``.
    Only valid when nothing is in flight: it fast-forwards the clocks of the sweeps."""
    from imagerepo import gc, thumbnails, uploads
    from imagerepo.db import unit_of_work

    uploads.sweep(stale_seconds=0, limit=10_000)
    with unit_of_work() as uow:
        uow.run("UPDATE blobs SET thumb_updated_at = now() - interval '1 hour'"
                " WHERE thumb_status IN ('pending', 'processing', 'failed')")
        uow.commit()
    thumbnails.sweep(limit=1000)
    gc.collect(0)
    gc.collect(0)  # chunks released by step 1 reach grace 0 only now
    return check(after_gc=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", action="store_true",
                        help="run the sweeps and GC at grace 0 first (the system must be quiet)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = settle_and_check() if args.settle else check(after_gc=False)
    print(json.dumps(report.to_json(), indent=2) if args.json else report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
