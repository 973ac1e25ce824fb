"""The ``imagerepo`` command: argument parsing, one function per command, exit codes."""

from __future__ import annotations

import argparse
import getpass
import hashlib
import json
import os
import re
import sys
import urllib.parse
from pathlib import Path
from typing import Any

from imagerepo_cli import __version__
from imagerepo_cli.api import (
    DEFAULT_URL,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    ApiError,
    Client,
    CliError,
    session_from_login,
)
from imagerepo_cli.upload import Options, describe
from imagerepo_cli.upload import run as run_upload


def emit(args: argparse.Namespace, data: Any, text: str | list[str]) -> None:
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=False))
    else:
        print(text if isinstance(text, str) else "\n".join(text))


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def web_url(args: argparse.Namespace) -> str:
    return (os.environ.get("IMAGEREPO_WEB_URL") or args.url).rstrip("/")


# -- accounts ---------------------------------------------------------------------
def cmd_login(client: Client, args: argparse.Namespace) -> int:
    username = args.username or input("Username or email: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username}: ")
    r = client.request("POST", "/login", auth=False, json={"username": username, "password": password})
    if r.status_code != 200:
        raise ApiError.from_response(r, "login")
    client.session_data = session_from_login(r.json(), username)
    client.store.put(client.url, client.session_data)
    me = client.call("GET", "/me")
    client.session_data["username"] = me["name"]
    client.store.put(client.url, client.session_data)
    refresh = "refresh token kept" if client.session_data.get("refresh_token") else \
        "no refresh token from this server: log in again when the session expires"
    emit(args, me, f"Logged in to {client.url} as {me['name']} ({me['role']}); {refresh}")
    return EXIT_OK


def cmd_logout(client: Client, args: argparse.Namespace) -> int:
    session = client.session_data
    if session:
        try:
            body = {"refresh_token": session["refresh_token"]} if session.get("refresh_token") else None
            r = client.request("POST", "/logout", json=body)
            if r.status_code not in (204, 200, 401, 404, 405):
                raise ApiError.from_response(r, "logout")
        except CliError:
            pass  # the local session is forgotten whatever the server says
        client.forget()
    emit(args, {"loggedOut": True}, f"Logged out of {client.url}")
    return EXIT_OK


def cmd_whoami(client: Client, args: argparse.Namespace) -> int:
    me = client.call("GET", "/me")
    emit(args, me, f"{me['name']} <{me['email']}> ({me['role']}, id {me['id']}) on {client.url}")
    return EXIT_OK


# -- images -----------------------------------------------------------------------
def image_line(img: dict[str, Any]) -> str:
    private = "private" if img.get("isPrivate") else "public"
    return (f"{img['id']:>7}  {img['name'][:40]:<40}  {human_size(int(img['size'])):>9}  "
            f"{img['width']}x{img['height']:<6}  {private:<7}  {img.get('creatorName', img.get('creator'))}  "
            f"{str(img.get('createdAt', ''))[:19]}")


def cmd_ls(client: Client, args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"pageSize": args.page_size}
    if args.mine:
        params["owner"] = "me"
    path = f"/groups/{args.group}/images" if args.group else "/images"
    auth = True if args.mine else None
    if args.all:
        items = list(client.pages(path, params, auth=auth))
        emit(args, {"items": items, "total": len(items)},
             [image_line(i) for i in items] + [f"{len(items)} images"])
        return EXIT_OK
    page = client.call("GET", path, params={**params, "page": args.page}, auth=auth)
    lines = [image_line(i) for i in page["items"]]
    lines.append(f"page {page['page']} of {page['totalPages']} ({page['total']} images)")
    emit(args, page, lines)
    return EXIT_OK


def _key_params(args: argparse.Namespace, ref: int | None = None) -> dict[str, str]:
    key = getattr(args, "key", None) or getattr(ref, "key", None)
    return {"accessKey": key} if key else {}


def cmd_info(client: Client, args: argparse.Namespace) -> int:
    img = client.call("GET", f"/images/{args.id}/info", params=_key_params(args, args.id), auth=None)
    lines = [f"{k}: {v}" for k, v in img.items() if k != "thumbnails"]
    lines.append(f"thumbnails: {img['thumbnails']['status']}")
    emit(args, img, lines)
    return EXIT_OK


def _safe_name(name: str, image_id: int) -> str:
    name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip(". ") or f"image-{image_id}"
    return name[:200]


def cmd_download(client: Client, args: argparse.Namespace) -> int:
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[dict[str, Any]] = []
    for image_id in args.ids:
        info = client.call("GET", f"/images/{image_id}/info", params=_key_params(args, image_id), auth=None)
        target = out_dir / _safe_name(str(info["name"]), image_id)
        if target.exists():
            target = target.with_name(f"{target.stem}-{image_id}{target.suffix}")
        r = client.request("GET", f"/images/{image_id}", params=_key_params(args, image_id), auth=None,
                           stream=True)
        if r.status_code != 200:
            raise ApiError.from_response(r)
        h = hashlib.sha256()
        tmp = target.with_name(f".{target.name}.part")
        with tmp.open("wb") as f:
            for block in r.iter_content(1024 * 1024):
                h.update(block)
                f.write(block)
        if h.hexdigest() != info["sha256"]:
            tmp.unlink()
            raise CliError(f"image {image_id}: downloaded bytes do not match its SHA-256")
        tmp.replace(target)
        saved.append({"id": image_id, "path": str(target), "size": info["size"], "sha256": info["sha256"]})
        if not args.json:
            print(f"saved {target} ({human_size(int(info['size']))})")
    if args.json:
        print(json.dumps(saved, indent=2))
    return EXIT_OK


def cmd_rm(client: Client, args: argparse.Namespace) -> int:
    failures: list[CliError] = []
    deleted: list[int] = []
    for image_id in args.ids:
        try:
            client.call("DELETE", f"/images/{image_id}")
            deleted.append(image_id)
            if not args.json:
                print(f"deleted {image_id}")
        except ApiError as e:
            failures.append(e)
            print(f"imagerepo: image {image_id}: {e.message}", file=sys.stderr)
    if args.json:
        print(json.dumps({"deleted": deleted, "failed": len(failures)}))
    return failures[0].exit_code if failures else EXIT_OK


def share_link(args: argparse.Namespace, image_id: int, key: str) -> str:
    return f"{web_url(args)}/image/{image_id}#key={key}"


def cmd_share(client: Client, args: argparse.Namespace) -> int:
    # Keys are stored hashed, so sharing sets a new one (an older link stops working).
    img = client.call("PUT", f"/images/{args.id}", json={"isPrivate": 1, "accessKey": None})
    key = img.get("accessKey")
    if not key:
        raise CliError("the server did not return an access key")
    link = share_link(args, args.id, key)
    emit(args, {"id": args.id, "accessKey": key, "url": link,
                "imageUrl": f"{client.url}/images/{args.id}?accessKey={key}"}, link)
    return EXIT_OK


def cmd_unshare(client: Client, args: argparse.Namespace) -> int:
    # A private image always has a key: a fresh one, never printed, ends every shared link.
    client.call("PUT", f"/images/{args.id}", json={"isPrivate": 1, "accessKey": None})
    emit(args, {"id": args.id, "shared": False},
         f"image {args.id} is private and its earlier share links no longer work")
    return EXIT_OK


def cmd_upload(client: Client, args: argparse.Namespace) -> int:
    opts = Options(description=args.description, private=args.private, group_id=args.group, jobs=args.jobs)
    show_bars = not args.json and not args.quiet and sys.stderr.isatty()
    results = run_upload(client, args.paths, opts, show_bars=show_bars, quiet=args.json or args.quiet)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("uploaded", "skipped", "failed")}
    if args.json:
        print(json.dumps({"results": [r.to_json() for r in results], **counts}, indent=2))
    else:
        if args.quiet:
            for r in results:
                if r.status == "failed":
                    print(describe(r), file=sys.stderr)
        print(f"{len(results)} files: {counts['uploaded']} uploaded, {counts['skipped']} skipped, "
              f"{counts['failed']} failed")
    if counts["failed"]:
        codes = {r.exit_code for r in results if r.status == "failed"}
        return codes.pop() if len(codes) == 1 else EXIT_ERROR
    return EXIT_OK


# -- groups, admin ------------------------------------------------------------------
def cmd_groups(client: Client, args: argparse.Namespace) -> int:
    page = client.call("GET", "/groups", params={"page": args.page, "pageSize": args.page_size}, auth=None)
    lines = [f"{g['id']:>6}  {g['name'][:40]:<40}  {g['imageCount']:>6} images" for g in page["items"]]
    lines.append(f"page {page['page']} of {page['totalPages']} ({page['total']} groups)")
    emit(args, page, lines)
    return EXIT_OK


def cmd_stats(client: Client, args: argparse.Namespace) -> int:
    s = client.call("GET", "/admin/stats")
    ratio = s.get("dedupRatio")
    lines = [f"users:         {s.get('users')}", f"images:        {s.get('images')}",
             f"blobs:         {s.get('blobs')}", f"chunks:        {s.get('chunks')}",
             f"logical bytes: {s.get('logicalBytes')} ({human_size(int(s.get('logicalBytes') or 0))})",
             f"stored bytes:  {s.get('storedBytes')} ({human_size(int(s.get('storedBytes') or 0))})",
             f"dedup ratio:   {ratio if ratio is not None else '-'}"]
    emit(args, s, lines)
    return EXIT_OK


# -- parser -------------------------------------------------------------------------
_LINK = re.compile(r"/image/(\d+)(?:[?#](?:.*[&#?])?key=([^&#]+))?")


class ImageRef(int):
    """An image id, or a gallery share link (``…/image/ID#key=KEY``) carrying its access key."""

    key: str | None = None


def image_ref(text: str) -> ImageRef:
    m = _LINK.search(text) if "/" in text else None
    if m:
        ref = ImageRef(int(m.group(1)))
        ref.key = urllib.parse.unquote(m.group(2)) if m.group(2) else None
        return ref
    return ImageRef(positive_int(text))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"server URL (default: $IMAGEREPO_URL or {DEFAULT_URL})")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output on stdout")
    parser = argparse.ArgumentParser(prog="imagerepo", description="ImageRepo command-line client.",
                                     epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not logged in or "
                                     "session expired, 4 not found, 5 forbidden, 6 server unreachable.")
    parser.add_argument("--version", action="version", version=f"imagerepo {__version__}")
    parser.add_argument("--url", default=os.environ.get("IMAGEREPO_URL") or DEFAULT_URL,
                        help=f"server URL (default: $IMAGEREPO_URL or {DEFAULT_URL})")
    parser.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = command("login", "log in and keep the session in the config folder")
    p.add_argument("--username", "-u", help="name or email (prompted when absent)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(func=cmd_login)
    command("logout", "end the session and forget its tokens").set_defaults(func=cmd_logout)
    command("whoami", "the logged-in account").set_defaults(func=cmd_whoami)

    p = command("upload", "upload files and folders (recursive, parallel, skipping what is already there)")
    p.add_argument("paths", nargs="+", metavar="FILE|FOLDER")
    p.add_argument("--private", action="store_true", help="upload as private images")
    p.add_argument("--group", type=positive_int, help="group id")
    p.add_argument("--description", default="", help="description for every uploaded image")
    p.add_argument("--jobs", "-j", type=positive_int, default=4, help="parallel uploads (default 4)")
    p.add_argument("--quiet", "-q", action="store_true", help="only the summary (and failures)")
    p.set_defaults(func=cmd_upload)

    p = command("download", "download originals (ids, or share links with their key)")
    p.add_argument("ids", nargs="+", type=image_ref, metavar="ID|LINK")
    p.add_argument("-o", "--output", default=".", help="folder to write into (default: current)")
    p.add_argument("--key", help="access key of a private image shared with you (--key=KEY)")
    p.set_defaults(func=cmd_download)

    p = command("ls", "list images (public ones and your own)")
    p.add_argument("--mine", action="store_true", help="only your images")
    p.add_argument("--group", type=positive_int, help="only this group's images")
    p.add_argument("--page", type=positive_int, default=1)
    p.add_argument("--page-size", type=positive_int, default=20)
    p.add_argument("--all", action="store_true", help="every page")
    p.set_defaults(func=cmd_ls)

    p = command("info", "an image's metadata")
    p.add_argument("id", type=image_ref, metavar="ID|LINK")
    p.add_argument("--key", help="access key of a private image shared with you (--key=KEY)")
    p.set_defaults(func=cmd_info)

    p = command("rm", "delete images")
    p.add_argument("ids", nargs="+", type=positive_int, metavar="ID")
    p.set_defaults(func=cmd_rm)

    p = command("share", "make an image private and print a link that opens it with a new access key")
    p.add_argument("id", type=positive_int)
    p.set_defaults(func=cmd_share)
    p = command("unshare", "end an image's share links (it stays private, with a new unprinted key)")
    p.add_argument("id", type=positive_int)
    p.set_defaults(func=cmd_unshare)

    p = command("groups", "list groups")
    p.add_argument("--page", type=positive_int, default=1)
    p.add_argument("--page-size", type=positive_int, default=20)
    p.set_defaults(func=cmd_groups)
    command("stats", "the store's statistics (admin)").set_defaults(func=cmd_stats)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_USAGE
    client = Client(args.url)
    try:
        return int(args.func(client, args))
    except CliError as e:
        if args.json:
            print(json.dumps({"error": {"message": e.message, "exitCode": e.exit_code,
                                        **({"code": e.code, "status": e.status} if isinstance(e, ApiError)
                                           else {})}}))
        print(f"imagerepo: {e.message}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("imagerepo: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_ERROR
    finally:
        client.close()
