"""Publish release artifacts as assets of a GitHub release, through GitHub's REST API.

Only the documented endpoints, with urllib. Kept hand-written after weighing the clients:
githubkit's upload_release_asset posts to api.github.com, not the release's `upload_url`
(githubkit issue 150; its maintainer suggests a raw request), and PyGithub, which would fit
(upload_url, `api_version`, asset `digest`), sends no `application/vnd.github+json` Accept
and brings requests, PyNaCl and PyJWT - for these five endpoints:
  GET    /repos/{owner}/{repo}/releases/tags/{tag}         find the release for the tag
  POST   /repos/{owner}/{repo}/releases                    or create it
  GET    /repos/{owner}/{repo}/releases/{id}/assets        list its assets (paginated)
  DELETE /repos/{owner}/{repo}/releases/assets/{id}        drop an asset being replaced
  POST   {upload_url}?name=NAME                            upload, raw body, Content-Type
The upload URL is the release's `upload_url` hypermedia template, as the docs ask. The API
base is SCOOBY_GITHUB_API (default https://api.github.com) so tests can use a local double.
An asset with the same name, size and `digest` (sha256) is already published: left alone.
The token is sent only in the Authorization header and never printed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from scooby.core.errors import Diagnostic, ScoobyError
from scooby.util import git

API = "https://api.github.com"
SERVER = "https://github.com"
API_VERSION = "2022-11-28"
RETRIES = 4  # on 5xx and connection errors, with 2, 4, 8 s pauses
CONTENT_TYPES = {".json": "application/json", ".bmap": "application/xml", "": "text/plain"}
# github.com/OWNER/REPO(.git) over https or ssh
_REMOTE = re.compile(r"github\.com[/:](?P<slug>[\w.-]+/[\w.-]+?)(?:\.git)?/?$")


@dataclass(frozen=True)
class Target:
    slug: str  # OWNER/REPO
    tag: str
    token: str = field(repr=False)
    api: str = API
    server: str = SERVER

    def describe(self, name: str) -> str:
        return f"github:{self.slug}@{self.tag}/{name}"

    def download_url(self, name: str) -> str:
        return f"{self.server}/{self.slug}/releases/download/{quote(self.tag)}/{quote(name)}"


def slug_from_git(repo: Path) -> str | None:
    remote = git.git_output(repo, "remote", "get-url", "origin")
    match = _REMOTE.search(remote or "")
    return match.group("slug") if match else None


def slug(environ: Mapping[str, str], repo: Path) -> str | None:
    """OWNER/REPO: Actions' GITHUB_REPOSITORY, else the github.com remote `origin`."""
    return environ.get("GITHUB_REPOSITORY") or slug_from_git(repo)


def download_base(environ: Mapping[str, str], slug: str, tag: str) -> str:
    server = (environ.get("GITHUB_SERVER_URL") or SERVER).rstrip("/")
    return f"{server}/{slug}/releases/download/{quote(tag)}"


def target(
    environ: Mapping[str, str], repo: Path, tag: str | None, image_version: str
) -> tuple[Target | None, str]:
    """Where to publish, or None and the one-line reason it is skipped."""
    token = environ.get("GITHUB_TOKEN") or environ.get("LC_PACKER_GITHUB_API_TOKEN")
    if not token:
        return None, "GitHub: skipped: no GITHUB_TOKEN or LC_PACKER_GITHUB_API_TOKEN"
    if tag is None:
        return None, (
            f"GitHub: skipped: {image_version} is not a release tag "
            "(tag the commit vX.Y.Z and rebuild to publish a release)"
        )
    found = slug(environ, repo)
    if not found:
        return None, "GitHub: skipped: no GITHUB_REPOSITORY and no github.com remote 'origin'"
    api = environ.get("SCOOBY_GITHUB_API") or environ.get("GITHUB_API_URL") or API
    server = environ.get("GITHUB_SERVER_URL") or SERVER
    if not safe_url(api):
        raise ScoobyError(
            Diagnostic(
                "",
                None,
                f"GitHub: the API URL {api!r} is not https:// (http:// only to this machine's "
                "loopback, for a local test server): the token would cross the network in clear",
            )
        )
    return Target(found, tag, token, api.rstrip("/"), server.rstrip("/")), ""


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def safe_url(url: str) -> bool:
    """https, or http to loopback only (a test server on this machine)."""
    u = urllib.parse.urlsplit(url)
    return bool(u.hostname) and (
        u.scheme == "https" or (u.scheme == "http" and u.hostname in LOOPBACK)
    )


def _origin(url: str) -> tuple[str, str]:
    u = urllib.parse.urlsplit(url)
    return u.scheme, u.netloc.lower()


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Redirects keep the token only to the same scheme and host; to any other host it is
    dropped (urllib would forward the Authorization header), and https never turns http."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is None:
            return None
        if not safe_url(new.full_url) or _origin(new.full_url)[0] != _origin(req.full_url)[0]:
            raise urllib.error.HTTPError(newurl, code, f"refused redirect to {newurl}", headers, fp)
        if _origin(new.full_url) != _origin(req.full_url):
            for name in list(new.headers):
                if name.lower() == "authorization":
                    del new.headers[name]
            new.unredirected_hdrs.pop("Authorization", None)
        return new


_OPENER = urllib.request.build_opener(_TokenStaysHome)


class _Body:
    """A file as a request body that reports progress as http.client reads it."""

    def __init__(self, path: Path, advance: Callable[[int], None] | None):
        self._file = path.open("rb")
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        if self._advance and data:
            self._advance(len(data))
        return data

    def close(self) -> None:
        self._file.close()


class Client:
    def __init__(self, target: Target):
        self.target = target

    def _headers(self) -> dict[str, str]:
        return {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.target.token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "scooby-release",
        }

    def call(
        self,
        method: str,
        url: str,
        payload: object = None,
        ok: tuple[int, ...] = (200, 201, 204),
        body_file: tuple[Path, str, Callable[[int], None] | None] | None = None,
    ) -> tuple[int, object]:
        """One API call with retries on 5xx and connection errors; (status, parsed JSON)."""
        if not url.startswith("http"):
            url = self.target.api + url
        if not safe_url(url):  # an upload_url the API handed back, say
            raise ScoobyError(Diagnostic("", None, f"GitHub: refused a non-https URL {url!r}"))
        for attempt in range(RETRIES + 1):
            headers = self._headers()
            data = None
            if payload is not None:
                data = json.dumps(payload).encode()
                headers["Content-Type"] = "application/json"
            elif body_file is not None:
                path, content_type, advance = body_file
                data = _Body(path, advance)
                headers["Content-Type"] = content_type
                headers["Content-Length"] = str(path.stat().st_size)
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with _OPENER.open(request, timeout=600) as response:
                    status, text = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, text = exc.code, exc.read()
            except (urllib.error.URLError, OSError) as exc:
                status, text = 0, str(exc).encode()
            finally:
                if isinstance(data, _Body):
                    data.close()
            retryable = status == 0 or status >= 500
            if status in ok or not retryable or attempt == RETRIES:
                break
            time.sleep(2 ** (attempt + 1))
        if status not in ok:
            raise ScoobyError(Diagnostic("", None, f"GitHub: {method} {url}: {_why(status, text)}"))
        return status, json.loads(text) if text.strip() else None

    def release(self, body: str = "") -> dict:
        """The release for the tag, created (with BODY as its text) when it does not exist."""
        t = self.target
        status, found = self.call(
            "GET", f"/repos/{t.slug}/releases/tags/{quote(t.tag)}", ok=(200, 404)
        )
        if status == 200:
            return found
        _, created = self.call(
            "POST",
            f"/repos/{t.slug}/releases",
            {
                "tag_name": t.tag,
                "name": f"Scooby {t.tag}",
                "body": body,
                "draft": False,
                "prerelease": False,
            },
        )
        return created

    def assets(self, release: dict) -> dict[str, dict]:
        found: dict[str, dict] = {}
        page = 1
        while True:
            _, batch = self.call(
                "GET",
                f"/repos/{self.target.slug}/releases/{release['id']}/assets?per_page=100&page={page}",
            )
            found.update({a["name"]: a for a in batch})
            if len(batch) < 100:
                return found
            page += 1

    def delete_asset(self, asset: dict) -> None:
        self.call("DELETE", f"/repos/{self.target.slug}/releases/assets/{asset['id']}")

    def upload_asset(
        self, release: dict, path: Path, advance: Callable[[int], None] | None = None
    ) -> dict:
        base = re.sub(r"\{[^}]*\}$", "", release["upload_url"])
        content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
        if path.name == "SHA256SUMS":
            content_type = "text/plain"
        _, asset = self.call(
            "POST", f"{base}?name={quote(path.name)}", body_file=(path, content_type, advance)
        )
        return asset


def _why(status: int, text: bytes) -> str:
    if status == 0:
        return f"no connection ({text.decode(errors='replace')})"
    try:
        message = json.loads(text).get("message", "")
    except (ValueError, AttributeError):
        message = text.decode(errors="replace")[:200]
    hint = {401: " (is the token valid?)", 403: " (does the token have contents: write?)"}
    return f"HTTP {status} {message}{hint.get(status, '')}".strip()


def identical(asset: dict | None, size: int, sha256: str) -> bool:
    return (
        asset is not None
        and asset.get("state", "uploaded") == "uploaded"
        and asset.get("size") == size
        and asset.get("digest") == f"sha256:{sha256}"
    )


def upload(
    client: Client,
    release: dict,
    existing: dict[str, dict],
    path: Path,
    size: int,
    sha256: str,
    advance: Callable[[int], None] | None = None,
) -> str:
    """Upload one asset, replacing one of the same name; "uploaded" or "identical"."""
    old = existing.get(path.name)
    if identical(old, size, sha256):
        if advance:
            advance(size)
        return "identical"
    if old is not None:
        client.delete_asset(old)
    try:
        asset = client.upload_asset(release, path, advance)
    except ScoobyError:
        # An upload that broke off can leave an asset of that name behind (state "starter")
        # which refuses every later upload with 422: remove it and try once more.
        stale = client.assets(release).get(path.name)
        if stale is None:
            raise
        client.delete_asset(stale)
        asset = client.upload_asset(release, path, advance)
    digest = asset.get("digest")
    if asset.get("size") != size or (digest and digest != f"sha256:{sha256}"):
        raise ScoobyError(
            Diagnostic("", None, f"GitHub: {path.name}: size or sha256 differ after upload")
        )
    return "uploaded"
