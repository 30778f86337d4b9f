"""Hostile input at the functions that carry a rule: modes in the image, where the GitHub
token goes, whole-value patterns, and what a message may show."""

from __future__ import annotations

import http.server
import os
import stat
import threading
from pathlib import Path

import pytest
from hostile import GITHUB_TOKEN, PRIVATE_KEY

from scooby.build.assemble import merge
from scooby.core.errors import ScoobyError, error
from scooby.core.patterns import ecma, fullmatch, validator_class
from scooby.core.redact import redact, shown
from scooby.load import schema
from scooby.release import github

# --- modes: the base's folders keep theirs, files keep git's executable bit ------------------


@pytest.fixture
def umask_000():
    old = os.umask(0)
    yield
    os.umask(old)


def test_merge_keeps_the_base_folders_modes_whatever_the_umask(tmp_path: Path, umask_000) -> None:
    base, rendered = tmp_path / "root", tmp_path / "rendered"
    for folder, mode in (("", 0o755), ("tmp", 0o1777), ("root", 0o700), ("etc", 0o755)):
        (base / folder).mkdir(exist_ok=True)
        (base / folder).chmod(mode)
    for rel, mode in (("tmp/x", 0o644), ("root/.profile", 0o644), ("etc/new/tool", 0o755)):
        (rendered / rel).parent.mkdir(parents=True, exist_ok=True, mode=0o777)
        (rendered / rel).write_text("x\n")
        (rendered / rel).chmod(mode)
    (rendered / "tmp").chmod(0o755)  # what server/tmp/ would have been rendered as
    merge(rendered, base)

    def mode(rel: str) -> int:
        return stat.S_IMODE((base / rel).stat().st_mode)

    assert mode("tmp") == 0o1777
    assert mode("root") == 0o700
    assert mode("") == 0o755 and mode("etc") == 0o755
    assert mode("etc/new") == 0o755  # a new folder: 0755, not the umask's 0777
    assert mode("etc/new/tool") == 0o755 and mode("tmp/x") == 0o644


def test_merge_never_writes_through_a_link_in_the_base(tmp_path: Path) -> None:
    base, rendered, host = tmp_path / "root", tmp_path / "rendered", tmp_path / "host"
    (base / "etc").mkdir(parents=True)
    host.mkdir()
    (host / "resolv.conf").write_text("host's\n")
    (base / "etc/resolv.conf").symlink_to(host / "resolv.conf")
    (rendered / "etc").mkdir(parents=True)
    (rendered / "etc/resolv.conf").write_text("image's\n")
    merge(rendered, base)
    assert (host / "resolv.conf").read_text() == "host's\n"
    assert not (base / "etc/resolv.conf").is_symlink()


# --- the GitHub token stays with GitHub ------------------------------------------------------


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[dict] = []
    redirect_to: str | None = None

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).seen.append(dict(self.headers))
        if self.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path)
            self.end_headers()
            return
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def _serve(handler: type) -> http.server.HTTPServer:
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_token_does_not_follow_a_redirect_to_another_host(tmp_path: Path) -> None:
    other = type("Other", (_Recorder,), {"seen": [], "redirect_to": None})
    other_server = _serve(other)
    api = type("Api", (_Recorder,), {"seen": [], "redirect_to": None})
    api.redirect_to = f"http://localhost:{other_server.server_port}"
    api_server = _serve(api)
    try:
        target = github.Target(
            "o/r", "v1.0.0", GITHUB_TOKEN, f"http://127.0.0.1:{api_server.server_port}"
        )
        github.Client(target).call("GET", "/repos/o/r")
    finally:
        api_server.shutdown()
        other_server.shutdown()
    assert any(GITHUB_TOKEN in h.get("Authorization", "") for h in api.seen)
    assert other.seen, "the redirect was not followed"
    assert all("Authorization" not in h for h in other.seen)


@pytest.mark.parametrize(
    "url", ["http://api.github.example", "ftp://x.invalid", "file:///etc/passwd", "https://"]
)
def test_an_api_url_that_is_not_https_is_refused(tmp_path: Path, url: str) -> None:
    environ = {"GITHUB_TOKEN": GITHUB_TOKEN, "GITHUB_REPOSITORY": "o/r", "SCOOBY_GITHUB_API": url}
    with pytest.raises(ScoobyError, match="is not https"):
        github.target(environ, tmp_path, "v1.0.0", "v1.0.0")


# --- whole-value patterns ---------------------------------------------------------------------


@pytest.mark.parametrize("value", ["eth0\n", "eth0\r", "eth0\n\n", "\neth0", "eth0 "])
def test_fullmatch_takes_whole_values_only(value: str) -> None:
    assert fullmatch(r"[a-z0-9]+", "eth0")
    assert not fullmatch(r"[a-z0-9]+", value)


def test_json_schema_patterns_read_dollar_as_the_end_of_input() -> None:
    assert ecma("^[a-z]+$").search("bookworm")
    assert not ecma("^[a-z]+$").search("bookworm\n")
    assert ecma("^a[$]b$").search("a$b")  # a `$` in a class stays a character
    v = validator_class()({"type": "string", "pattern": "^[a-z]+$"})
    assert not list(v.iter_errors("bookworm"))
    assert list(v.iter_errors("bookworm\n"))


def test_every_schema_pattern_is_anchored_at_both_ends() -> None:
    for kind in schema.KINDS:
        for key, prop in schema.properties(kind).items():
            if "pattern" in prop:
                assert prop["pattern"].startswith("^") and prop["pattern"].endswith("$"), key


# --- what a message may show --------------------------------------------------------------------


def test_a_diagnostic_never_carries_a_secret_or_a_second_line() -> None:
    text = str(error(".env", 1, f"x {PRIVATE_KEY} {GITHUB_TOKEN}\ny"))
    assert GITHUB_TOKEN not in text and "PRIVATE KEY" not in text and "\n" not in text
    assert redact("nothing secret") == "nothing secret"


def test_a_huge_value_is_cut() -> None:
    assert len(shown("a" * 10_000_000)) < 100
    assert shown("eth0") == "'eth0'"


def test_a_non_utf8_file_name_still_prints() -> None:
    name = os.fsdecode(b"agents/\xff.agent")
    assert "agents/" in str(error(name, None, "x"))
