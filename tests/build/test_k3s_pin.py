"""`scooby k3s pin VERSION` against a local stand-in for GitHub's release site.

RELEASE_SITE is a test double: an HTTP server on 127.0.0.1 that serves a release's
`sha256sum-arm64.txt` at the path GitHub uses (`/VERSION/sha256sum-arm64.txt`, `+` as
`%2B`). GitHub cannot be reached from here; SCOOBY_K3S_BASE_URL points Scooby at the double.
"""

from __future__ import annotations

import http.server
import threading

import pytest
from conftest import write_repo

from scooby.cli import main

BINARY = "a" * 64
AIRGAP = "b" * 64
SUMS = (
    f"{'c' * 64}  k3s\n"
    f"{AIRGAP}  k3s-airgap-images-arm64.tar.zst\n"
    f"{'d' * 64}  k3s-airgap-images-arm64.tar.gz\n"
    f"{BINARY}  k3s-arm64\n"
)
VERSION = "v1.36.4+k3s1"
CONFIG = """\
# Scooby cluster configuration.
LC_HOSTNAME=buffy
#LC_K3S_VERSION=v1.31.4+k3s1
LC_K3S_SHA256=0000000000000000000000000000000000000000000000000000000000000000

# Master node external network configuration
LC_EXTERNAL_IP=192.168.1.64
"""


class _ReleaseSite(http.server.BaseHTTPRequestHandler):
    """Test double for github.com/k3s-io/k3s/releases/download: only sha256sum-arm64.txt."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == f"/{VERSION.replace('+', '%2B')}/sha256sum-arm64.txt":
            body = SUMS.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def release_site(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ReleaseSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SCOOBY_K3S_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}")
    yield server
    server.shutdown()
    server.server_close()


def test_pin_writes_version_and_checksums_keeping_the_rest(tmp_path, release_site, capsys):
    repo = write_repo(tmp_path / "repo", {"config": CONFIG})
    assert main(["k3s", "pin", VERSION, "--repo", str(repo)]) == 0
    text = (repo / "config").read_text()
    assert text.splitlines() == [
        "# Scooby cluster configuration.",
        "LC_HOSTNAME=buffy",
        f"LC_K3S_VERSION={VERSION}",  # the commented-out line, replaced in place
        f"LC_K3S_SHA256={BINARY}",  # changed on its line
        "",
        "# Master node external network configuration",
        "LC_EXTERNAL_IP=192.168.1.64",
        f"LC_K3S_AIRGAP_SHA256={AIRGAP}",  # added
    ]
    assert f"pinned K3S {VERSION}" in capsys.readouterr().out
    assert main(["validate", "--repo", str(repo), "--no-manifests"]) in (0, 1)


def test_pin_offline_says_exactly_what_to_download(tmp_path, monkeypatch, capsys):
    # Nothing listens on this port: as offline as the release site can be made here.
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("SCOOBY_K3S_BASE_URL", f"http://127.0.0.1:{port}")
    repo = write_repo(tmp_path / "repo", {"config": CONFIG})
    before = (repo / "config").read_text()
    assert main(["k3s", "pin", VERSION, "--repo", str(repo)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert (
        "https://github.com/k3s-io/k3s/releases/download/v1.36.4%2Bk3s1/sha256sum-arm64.txt" in err
    )
    assert f"scooby k3s pin {VERSION} --sums sha256sum-arm64.txt" in err
    assert (repo / "config").read_text() == before  # nothing half-written


def test_pin_from_a_downloaded_sums_file(tmp_path, capsys):
    repo = write_repo(tmp_path / "repo", {"config": "", "sha256sum-arm64.txt": SUMS})
    sums = repo / "sha256sum-arm64.txt"
    assert main(["k3s", "pin", VERSION, "--repo", str(repo), "--sums", str(sums)]) == 0
    assert (repo / "config").read_text() == (
        f"LC_K3S_VERSION={VERSION}\nLC_K3S_SHA256={BINARY}\nLC_K3S_AIRGAP_SHA256={AIRGAP}\n"
    )


def test_pin_refuses_a_file_without_the_arm64_lines(tmp_path, capsys):
    repo = write_repo(tmp_path / "repo", {"config": "", "sums.txt": f"{'c' * 64}  k3s\n"})
    assert main(["k3s", "pin", VERSION, "--repo", str(repo), "--sums", str(repo / "sums.txt")]) == 1
    assert "k3s-arm64" in capsys.readouterr().err
    assert (repo / "config").read_text() == ""


def test_pin_refuses_an_end_of_life_minor(tmp_path, capsys):
    repo = write_repo(tmp_path / "repo", {"config": ""})
    assert main(["k3s", "pin", "v1.31.14+k3s1", "--repo", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "end of life" in err and "2025-10-28" in err


def test_pin_refuses_a_malformed_version(tmp_path, capsys):
    repo = write_repo(tmp_path / "repo", {"config": ""})
    assert main(["k3s", "pin", "1.36", "--repo", str(repo)]) == 1
    assert "v1.36.4+k3s1" in capsys.readouterr().err
