"""GitHub release uploads against a local HTTP server on 127.0.0.1.

TEST DOUBLE: no real GitHub is reachable here, so `GitHubApiDouble` below stands in for
api.github.com and uploads.github.com. It implements only the documented REST endpoints that
scooby.github uses and checks every request against their documented shapes (method, path,
headers, JSON fields, upload query and Content-Type); anything else is recorded as a
violation and answered with an error, and every test asserts there were none.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from scooby.core.errors import ScoobyError
from scooby.release import github, publish
from scooby.release.artifacts import Artifact, Release

TOKEN = "ghp_testTokenNeverPrinted0123456789abcd"
SLUG = "someone/cluster"


class GitHubApiDouble:
    """TEST DOUBLE of GitHub's REST API for releases (docs.github.com/rest/releases)."""

    def __init__(self) -> None:
        self.releases: dict[str, dict] = {}  # tag -> release
        self.assets: dict[int, dict] = {}  # asset id -> asset (+ "release_id", "body")
        self.requests: list[tuple[str, str]] = []
        self.violations: list[str] = []
        self.fail_next: list[int] = []  # statuses to answer the next requests with
        self.break_next_upload = False  # keep a "starter" asset and answer 502, as GitHub can
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                double.handle(self, "GET")

            def do_POST(self) -> None:
                double.handle(self, "POST")

            def do_DELETE(self) -> None:
                double.handle(self, "DELETE")

            def do_PATCH(self) -> None:
                double.handle(self, "PATCH")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # --- request checking -----------------------------------------------------------
    def violation(self, message: str) -> None:
        self.violations.append(message)

    def check_headers(self, h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") != f"Bearer {TOKEN}":
            self.violation(f"{h.path}: Authorization must be 'Bearer <token>'")
        if h.headers.get("Accept") != "application/vnd.github+json":
            self.violation(f"{h.path}: Accept must be application/vnd.github+json")
        if h.headers.get("X-GitHub-Api-Version") != "2022-11-28":
            self.violation(f"{h.path}: X-GitHub-Api-Version missing")
        if not h.headers.get("User-Agent"):
            self.violation(f"{h.path}: GitHub requires a User-Agent")

    def body(self, h: BaseHTTPRequestHandler) -> bytes:
        length = h.headers.get("Content-Length")
        if length is None:
            self.violation(f"{h.command} {h.path}: no Content-Length")
            return b""
        return h.rfile.read(int(length))

    def reply(self, h: BaseHTTPRequestHandler, status: int, data: object = None) -> None:
        payload = b"" if data is None else json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)

    def public(self, asset: dict) -> dict:
        return {k: v for k, v in asset.items() if k not in ("release_id", "body")}

    # --- the endpoints ----------------------------------------------------------------
    def handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests.append((method, h.path))
            self.check_headers(h)
            url = urlparse(h.path)
            body = self.body(h) if method == "POST" else b""
            if self.fail_next:
                return self.reply(h, self.fail_next.pop(0), {"message": "Server Error"})
            repo = f"/repos/{SLUG}"
            if method == "GET" and (m := re.fullmatch(f"{repo}/releases/tags/(.+)", url.path)):
                found = self.releases.get(m.group(1))
                return (
                    self.reply(h, 200, found)
                    if found
                    else self.reply(h, 404, {"message": "Not Found"})
                )
            if method == "POST" and url.path == f"{repo}/releases":
                return self.create_release(h, body)
            if method == "GET" and (m := re.fullmatch(f"{repo}/releases/(\\d+)/assets", url.path)):
                return self.list_assets(h, int(m.group(1)), parse_qs(url.query))
            if method == "DELETE" and (
                m := re.fullmatch(f"{repo}/releases/assets/(\\d+)", url.path)
            ):
                if self.assets.pop(int(m.group(1)), None) is None:
                    return self.reply(h, 404, {"message": "Not Found"})
                return self.reply(h, 204)
            if method == "POST" and (
                m := re.fullmatch(f"/uploads{repo}/releases/(\\d+)/assets", url.path)
            ):
                return self.upload(h, int(m.group(1)), parse_qs(url.query), body)
            self.violation(f"undocumented request {method} {h.path}")
            return self.reply(h, 404, {"message": "Not Found"})

    def create_release(self, h, body: bytes) -> None:
        try:
            data = json.loads(body)
        except ValueError:
            self.violation("create release: body is not JSON")
            return self.reply(h, 400, {"message": "Problems parsing JSON"})
        if h.headers.get("Content-Type") != "application/json":
            self.violation("create release: Content-Type must be application/json")
        if not isinstance(data.get("tag_name"), str):
            self.violation("create release: tag_name (string) is required")
            return self.reply(h, 422, {"message": "Validation Failed"})
        allowed = {
            "tag_name",
            "target_commitish",
            "name",
            "body",
            "draft",
            "prerelease",
            "discussion_category_name",
            "generate_release_notes",
            "make_latest",
        }
        if set(data) - allowed:
            self.violation(f"create release: unknown fields {sorted(set(data) - allowed)}")
        if data["tag_name"] in self.releases:
            return self.reply(h, 422, {"message": "Validation Failed: already_exists"})
        rid = next(self._ids)
        release = {
            "id": rid,
            "tag_name": data["tag_name"],
            "name": data.get("name"),
            "draft": data.get("draft", False),
            "body": data.get("body", ""),
            "upload_url": f"{self.url}/uploads/repos/{SLUG}/releases/{rid}/assets{{?name,label}}",
        }
        self.releases[data["tag_name"]] = release
        return self.reply(h, 201, release)

    def list_assets(self, h, rid: int, query: dict) -> None:
        per_page = int(query.get("per_page", ["30"])[0])
        page = int(query.get("page", ["1"])[0])
        mine = [self.public(a) for a in self.assets.values() if a["release_id"] == rid]
        return self.reply(h, 200, mine[(page - 1) * per_page : page * per_page])

    def upload(self, h, rid: int, query: dict, body: bytes) -> None:
        names = query.get("name", [])
        if len(names) != 1 or not names[0]:
            self.violation("upload: the name query parameter is required")
            return self.reply(h, 422, {"message": "name is required"})
        if not h.headers.get("Content-Type"):
            self.violation("upload: Content-Type is required")
        if any(a["name"] == names[0] and a["release_id"] == rid for a in self.assets.values()):
            return self.reply(h, 422, {"message": "Validation Failed: already_exists"})
        aid = next(self._ids)
        asset = {
            "id": aid,
            "name": names[0],
            "size": len(body),
            "state": "uploaded",
            "content_type": h.headers.get("Content-Type"),
            "digest": f"sha256:{hashlib.sha256(body).hexdigest()}",
            "release_id": rid,
            "body": body,
        }
        self.assets[aid] = asset
        if self.break_next_upload:
            self.break_next_upload = False
            asset["state"] = "starter"
            return self.reply(h, 502, {"message": "Bad Gateway"})
        return self.reply(h, 201, self.public(asset))

    def __enter__(self) -> GitHubApiDouble:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api(monkeypatch):
    with GitHubApiDouble() as double:
        yield double
    assert double.violations == []


@pytest.fixture
def target(api: GitHubApiDouble) -> github.Target:
    found, why = github.target(
        {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": SLUG, "SCOOBY_GITHUB_API": api.url},
        Path("/nonexistent"),
        "v1.2.3",
        "v1.2.3",
    )
    assert why == ""
    return found


MANIFEST = {
    "version": "v1.2.3",
    "commit": "0123456789abcdef0123456789abcdef01234567",
    "base": "debian",
    "k3s": "without K3S",
    "config_digest": "ab" * 32,
    "master": {"hostname": "buffy"},
    "agents": [{"name": "willow"}],
    "image": {"name": "scooby.img", "size": 123, "sha256": "cd" * 32},
}


def made_release(dist: Path, big: int = 300_000) -> Release:
    dist.mkdir(exist_ok=True)
    files = {
        "scooby-v1.2.3.img.zst": (bytes(range(256)) * (big // 256), "image"),
        "scooby-v1.2.3.img.bmap": (b"<bmap/>", "bmap"),
        "release.json": (json.dumps(MANIFEST).encode(), "manifest"),
        "SHA256SUMS": (b"x  y\n", "sums"),
    }
    artifacts = []
    for name, (data, kind) in files.items():
        (dist / name).write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        artifacts.append(Artifact(dist / name, len(data), sha, kind))
    return Release("v1.2.3", "v1.2.3", artifacts)


def test_creates_the_release_and_uploads_every_asset(api, target, tmp_path: Path) -> None:
    made = made_release(tmp_path / "dist")
    results = publish.publish(made, publish.Targets(github=target))
    assert set(api.releases) == {"v1.2.3"}
    uploaded = {a["name"]: a for a in api.assets.values()}
    assert set(uploaded) == {a.name for a in made.artifacts}
    for a in made.artifacts:
        assert uploaded[a.name]["body"] == a.path.read_bytes()
        assert results[a.name] == [f"github:{SLUG}@v1.2.3/{a.name} (uploaded)"]
    assert uploaded["release.json"]["content_type"] == "application/json"
    assert uploaded["SHA256SUMS"]["content_type"] == "text/plain"
    assert uploaded["scooby-v1.2.3.img.zst"]["content_type"] == "application/octet-stream"
    # The release page says what this is and how to flash it.
    body = api.releases["v1.2.3"]["body"]
    assert "commit: `0123456789abcdef0123456789abcdef01234567`" in body
    assert "sudo bmaptool copy scooby-v1.2.3.img.zst /dev/sdX" in body
    assert f"rpi-imager --repo https://github.com/{SLUG}/releases/download/v1.2.3/" in body
    assert "join them first" not in body


def test_rerun_finds_the_release_and_replaces_nothing_identical(api, target, tmp_path) -> None:
    made = made_release(tmp_path / "dist")
    publish.publish(made, publish.Targets(github=target))
    api.requests.clear()
    results = publish.publish(made, publish.Targets(github=target))
    assert all(r[0].endswith("(identical)") for r in results.values())
    methods = [m for m, _ in api.requests]
    assert "DELETE" not in methods
    assert methods.count("POST") == 0  # neither a new release nor an upload


def test_changed_asset_is_deleted_then_uploaded(api, target, tmp_path) -> None:
    made = made_release(tmp_path / "dist")
    publish.publish(made, publish.Targets(github=target))
    old_id = next(a["id"] for a in api.assets.values() if a["name"] == "scooby-v1.2.3.img.bmap")
    changed = made_release(tmp_path / "dist")
    path = tmp_path / "dist/scooby-v1.2.3.img.bmap"
    path.write_bytes(b"<bmap v2/>")
    data = path.read_bytes()
    changed.artifacts[1] = Artifact(path, len(data), hashlib.sha256(data).hexdigest(), "bmap")
    api.requests.clear()
    results = publish.publish(changed, publish.Targets(github=target))
    assert results["scooby-v1.2.3.img.bmap"][0].endswith("(uploaded)")
    assert ("DELETE", f"/repos/{SLUG}/releases/assets/{old_id}") in api.requests
    assert sum(1 for m, p in api.requests if p.startswith("/uploads")) == 1
    (new,) = [a for a in api.assets.values() if a["name"] == "scooby-v1.2.3.img.bmap"]
    assert new["body"] == b"<bmap v2/>"


def test_server_errors_are_retried(api, target, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(github.time, "sleep", lambda s: None)
    api.fail_next = [502, 503]
    made = made_release(tmp_path / "dist")
    publish.publish(made, publish.Targets(github=target))
    assert len(api.assets) == len(made.artifacts)


def test_broken_off_upload_leaves_no_stale_asset(api, target, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(github.time, "sleep", lambda s: None)
    made = made_release(tmp_path / "dist")
    api.break_next_upload = True
    publish.publish(made, publish.Targets(github=target))
    states = sorted((a["name"], a["state"]) for a in api.assets.values())
    assert states == sorted((a.name, "uploaded") for a in made.artifacts)
    assert [m for m, _ in api.requests].count("DELETE") == 1  # the broken "starter" asset


def test_bad_token_is_one_line_without_the_token(api, target, tmp_path) -> None:
    api.fail_next = [401]
    with pytest.raises(ScoobyError) as caught:
        publish.publish(made_release(tmp_path / "dist"), publish.Targets(github=target))
    (line,) = str(caught.value).splitlines()
    assert "HTTP 401" in line and "is the token valid?" in line
    assert TOKEN not in line


def test_paginated_asset_list(api, target, tmp_path) -> None:
    client = github.Client(target)
    release = client.release()
    for i in range(130):
        api.assets[1000 + i] = {
            "id": 1000 + i,
            "name": f"a{i}",
            "size": 1,
            "state": "uploaded",
            "digest": "sha256:0",
            "release_id": release["id"],
            "body": b"",
        }
    assert len(client.assets(release)) == 130


def test_skips_without_token_or_tag() -> None:
    assert github.target({}, Path("/x"), "v1", "v1") == (
        None,
        "GitHub: skipped: no GITHUB_TOKEN or LC_PACKER_GITHUB_API_TOKEN",
    )
    found, why = github.target({"GITHUB_TOKEN": "t"}, Path("/x"), None, "v1.0.0-3-gabcdef1")
    assert found is None and "v1.0.0-3-gabcdef1 is not a release tag" in why


def test_token_from_the_env_file_name(tmp_path: Path) -> None:
    env = {"LC_PACKER_GITHUB_API_TOKEN": "t2", "GITHUB_REPOSITORY": SLUG}
    found, _ = github.target(env, tmp_path, "v1.0.0", "v1.0.0")
    assert found.token == "t2"
    assert "t2" not in repr(found)
    assert found.download_url("a b.img.zst") == (
        f"https://github.com/{SLUG}/releases/download/v1.0.0/a%20b.img.zst"
    )


@pytest.mark.parametrize(
    "remote",
    [
        "https://github.com/someone/cluster.git",
        "https://github.com/someone/cluster",
        "git@github.com:someone/cluster.git",
        "ssh://git@github.com/someone/cluster.git",
    ],
)
def test_repository_from_the_git_remote(tmp_path: Path, remote: str) -> None:
    from conftest import git

    git(tmp_path, "init", "-q")
    git(tmp_path, "remote", "add", "origin", remote)
    assert github.slug_from_git(tmp_path) == SLUG
