"""Images: a user's record pointing at a deduplicated blob, with its privacy rules.

Visibility: a public image is readable by anyone; a private one by its owner,
an admin, or whoever presents its access key (stored hashed, checked in
constant time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import threading
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imagerepo import inputs, observability, throttle
from imagerepo.config import settings
from imagerepo.db import UnitOfWork, unit_of_work
from imagerepo.errors import (
    BadRequest,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    reject_unknown_fields,
)
from imagerepo.security import Principal, generate_access_key, hash_secret, verify_secret

if TYPE_CHECKING:
    from imagerepo import imaging
    from imagerepo.chunkstore import ChunkStore

MAX_NAME = 255
MAX_DESCRIPTION = 2000
THUMB_REVEAL_SECONDS = 2.0
_ACCESS_KEY = re.compile(r"^[\x21-\x7e]{8,128}$")

_COLUMNS = """i.id, i.owner_id, u.name AS owner_name, i.blob_sha256, i.name, i.description,
    i.is_private, i.access_key_hash, i.group_id, i.content_type, i.width, i.height, i.size,
    i.created_at, i.updated_at, b.thumb_status, b.thumb_updated_at"""
_FROM = "images i JOIN users u ON u.id = i.owner_id JOIN blobs b ON b.sha256 = i.blob_sha256"


@dataclass(frozen=True)
class Image:
    id: int
    owner_id: int
    owner_name: str
    sha256: str
    name: str
    description: str
    is_private: bool
    access_key_hash: str | None
    group_id: int | None
    content_type: str
    width: int
    height: int
    size: int
    created_at: dt.datetime
    thumb_status: str
    thumb_updated_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Image:
        return cls(id=row["id"], owner_id=row["owner_id"], owner_name=row["owner_name"],
                   sha256=row["blob_sha256"].strip(), name=row["name"],
                   description=row["description"], is_private=row["is_private"],
                   access_key_hash=row["access_key_hash"], group_id=row["group_id"],
                   content_type=row["content_type"], width=row["width"], height=row["height"],
                   size=row["size"], created_at=row["created_at"], thumb_status=row["thumb_status"],
                   thumb_updated_at=row.get("thumb_updated_at"))

    def is_owned_by(self, who: Principal | None) -> bool:
        return who is not None and who.user_id == self.owner_id

    @property
    def thumbnail_status(self) -> str:
        """pending | ready | failed as this image's readers see it.

        A blob that someone else's identical file had rendered before this image existed
        must not show ``ready`` at once (the upload's answer would tell the uploader the
        file exists): such an image reads ``pending`` for its first THUMB_REVEAL_SECONDS,
        about what a new render takes. A render finished after the image was created
        tells nothing and shows as is."""
        status = "pending" if self.thumb_status == "processing" else self.thumb_status
        if status == "pending" or (self.thumb_updated_at is not None
                                   and self.thumb_updated_at >= self.created_at):
            return status
        age = (dt.datetime.now(dt.UTC) - self.created_at).total_seconds()
        return "pending" if age < THUMB_REVEAL_SECONDS else status

    def to_json(self, viewer: Principal | None = None, *, access_key: str | None = None) -> dict[str, Any]:
        status = self.thumbnail_status
        ready = status == "ready"
        thumbs = f"/images/{self.id}/thumbnail"
        body: dict[str, Any] = {
            "id": self.id, "name": self.name, "description": self.description,
            "creator": self.owner_id, "creatorName": self.owner_name,
            "isPrivate": self.is_private, "locked": self.is_private,
            "contentType": self.content_type, "size": self.size,
            "width": self.width, "height": self.height, "sha256": self.sha256,
            "groupId": self.group_id, "createdAt": self.created_at.isoformat(),
            "thumbnails": {
                "status": status,
                "small": f"{thumbs}?size=small" if ready else None,
                "preview": f"{thumbs}?size=preview" if ready else None,
            },
        }
        if access_key is not None and self.is_owned_by(viewer):
            body["accessKey"] = access_key  # stored hashed: shown only when set or generated
        return body


def sanitize_filename(raw: str | None) -> str:
    """A display name: no path, no control characters, bounded. Never used in a storage key."""
    name = unicodedata.normalize("NFC", raw or "")
    name = re.split(r"[\\/]", name)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().strip(".")
    return name[:MAX_NAME] or "image"


def parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and not isinstance(value, float):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("0", "1", "true", "false"):
        return value.strip().lower() in ("1", "true")
    raise BadRequest(f"{field} must be 0 or 1", code="invalid_field")


def parse_description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise BadRequest(f"description must be a string of at most {MAX_DESCRIPTION} characters",
                         code="invalid_field")
    return value


def parse_access_key(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not _ACCESS_KEY.match(value):
        raise BadRequest("accessKey must be 8-128 printable characters without spaces",
                         code="invalid_access_key")
    return value


def parse_group_id(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return inputs.parse_id(value, "groupId", code="invalid_field")


def check_group(uow: UnitOfWork, group_id: int | None) -> None:
    if group_id is not None and not uow.scalar("SELECT 1 FROM groups WHERE id = :g", g=group_id):
        raise BadRequest(f"group {group_id} does not exist", code="unknown_group")


def load(uow: UnitOfWork, image_id: int, *, for_update: bool = False) -> Image:
    lock = " FOR UPDATE OF i" if for_update else ""
    row = uow.one(f"SELECT {_COLUMNS} FROM {_FROM} WHERE i.id = :id{lock}", id=image_id)
    if row is None:
        raise NotFound(f"image {image_id} not found", code="image_not_found")
    return Image.from_row(row)


def get(image_id: int) -> Image:
    with unit_of_work() as uow:
        return load(uow, image_id)


# -- access control ----------------------------------------------------------
_verified: OrderedDict[tuple[int, str, str], bool] = OrderedDict()
_verified_lock = threading.Lock()


def _key_matches(image: Image, key: str) -> bool:
    """scrypt is deliberately slow: remember recent verdicts (keyed by a digest, not the key)."""
    if not image.access_key_hash:
        return False
    cache_key = (image.id, image.access_key_hash, hashlib.sha256(key.encode()).hexdigest())
    with _verified_lock:
        if cache_key in _verified:
            _verified.move_to_end(cache_key)
            return _verified[cache_key]
    verdict = verify_secret(key, image.access_key_hash)
    with _verified_lock:
        _verified[cache_key] = verdict
        while len(_verified) > 4096:
            _verified.popitem(last=False)
    return verdict


def access_key_limit() -> throttle.Limit:
    s = settings()
    return throttle.Limit("access_key", s.access_key_max_failures, s.failure_window_seconds,
                          "access_key_throttled",
                          "too many wrong access keys for this image: wait for the time in Retry-After")


def can_view(image: Image, who: Principal | None, access_key: str | None,
             source: str | None = None) -> bool:
    """Wrong keys are counted per image and source address; at the limit every key is
    refused with 429 (the right one too) until the window passes."""
    if not image.is_private or image.is_owned_by(who) or (who is not None and who.is_admin):
        return True
    if not access_key:
        return False
    reservation = throttle.reserve([(access_key_limit(), f"{image.id}|{source or '-'}")])
    if len(access_key) <= 128 and _key_matches(image, access_key):
        reservation.release()
        return True
    return False


def require_view(image: Image, who: Principal | None, access_key: str | None,
                 source: str | None = None) -> None:
    if not can_view(image, who, access_key, source):
        raise Forbidden("this image is private: the owner's token or its access key is required",
                        code="private_image")


def get_visible(image_id: int, who: Principal | None, access_key: str | None,
                source: str | None = None) -> Image:
    image = get(image_id)
    require_view(image, who, access_key, source)
    return image


def require_manage(image: Image, who: Principal) -> None:
    if not (image.is_owned_by(who) or who.is_admin):
        raise Forbidden("only the owner or an admin may change this image", code="not_owner")


def _store() -> ChunkStore:
    """The chunk store, imported on first use: it brings boto3, which the functions that
    only read image records (lists, info, groups) never need."""
    from imagerepo.chunkstore import default_store

    return default_store()


# -- commands ----------------------------------------------------------------
class QuotaExceeded(Forbidden):
    code = "quota_exceeded"


@dataclass(frozen=True)
class NewImage:
    filename: str | None
    data: bytes
    description: Any = None
    is_private: Any = None
    access_key: Any = None
    group_id: Any = None


@dataclass(frozen=True)
class Record:
    """A validated image row, whatever the way in (direct upload, large upload, import)."""

    owner_id: int
    sha256: str
    name: str
    description: str
    is_private: bool
    access_key_hash: str | None
    group_id: int | None
    info: imaging.ImageInfo
    size: int
    source: str | None = None
    source_ref: str | None = None


def insert(uow: UnitOfWork, rec: Record) -> int:
    """Insert the image row (the blob reference is taken by the caller in the same uow)."""
    check_group(uow, rec.group_id)
    return int(uow.scalar(
        "INSERT INTO images (owner_id, blob_sha256, name, description, is_private,"
        " access_key_hash, group_id, content_type, width, height, size, source, source_ref)"
        " VALUES (:owner, :sha, :name, :descr, :priv, :kh, :grp, :ct, :w, :h, :size, :src, :ref)"
        " RETURNING id",
        owner=rec.owner_id, sha=rec.sha256, name=rec.name, descr=rec.description,
        priv=rec.is_private, kh=rec.access_key_hash, grp=rec.group_id,
        ct=rec.info.content_type, w=rec.info.width, h=rec.info.height, size=rec.size,
        src=rec.source, ref=rec.source_ref))


def validated_info(sha256: str) -> imaging.ImageInfo | None:
    """How stored content was judged when it was validated (by any earlier image of it)."""
    with unit_of_work() as uow:
        row = uow.one("SELECT i.content_type, i.width, i.height FROM images i"
                      " JOIN blobs b ON b.sha256 = i.blob_sha256"
                      " WHERE i.blob_sha256 = :s AND b.refcount > 0 LIMIT 1", s=sha256)
    if row is None:
        return None
    from imagerepo import imaging

    fmt = next((f for f, ct in imaging.SUPPORTED_FORMATS.items() if ct == row["content_type"]), "")
    return imaging.ImageInfo(format=fmt, content_type=row["content_type"], width=row["width"],
                             height=row["height"], frames=1)


def create(owner: Principal, new: NewImage) -> tuple[Image, str | None]:
    """Validate by decoding, store the bytes deduplicated, record the image; one transaction."""
    s = settings()
    if len(new.data) > s.max_upload_bytes:
        raise PayloadTooLarge(
            f"file is {len(new.data)} bytes; direct uploads take at most {s.max_upload_bytes}:"
            " use POST /uploads for larger files", code="use_uploads")
    description = parse_description(new.description)
    is_private = parse_bool(new.is_private, "isPrivate") if new.is_private not in (None, "") else False
    access_key = parse_access_key(new.access_key)
    group_id = parse_group_id(new.group_id)
    digest = hashlib.sha256(new.data).hexdigest()
    # Content already stored was validated when it first came in: its SHA-256 vouches
    # for it, so a duplicate upload is not decoded again.
    info = validated_info(digest)
    if info is None:
        from imagerepo import imaging  # Pillow: only the functions that decode load it

        info = imaging.inspect_image(new.data, max_pixels=s.max_image_pixels)
    if is_private and access_key is None:
        access_key = generate_access_key()
    key_hash = hash_secret(access_key) if access_key else None
    with unit_of_work() as uow:
        check_group(uow, group_id)  # before storing anything
        check_quota(uow, owner, len(new.data))
        blob = _store().put(uow, new.data, sha256=digest)
        image_id = insert(uow, Record(
            owner_id=owner.user_id, sha256=blob.sha256, name=sanitize_filename(new.filename),
            description=description, is_private=is_private, access_key_hash=key_hash,
            group_id=group_id, info=info, size=len(new.data)))
        image = load(uow, image_id)
        uow.commit()
    observability.count(observability.UPLOADS)
    return image, access_key


def update(image_id: int, who: Principal, changes: dict[str, Any]) -> tuple[Image, str | None]:
    allowed = {"description", "isPrivate", "accessKey", "groupId"}
    reject_unknown_fields(changes, allowed)
    new_key: str | None = None
    with unit_of_work() as uow:
        image = load(uow, image_id, for_update=True)
        require_manage(image, who)
        sets: dict[str, Any] = {}
        if "description" in changes:
            sets["description"] = parse_description(changes["description"])
        is_private = image.is_private
        if "isPrivate" in changes:
            is_private = parse_bool(changes["isPrivate"], "isPrivate")
            sets["is_private"] = is_private
        if "accessKey" in changes:
            new_key = parse_access_key(changes["accessKey"])
            sets["access_key_hash"] = hash_secret(new_key) if new_key else None
        if is_private and not sets.get("access_key_hash", image.access_key_hash):
            new_key = generate_access_key()
            sets["access_key_hash"] = hash_secret(new_key)
        if "groupId" in changes:
            sets["group_id"] = parse_group_id(changes["groupId"])
            check_group(uow, sets["group_id"])
        if sets:
            assignments = ", ".join(f"{column} = :{column}" for column in sets)
            uow.run(f"UPDATE images SET {assignments}, updated_at = now() WHERE id = :id",
                    id=image_id, **sets)
        image = load(uow, image_id)
        uow.commit()
    return image, new_key


def new_access_key(image_id: int, who: Principal) -> str:
    """A fresh generated key for the image (owner or admin); the old key stops working.

    This is how a key reaches its owner after an admin made the image private."""
    key = generate_access_key()
    with unit_of_work() as uow:
        image = load(uow, image_id, for_update=True)
        require_manage(image, who)
        uow.run("UPDATE images SET access_key_hash = :kh, updated_at = now() WHERE id = :id",
                kh=hash_secret(key), id=image_id)
        uow.commit()
    return key


def _remove(uow: UnitOfWork, image_id: int, sha256: str) -> None:
    """Delete the row and release its blob reference, in the caller's transaction."""
    uow.run("DELETE FROM images WHERE id = :id", id=image_id)
    _store().release(uow, sha256)


def delete(image_id: int, who: Principal) -> None:
    with unit_of_work() as uow:
        image = load(uow, image_id, for_update=True)
        require_manage(image, who)
        _remove(uow, image_id, image.sha256)
        uow.commit()


def delete_all_owned_by(uow: UnitOfWork, owner_id: int) -> int:
    """Every image of an account, each exactly as :func:`delete` does (blobs in hash order)."""
    rows = uow.rows("SELECT id, blob_sha256 FROM images WHERE owner_id = :o"
                    " ORDER BY blob_sha256 COLLATE \"C\", id FOR UPDATE", o=owner_id)
    for row in rows:
        _remove(uow, row["id"], row["blob_sha256"].strip())
    return len(rows)


def check_quota(uow: UnitOfWork, owner: Principal, adding: int) -> None:
    """The owner's images plus ``adding`` bytes must fit the per-user quota (logical bytes;
    administrators, who run imports, are exempt). Also holds the account row (KEY SHARE)
    until commit, so a concurrent account deletion waits for this upload and removes it."""
    row = uow.one("SELECT role FROM users WHERE id = :o FOR KEY SHARE", o=owner.user_id)
    if row is None:
        raise Unauthorized("the account no longer exists", code="invalid_token")
    quota = settings().user_quota_bytes
    if row["role"] == "admin" or quota <= 0:
        return
    used = int(uow.scalar("SELECT coalesce(sum(size), 0) FROM images WHERE owner_id = :o",
                          o=owner.user_id))
    if used + adding > quota:
        raise QuotaExceeded(f"storage quota exceeded: {used} of {quota} bytes used,"
                            f" this file needs {adding}")


def read_bytes(image: Image) -> bytes:
    return _store().read(image.sha256)


# -- queries -----------------------------------------------------------------
def visibility_clause(who: Principal | None) -> tuple[str, dict[str, Any]]:
    if who is not None and who.is_admin:
        return "TRUE", {}
    if who is not None:
        return "(NOT i.is_private OR i.owner_id = :viewer)", {"viewer": who.user_id}
    return "NOT i.is_private", {}


def stats() -> dict[str, Any]:
    with unit_of_work() as uow:
        row = uow.one(
            "SELECT (SELECT count(*) FROM users) AS users, (SELECT count(*) FROM images) AS images,"
            " (SELECT coalesce(sum(size), 0) FROM images) AS logical")
        store = _store().stats(uow)
    assert row is not None
    stored = int(store["storedBytes"])
    logical = int(row["logical"])
    return {
        "users": int(row["users"]), "images": int(row["images"]),
        "blobs": int(store["blobs"]), "chunks": int(store["chunks"]),
        "logicalBytes": logical, "storedBytes": stored,
        "dedupRatio": round(logical / stored, 4) if stored else None,
    }
