"""Accounts and sessions: registration, login, refresh, logout, password change, account
deletion, administration, and the per-request check of a token's session.

A login starts a *session* (table ``sessions``). Access tokens name it (claim
``sid``) and live ``TOKEN_TTL_SECONDS`` (15 min by default); refresh tokens are
opaque, stored as SHA-256 and rotate on every use. Presenting a used refresh
token again ends the whole session (someone holds a copy). :func:`current`
reads the session and the account with one indexed query on every request, so
a logout, a password change, a disable, a demotion or a deletion takes effect
on the very next request, whatever the authorizer cached.
"""

from __future__ import annotations

import functools
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pg8000.exceptions

from imagerepo import observability, security, throttle
from imagerepo.config import settings
from imagerepo.db import UnitOfWork, unique_violation, unit_of_work
from imagerepo.errors import BadRequest, Conflict, Forbidden, NotFound, Unauthorized, reject_unknown_fields
from imagerepo.security import Principal, dummy_hash, hash_secret, verify_secret

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD, MAX_PASSWORD = 8, 256
COMMON_PASSWORDS = Path(__file__).parent / "data" / "common-passwords.txt"
ROLES = ("user", "admin")


@functools.cache
def common_passwords() -> frozenset[str]:
    """The 10,000 most common passwords (lower-case), see data/README.md for the source."""
    return frozenset(COMMON_PASSWORDS.read_text(encoding="utf-8").split("\n")) - {""}


def validate_password(password: Any, field: str = "password") -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"{field} must be {MIN_PASSWORD}-{MAX_PASSWORD} characters",
                         code="invalid_password")
    if password.lower() in common_passwords():
        raise BadRequest(f"{field} is one of the 10,000 most common passwords: choose another",
                         code="common_password")
    return password


@dataclass(frozen=True)
class User:
    id: int
    name: str
    email: str
    role: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "email": self.email, "role": self.role}

    @property
    def principal(self) -> Principal:
        return Principal(user_id=self.id, role=self.role, name=self.name)


def _user(row: dict[str, Any]) -> User:
    return User(id=row["id"], name=row["name"], email=row["email"], role=row["role"])


def validate_registration(name: Any, email: Any, password: Any) -> tuple[str, str, str]:
    if not isinstance(name, str) or not _NAME.match(name.strip()):
        raise BadRequest("name must be 1-64 letters, digits, spaces, '_', '.' or '-'",
                         code="invalid_name")
    if not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email.strip()):
        raise BadRequest("email is not a valid address", code="invalid_email")
    return name.strip(), email.strip().lower(), validate_password(password)


def register(name: Any, email: Any, password: Any, role: str = "user") -> User:
    name, email, password = validate_registration(name, email, password)
    password_hash = hash_secret(password)
    try:
        with unit_of_work() as uow:
            row = uow.one(
                "INSERT INTO users (name, email, role, password_hash)"
                " VALUES (:name, :email, :role, :ph) RETURNING id, name, email, role",
                name=name, email=email, role=role, ph=password_hash,
            )
            uow.commit()
    except pg8000.exceptions.DatabaseError as exc:
        constraint = unique_violation(exc)
        if constraint == "users_name_key":
            raise Conflict("that name is taken", code="name_taken") from exc
        if constraint == "users_email_key":
            raise Conflict("that email is already registered", code="email_taken") from exc
        raise
    assert row is not None
    return _user(row)


def login_limits() -> tuple[throttle.Limit, throttle.Limit]:
    """Failed logins per account, and per source address (a generous default)."""
    s = settings()
    message = "too many failed logins: wait for the time in Retry-After"
    return (throttle.Limit("login_account", s.login_account_max_failures,
                           s.failure_window_seconds, "login_throttled", message),
            throttle.Limit("login_source", s.login_source_max_failures,
                           s.failure_window_seconds, "login_throttled", message))


def _check_password(user_id: int | None, username: str, password: str, stored: str | None,
                    source: str | None) -> None:
    """Verify under the failure limits: refused (429) at the limit even when right."""
    per_account, per_source = login_limits()
    # An unknown name is counted under its digest: what people type there is often a
    # password meant for another field, and is never stored.
    subject = f"user:{user_id}" if user_id else "name:" + security.token_digest(username.lower()).hex()
    checks = [(per_account, subject)]
    if source:
        checks.append((per_source, source))
    reservation = throttle.reserve(checks)
    # An unknown account costs the same scrypt as a wrong password.
    if not verify_secret(password, stored or dummy_hash()) or stored is None:
        observability.count(observability.FAILED_LOGINS)
        raise Unauthorized("invalid username or password", code="invalid_credentials")
    reservation.release()


def authenticate(username: Any, password: Any, source: str | None = None) -> User:
    """Same error and about the same time for an unknown user and a wrong password."""
    if not isinstance(username, str) or not isinstance(password, str) \
            or not username or len(username) > 254 or len(password) > MAX_PASSWORD:
        raise BadRequest("username and password are required strings", code="invalid_credentials_format")
    with unit_of_work() as uow:
        row = uow.one(
            "SELECT id, name, email, role, disabled, password_hash FROM users"
            " WHERE lower(email) = lower(:u) OR lower(name) = lower(:u)"
            " ORDER BY (lower(email) = lower(:u)) DESC LIMIT 1",
            u=username.strip(),
        )
    _check_password(row["id"] if row else None, username.strip(), password,
                    row["password_hash"] if row else None, source)
    assert row is not None
    if row["disabled"]:
        raise Forbidden("this account is disabled", code="account_disabled")
    return _user(row)


def get(user_id: int, uow: UnitOfWork | None = None) -> User:
    def load(u: UnitOfWork) -> dict[str, Any] | None:
        return u.one("SELECT id, name, email, role FROM users WHERE id = :id", id=user_id)

    if uow is not None:
        row = load(uow)
    else:
        with unit_of_work() as own:
            row = load(own)
    if row is None:
        raise NotFound("user not found", code="user_not_found")
    return _user(row)


def ensure_admin(email: str, password: str, name: str = "admin") -> User:
    """Create the admin account, or make the existing account admin with this password."""
    _, email, password = validate_registration(name, email, password)
    password_hash = hash_secret(password)
    with unit_of_work() as uow:
        row = uow.one(
            "UPDATE users SET role = 'admin', password_hash = :ph WHERE lower(email) = :email"
            " RETURNING id, name, email, role",
            ph=password_hash, email=email,
        )
        if row is None:
            candidate, n = name, 1
            while uow.scalar("SELECT 1 FROM users WHERE lower(name) = lower(:n)", n=candidate):
                n += 1
                candidate = f"{name}{n}"
            row = uow.one(
                "INSERT INTO users (name, email, role, password_hash)"
                " VALUES (:name, :email, 'admin', :ph) RETURNING id, name, email, role",
                name=candidate, email=email, ph=password_hash,
            )
        uow.commit()
    assert row is not None
    return _user(row)


# -- sessions -----------------------------------------------------------------------------
_SESSION_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_REFRESH_TOKEN = 128
_ENDED = "the session has ended (logout, password change or refresh-token reuse): log in again"


def _revoke(uow: UnitOfWork, why: str, *, session_id: str | None = None,
            user_id: int | None = None, keep: str | None = None) -> None:
    if session_id is not None:
        uow.run("UPDATE sessions SET revoked_at = now(), revoked_why = :why"
                " WHERE id = CAST(:sid AS uuid) AND revoked_at IS NULL", sid=session_id, why=why)
    if user_id is not None:
        uow.run("UPDATE sessions SET revoked_at = now(), revoked_why = :why WHERE user_id = :u"
                " AND revoked_at IS NULL AND id IS DISTINCT FROM CAST(:keep AS uuid)",
                u=user_id, keep=keep, why=why)


def _token_pair(principal: Principal, session_id: str, refresh: str) -> dict[str, Any]:
    access, ttl = security.issue_token(principal, session_id)
    return {"access_token": access, "token_type": "Bearer", "expires_in": ttl,
            "refresh_token": refresh, "refresh_expires_in": settings().refresh_ttl_seconds}


def start_session(user: User) -> dict[str, Any]:
    """A new session for a user who just proved their password: an access and a refresh token."""
    session_id = str(uuid.uuid4())
    refresh, digest = security.refresh_token()
    with unit_of_work() as uow:
        uow.run("INSERT INTO sessions (id, user_id, expires_at) VALUES (CAST(:sid AS uuid), :u,"
                " now() + make_interval(secs => :ttl))",
                sid=session_id, u=user.id, ttl=settings().refresh_ttl_seconds)
        uow.run("INSERT INTO refresh_tokens (token_hash, session_id) VALUES (:h, CAST(:sid AS uuid))",
                h=digest, sid=session_id)
        # Bounded housekeeping: sessions a day past their end go, with their refresh tokens.
        uow.run("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions"
                " WHERE expires_at < now() - interval '1 day' LIMIT 100)")
        uow.commit()
    return _token_pair(user.principal, session_id, refresh)


def login(username: Any, password: Any, source: str | None = None) -> dict[str, Any]:
    return start_session(authenticate(username, password, source))


def refresh(token: Any) -> dict[str, Any]:
    """Rotate: the presented token dies, a new pair is returned. A used token presented
    again ends its whole session."""
    if not isinstance(token, str) or not token or len(token) > MAX_REFRESH_TOKEN:
        raise BadRequest("refresh_token is required", code="invalid_refresh_token_format")
    new_refresh, new_digest = security.refresh_token()
    with unit_of_work() as uow:
        row = uow.one(
            "SELECT rt.session_id::text AS sid, rt.used_at, s.revoked_at, s.user_id,"
            " s.expires_at > now() AS live, u.name, u.email, u.role, u.disabled"
            " FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id"
            " JOIN users u ON u.id = s.user_id WHERE rt.token_hash = :h FOR UPDATE OF rt, s",
            h=security.token_digest(token))
        if row is None:
            raise Unauthorized("unknown or expired refresh token", code="invalid_refresh_token")
        if row["used_at"] is not None:
            if row["revoked_at"] is None:
                _revoke(uow, "refresh_reuse", session_id=row["sid"])
                uow.commit()
            raise Unauthorized("this refresh token was already used: the session has ended",
                               code="refresh_token_reused")
        if row["revoked_at"] is not None or not row["live"]:
            raise Unauthorized(_ENDED, code="invalid_refresh_token")
        if row["disabled"]:
            raise Forbidden("this account is disabled", code="account_disabled")
        uow.run("UPDATE refresh_tokens SET used_at = now() WHERE token_hash = :h",
                h=security.token_digest(token))
        uow.run("INSERT INTO refresh_tokens (token_hash, session_id) VALUES (:h, CAST(:sid AS uuid))",
                h=new_digest, sid=row["sid"])
        uow.run("UPDATE sessions SET expires_at = now() + make_interval(secs => :ttl)"
                " WHERE id = CAST(:sid AS uuid)", sid=row["sid"], ttl=settings().refresh_ttl_seconds)
        uow.commit()
    user = User(id=row["user_id"], name=row["name"], email=row["email"], role=row["role"])
    return _token_pair(user.principal, row["sid"], new_refresh)


def logout(who: Principal, refresh_token: Any = None) -> None:
    """End the caller's session (so the presented access token too), and the session of
    ``refresh_token`` when it is the caller's."""
    if refresh_token is not None and (not isinstance(refresh_token, str)
                                      or len(refresh_token) > MAX_REFRESH_TOKEN):
        raise BadRequest("refresh_token must be a string", code="invalid_refresh_token_format")
    with unit_of_work() as uow:
        if who.session_id:
            _revoke(uow, "logout", session_id=who.session_id)
        if refresh_token:
            sid = uow.scalar(
                "SELECT s.id::text FROM refresh_tokens rt JOIN sessions s ON s.id = rt.session_id"
                " WHERE rt.token_hash = :h AND s.user_id = :u",
                h=security.token_digest(refresh_token), u=who.user_id)
            if sid:
                _revoke(uow, "logout", session_id=sid)
        uow.commit()


def current(who: Principal) -> Principal:
    """The caller as the database knows them now (one indexed read): 401 when the token's
    session has ended or the account is gone, 403 when it is disabled; the role is the
    database's, not the token's."""
    if who.expires_at is not None and who.expires_at + 5 < time.time():
        raise Unauthorized("invalid or expired token", code="invalid_token")
    if not who.session_id or not _SESSION_ID.match(who.session_id):
        raise Unauthorized("the token names no session: log in again", code="invalid_token")
    with unit_of_work() as uow:
        row = uow.one(
            "SELECT u.id, u.name, u.role, u.disabled,"
            " (s.revoked_at IS NULL AND s.expires_at > now()) AS live"
            " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = CAST(:sid AS uuid)",
            sid=who.session_id)
    if row is None or row["id"] != who.user_id:
        raise Unauthorized(_ENDED, code="invalid_token")
    if row["disabled"]:
        raise Forbidden("this account is disabled", code="account_disabled")
    if not row["live"]:
        raise Unauthorized(_ENDED, code="invalid_token")
    return Principal(user_id=row["id"], role=row["role"], name=row["name"],
                     session_id=who.session_id, expires_at=who.expires_at)


# -- the caller's own account -------------------------------------------------------------
def _verify_own_password(user_id: int, password: Any, field: str) -> None:
    """The caller re-proves their password (throttled like logins on this account)."""
    if not isinstance(password, str) or not password or len(password) > MAX_PASSWORD:
        raise BadRequest(f"{field} is required", code="invalid_field")
    with unit_of_work() as uow:
        stored = uow.scalar("SELECT password_hash FROM users WHERE id = :u", u=user_id)
    if stored is None:
        raise Unauthorized(_ENDED, code="invalid_token")
    per_account, _ = login_limits()
    reservation = throttle.reserve([(per_account, f"user:{user_id}")])
    if not verify_secret(password, stored):
        raise Forbidden(f"{field} is not the account's password", code="wrong_password")
    reservation.release()


def change_password(who: Principal, current_password: Any, new_password: Any) -> None:
    """Set a new password; every other session of the account ends, this one goes on."""
    new_password = validate_password(new_password, "newPassword")
    _verify_own_password(who.user_id, current_password, "currentPassword")
    password_hash = hash_secret(new_password)
    with unit_of_work() as uow:
        uow.run("UPDATE users SET password_hash = :ph WHERE id = :u", ph=password_hash, u=who.user_id)
        _revoke(uow, "password_change", user_id=who.user_id, keep=who.session_id)
        uow.commit()


def delete_account(who: Principal, password: Any) -> int:
    """Delete the account: its images (each releasing its blob reference, as an image delete
    does), uploads, sessions and OneDrive state. Returns the number of images deleted."""
    # Imported here: images pulls in the chunk store (boto3) and Pillow, which the
    # per-request session check and logins must not load.
    from imagerepo import images

    _verify_own_password(who.user_id, password, "password")
    with unit_of_work() as uow:
        # The row lock waits for uploads in flight (they hold FOR KEY SHARE, see
        # images.check_quota), whose images are then deleted with the others.
        if uow.scalar("SELECT id FROM users WHERE id = :u FOR UPDATE", u=who.user_id) is None:
            raise Unauthorized(_ENDED, code="invalid_token")
        removed = images.delete_all_owned_by(uow, who.user_id)
        uow.run("DELETE FROM users WHERE id = :u", u=who.user_id)
        uow.commit()
    return removed


# -- administration -----------------------------------------------------------------------
_ADMIN_COLUMNS = ("u.id, u.name, u.email, u.role, u.disabled, u.created_at,"
                  " (SELECT count(*) FROM images i WHERE i.owner_id = u.id) AS image_count")


def _admin_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "email": row["email"], "role": row["role"],
            "disabled": row["disabled"], "createdAt": row["created_at"].isoformat(),
            "imageCount": int(row["image_count"])}


def admin_page(page: int, page_size: int) -> tuple[list[dict[str, Any]], int]:
    with unit_of_work() as uow:
        total = int(uow.scalar("SELECT count(*) FROM users"))
        rows = uow.rows(f"SELECT {_ADMIN_COLUMNS} FROM users u ORDER BY u.id"
                        " LIMIT :l OFFSET :o", l=page_size, o=(page - 1) * page_size)
    return [_admin_json(r) for r in rows], total


def admin_update(admin: Principal, user_id: int, changes: dict[str, Any]) -> dict[str, Any]:
    """Change a user's role or disabled state; effective on that user's next request.
    Disabling also ends every session, so re-enabling does not revive old tokens."""
    reject_unknown_fields(changes, {"role", "disabled"})
    sets: dict[str, Any] = {}
    if "role" in changes:
        if changes["role"] not in ROLES:
            raise BadRequest("role must be 'user' or 'admin'", code="invalid_field")
        sets["role"] = changes["role"]
    if "disabled" in changes:
        if not isinstance(changes["disabled"], bool):
            raise BadRequest("disabled must be true or false", code="invalid_field")
        sets["disabled"] = changes["disabled"]
    if user_id == admin.user_id and (sets.get("role", "admin") != "admin" or sets.get("disabled")):
        raise Conflict("administrators cannot demote or disable their own account",
                       code="own_account")
    with unit_of_work() as uow:
        if sets:
            assignments = ", ".join(f"{column} = :{column}" for column in sets)
            found = uow.scalar(f"UPDATE users SET {assignments} WHERE id = :id RETURNING id",
                               id=user_id, **sets)
            if found is None:
                raise NotFound("user not found", code="user_not_found")
            if sets.get("disabled"):
                _revoke(uow, "disabled", user_id=user_id)
        row = uow.one(f"SELECT {_ADMIN_COLUMNS} FROM users u WHERE u.id = :id", id=user_id)
        if row is None:
            raise NotFound("user not found", code="user_not_found")
        uow.commit()
    return _admin_json(row)
