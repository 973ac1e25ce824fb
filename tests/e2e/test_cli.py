"""The ``imagerepo`` command against the real local stack, over HTTP, as a user runs it."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.conftest import make_jpeg
from tests.helpers import Api, register_and_login, unique

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-passw0rd"


def cli_command() -> list[str]:
    script = Path(sys.executable).parent / "imagerepo"
    return [str(script)] if script.exists() else [sys.executable, "-m", "imagerepo_cli"]


class Cli:
    def __init__(self, base_url: str, home: Path) -> None:
        self.env = {**os.environ, "IMAGEREPO_URL": base_url, "XDG_CONFIG_HOME": str(home),
                    "PYTHONPATH": str(ROOT / "client")}

    def __call__(self, *args: str, stdin: str = "",
                 expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([*cli_command(), *args], input=stdin, capture_output=True, text=True,
                           env=self.env, timeout=600)
        if expect is not None:
            assert p.returncode == expect, f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
        return p

    def json(self, *args: str, expect: int = 0) -> Any:
        return json.loads(self("--json", *args, expect=expect).stdout)

    def login(self, name: str, password: str = PASSWORD) -> None:
        self("login", "--username", name, "--password-stdin", stdin=password + "\n")


@pytest.fixture
def account(base_url: str) -> tuple[Api, dict[str, Any]]:
    return register_and_login(base_url)


@pytest.fixture
def cli(base_url: str, tmp_path: Path) -> Cli:
    return Cli(base_url, tmp_path / "config")


def photos(folder: Path, count: int, seed: int) -> list[Path]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        sub = folder / ("a" if i % 2 else "b") / ("deep" if i % 5 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        p = sub / f"IMG_{i:04d}.jpg"
        p.write_bytes(make_jpeg(48 + rng.randrange(32), 40, seed=seed * 1000 + i))
        out.append(p)
    return out


def test_login_whoami_logout_and_the_stored_session(cli: Cli, account: tuple[Api, dict[str, Any]],
                                                   tmp_path: Path) -> None:
    _, user = account
    p = cli("whoami", expect=3)
    assert "not logged in" in p.stderr
    p = cli("login", "--username", user["name"], "--password-stdin", stdin="wrong password\n", expect=3)
    assert "HTTP 401" in p.stderr
    cli.login(user["name"])
    creds = tmp_path / "config" / "imagerepo" / "credentials.json"
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.parent.stat().st_mode) == 0o700
    me = cli.json("whoami")
    assert me == {"id": user["id"], "name": user["name"], "email": user["email"], "role": "user"}
    assert user["name"] in cli("whoami").stdout
    cli("logout")
    cli("whoami", expect=3)
    assert user["name"] not in creds.read_text()


def test_an_expired_session_is_refreshed_or_reported(cli: Cli, account: tuple[Api, dict[str, Any]],
                                                    tmp_path: Path, base_url: str) -> None:
    _, user = account
    cli.login(user["name"])
    creds = tmp_path / "config" / "imagerepo" / "credentials.json"
    data = json.loads(creds.read_text())
    session = data["servers"][base_url]
    session["expires_at"] = 0
    creds.write_text(json.dumps(data))
    if session.get("refresh_token"):  # the server issues refresh tokens: whoami refreshes
        assert cli.json("whoami")["id"] == user["id"]
        renewed = json.loads(creds.read_text())["servers"][base_url]
        assert renewed["access_token"] != session["access_token"]
    else:  # access tokens only: the CLI says to log in again, exit 3
        p = cli("whoami", expect=3)
        assert "session expired" in p.stderr


def test_a_refused_token_ends_the_stored_session(cli: Cli, account: tuple[Api, dict[str, Any]],
                                                 tmp_path: Path, base_url: str) -> None:
    _, user = account
    cli.login(user["name"])
    creds = tmp_path / "config" / "imagerepo" / "credentials.json"
    data = json.loads(creds.read_text())
    data["servers"][base_url]["access_token"] = "not.a.token"
    data["servers"][base_url].pop("refresh_token", None)
    creds.write_text(json.dumps(data))
    p = cli("whoami", expect=3)  # the authorizer's 403 denial, not "forbidden" (5)
    assert "run 'imagerepo login'" in p.stderr
    assert base_url not in json.loads(creds.read_text())["servers"]


def test_upload_a_folder_of_50_photos_then_again_uploads_nothing(
        cli: Cli, account: tuple[Api, dict[str, Any]], tmp_path: Path) -> None:
    api, user = account
    folder = tmp_path / "photos"
    files = photos(folder, 50, seed=7)
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.jpg").write_bytes(make_jpeg(seed=99))
    cli.login(user["name"])

    p = cli("upload", str(folder), "--jobs", "4", "--description", "holiday")
    lines = [line for line in p.stdout.splitlines() if line.startswith("[")]
    assert len(lines) == 50
    assert sorted(int(line[1:line.index("/")]) for line in lines) == list(range(1, 51))
    assert all("/50] uploaded " in line for line in lines)
    assert p.stdout.rstrip().endswith("50 files: 50 uploaded, 0 skipped, 0 failed")

    listed = cli.json("ls", "--mine", "--all", "--page-size", "100")
    assert listed["total"] == 50
    digests = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    assert sorted(i["sha256"] for i in listed["items"]) == digests
    assert {i["description"] for i in listed["items"]} == {"holiday"}
    assert {i["name"] for i in listed["items"]} == {f.name for f in files}

    again = cli.json("upload", str(folder))
    assert (again["uploaded"], again["skipped"], again["failed"]) == (0, 50, 0)
    assert all(r["duplicateOf"].startswith("already uploaded as id") for r in again["results"])
    r = api.get("/images", params={"owner": "me", "pageSize": 100})
    assert r.json()["total"] == 50


def test_upload_skips_same_content_in_one_run_and_uses_uploads_for_large_files(
        cli: Cli, account: tuple[Api, dict[str, Any]], tmp_path: Path) -> None:
    _api, user = account
    cli.login(user["name"])
    a = tmp_path / "a.jpg"
    a.write_bytes(make_jpeg(seed=4242))
    copy = tmp_path / "copy-of-a.jpg"
    copy.write_bytes(a.read_bytes())
    big = tmp_path / "big.png"
    rng = random.Random(5)
    img = Image.frombytes("RGB", (1500, 1400), rng.randbytes(1500 * 1400 * 3))
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    big.write_bytes(out.getvalue())
    assert big.stat().st_size > 4_500_000
    result = cli.json("upload", str(a), str(copy), str(big), "--private")
    by_path = {Path(r["path"]).name: r for r in result["results"]}
    assert by_path["a.jpg"]["status"] == "uploaded"
    assert by_path["copy-of-a.jpg"]["status"] == "skipped"
    assert by_path["copy-of-a.jpg"]["duplicateOf"] == f"same content as {a}"
    large = by_path["big.png"]
    assert large["status"] == "uploaded", large
    assert large["image"]["size"] == big.stat().st_size
    assert large["image"]["isPrivate"] is True
    assert large["image"]["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    # the bytes came back whole, through the API
    down = tmp_path / "down"
    cli("download", str(large["id"]), "-o", str(down))
    assert (down / "big.png").read_bytes() == big.read_bytes()


def test_share_prints_a_link_that_opens_the_image_for_another_user(
        cli: Cli, account: tuple[Api, dict[str, Any]], base_url: str, tmp_path: Path) -> None:
    _, user = account
    cli.login(user["name"])
    photo = tmp_path / "shared.jpg"
    photo.write_bytes(make_jpeg(seed=777))
    image = cli.json("upload", str(photo))["results"][0]["image"]
    assert image["isPrivate"] is False

    link = cli("share", str(image["id"])).stdout.strip()
    assert link.startswith(f"{base_url}/image/{image['id']}#key=")
    key = link.split("#key=", 1)[1]
    other, _ = register_and_login(base_url)
    assert other.get(f"/images/{image['id']}/info").status_code == 403
    r = other.get(f"/images/{image['id']}", params={"accessKey": key})
    assert r.status_code == 200 and r.content == photo.read_bytes()
    # the link's page is the gallery (the web app reads the key from the fragment)
    page = other.get(link.split("#")[0].removeprefix(base_url), headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert b'<script type="module" src="/js/app.js"></script>' in page.content

    # the other user downloads it with the key; unshare ends the link
    cli2 = Cli(base_url, tmp_path / "other-config")
    saved = cli2.json("download", link, "-o", str(tmp_path / "o"))  # the link carries the key
    assert Path(saved[0]["path"]).read_bytes() == photo.read_bytes()
    assert cli2.json("info", str(image["id"]), f"--key={key}")["sha256"] == image["sha256"]
    cli("unshare", str(image["id"]))
    assert other.get(f"/images/{image['id']}", params={"accessKey": key}).status_code == 403
    info = cli.json("info", str(image["id"]))
    assert info["isPrivate"] is True


def test_ls_info_rm_groups_stats_and_exit_codes(cli: Cli, account: tuple[Api, dict[str, Any]],
                                                admin: Api, base_url: str, tmp_path: Path) -> None:
    _, user = account
    cli.login(user["name"])
    photo = tmp_path / "one.jpg"
    photo.write_bytes(make_jpeg(seed=31337))
    image_id = cli.json("upload", str(photo))["results"][0]["id"]
    info = cli.json("info", str(image_id))
    assert info["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert "name: one.jpg" in cli("info", str(image_id)).stdout
    page = cli.json("ls", "--mine")
    assert [i["id"] for i in page["items"]] == [image_id] and page["totalPages"] == 1
    assert "page 1 of 1 (1 images)" in cli("ls", "--mine").stdout

    group = admin.post("/groups", json={"name": unique("cli-group")}).json()
    groups = cli.json("groups", "--page-size", "100")
    assert group["id"] in {g["id"] for g in groups["items"]}

    assert cli("stats", expect=5).stderr.startswith("imagerepo: ")
    other_cli = Cli(base_url, tmp_path / "other")
    other_name = register_and_login(base_url)[1]["name"]
    other_cli.login(other_name)
    assert "HTTP 403" in other_cli("rm", str(image_id), expect=5).stderr

    cli("rm", str(image_id))
    p = cli("rm", str(image_id), expect=4)
    assert "HTTP 404" in p.stderr
    cli("info", str(image_id), expect=4)
    err = cli.json("info", "999999999", expect=4)
    assert err["error"]["status"] == 404 and err["error"]["exitCode"] == 4
    cli("info", "zero", expect=2)
    cli("upload", str(tmp_path / "absent"), expect=1)
    Cli("http://127.0.0.1:9", tmp_path / "x")("ls", expect=6)


def test_stats_for_an_admin(base_url: str, admin: Api, tmp_path: Path) -> None:
    from imagerepo.users import ensure_admin

    email = f"{unique('cliadmin')}@example.com"
    ensure_admin(email, "admin passphrase 2", name=unique("cliadmin"))
    cli = Cli(base_url, tmp_path / "admin")
    cli.login(email, "admin passphrase 2")
    stats = cli.json("stats")
    assert {"users", "images", "blobs", "chunks", "logicalBytes", "storedBytes", "dedupRatio"} <= set(stats)
    assert "dedup ratio:" in cli("stats").stdout
