"""imagerepo_cli internals: the streamed multipart body, file collection, errors, the session file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import requests

from imagerepo import multipart
from imagerepo_cli.api import EXIT_AUTH, EXIT_NOT_FOUND, ApiError, CredentialStore, token_rejected
from imagerepo_cli.main import main
from imagerepo_cli.upload import MultipartStream, collect


def test_the_streamed_body_is_what_the_api_parses(tmp_path: Path) -> None:
    photo = tmp_path / 'we"ird ñame.jpg'
    data = bytes(range(256)) * 3000 + b"\r\n--not-the-boundary\r\n"
    photo.write_bytes(data)
    seen: list[int] = []
    stream = MultipartStream([("description", "héllo"), ("isPrivate", "1")], "file", photo, "image/jpeg",
                             seen.append)
    body = b"".join(stream)
    assert len(body) == len(stream)
    assert sum(seen) == len(data)
    form = multipart.parse(body, stream.content_type)
    assert form.fields == {"description": "héllo", "isPrivate": "1"}
    assert form.files["file"].data == data
    assert form.files["file"].filename == "we%22ird ñame.jpg"


def test_collect_walks_folders_for_images_only(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ("a/1.jpg", "a/b/2.HEIC", "a/notes.txt", "a/.hidden.png", ".git/x.jpg", "z.webp"):
        (tmp_path / name).write_bytes(b"x")
    found = collect([str(tmp_path), str(tmp_path / "a" / "1.jpg"), str(tmp_path / "a" / "notes.txt")])
    names = [p.relative_to(tmp_path).as_posix() for p in found]
    assert names == ["z.webp", "a/1.jpg", "a/b/2.HEIC", "a/notes.txt"]  # each once; named files always


def response(status: int, body: object) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = json.dumps(body).encode()
    r.headers["content-type"] = "application/json"
    return r


def test_errors_carry_the_api_message_and_exit_codes() -> None:
    e = ApiError.from_response(response(404, {"error": {"code": "not_found",
                                                        "message": "image 9 not found"}}))
    assert e.exit_code == EXIT_NOT_FOUND and e.message == "image 9 not found (HTTP 404, not_found)"
    missing = ApiError.from_response(response(404, {"message": "Not Found"}), "token refresh")
    assert missing.message.startswith("this server does not offer token refresh")
    assert ApiError.from_response(response(401, {"message": "Unauthorized"})).exit_code == EXIT_AUTH


def test_a_throttled_answer_says_how_long_to_wait() -> None:
    r = response(429, {"error": {"code": "login_throttled",
                                 "message": "too many failed logins: wait for the time in Retry-After"}})
    r.headers["Retry-After"] = "897"
    e = ApiError.from_response(r)
    assert e.retry_after == 897
    assert e.message == ("too many failed logins: wait for the time in Retry-After; try again in 897 s"
                         " (HTTP 429, login_throttled)")


def test_which_answers_mean_the_token_was_refused() -> None:
    assert token_rejected(response(401, {"error": {"code": "invalid_token", "message": "expired"}}))
    assert token_rejected(response(403, {"message": "Forbidden"}))  # the authorizer's denial
    assert not token_rejected(response(401, {"error": {"code": "invalid_credentials", "message": "no"}}))
    assert not token_rejected(response(403, {"error": {"code": "forbidden", "message": "not yours"}}))
    assert not token_rejected(response(404, {"message": "Not Found"}))


def test_the_session_file_is_private(tmp_path: Path) -> None:
    store = CredentialStore(tmp_path / "cfg" / "imagerepo" / "credentials.json")
    store.put("http://a", {"access_token": "t"})
    store.put("http://b", {"access_token": "u"})
    store.put("http://a", None)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.get("http://a") is None and store.get("http://b") == {"access_token": "u"}


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["download"]) == 2
    assert main(["rm", "0"]) == 2
    assert "must be 1 or more" in capsys.readouterr().err


def test_an_image_is_an_id_or_a_share_link() -> None:
    from imagerepo_cli.main import image_ref

    assert image_ref("42") == 42 and image_ref("42").key is None
    link = image_ref("https://d111.cloudfront.net/image/7#key=-ab%2Bc_d")
    assert link == 7 and link.key == "-ab+c_d"
    assert image_ref("http://127.0.0.1:3000/image/9?key=k1").key == "k1"
    with pytest.raises(Exception, match="must be 1 or more"):
        image_ref("0")
