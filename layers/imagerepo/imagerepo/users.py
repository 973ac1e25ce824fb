"""Accounts: registration, authentication, admin bootstrap."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pg8000.exceptions

from imagerepo import observability
from imagerepo.db import UnitOfWork, unique_violation, unit_of_work
from imagerepo.errors import BadRequest, Conflict, NotFound, Unauthorized
from imagerepo.security import Principal, dummy_hash, hash_secret, verify_secret

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
MIN_PASSWORD, MAX_PASSWORD = 8, 256


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
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise BadRequest(f"password must be {MIN_PASSWORD}-{MAX_PASSWORD} characters",
                         code="invalid_password")
    return name.strip(), email.strip().lower(), password


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


def authenticate(username: Any, password: Any) -> User:
    """Same error and about the same time for an unknown user and a wrong password."""
    if not isinstance(username, str) or not isinstance(password, str) \
            or not username or len(username) > 254 or len(password) > MAX_PASSWORD:
        raise BadRequest("username and password are required strings", code="invalid_credentials_format")
    with unit_of_work() as uow:
        row = uow.one(
            "SELECT id, name, email, role, password_hash FROM users"
            " WHERE lower(email) = lower(:u) OR lower(name) = lower(:u)"
            " ORDER BY (lower(email) = lower(:u)) DESC LIMIT 1",
            u=username.strip(),
        )
    stored = row["password_hash"] if row else dummy_hash()
    if not verify_secret(password, stored) or row is None:
        observability.count(observability.FAILED_LOGINS)
        raise Unauthorized("invalid username or password", code="invalid_credentials")
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
