"""K3S download logic against a real HTTP server on 127.0.0.1.

TEST DOUBLE: the files served are small fake stand-ins for the K3S release assets (GitHub is
not reachable here); their sha256 is pinned in the test the way config pins the real ones.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from functools import partial
from pathlib import Path

import pytest

from scooby.build import k3s
from scooby.core.errors import ScoobyError
from scooby.core.model import K3s

VERSION = "v1.31.4+k3s1"


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def release(tmp_path: Path):
    """A local 'release site' serving fake k3s-arm64 and air-gap files under VERSION/."""
    site = tmp_path / "site"
    folder = site / VERSION
    folder.mkdir(parents=True)
    (folder / k3s.BINARY).write_bytes(b"fake k3s binary (test double)\n")
    (folder / k3s.AIRGAP).write_bytes(b"fake air-gap images (test double)\n")
    handler = partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()


def pinned(folder: Path) -> K3s:
    def sha(name: str) -> str:
        return hashlib.sha256((folder / name).read_bytes()).hexdigest()

    return K3s(VERSION, sha(k3s.BINARY), sha(k3s.AIRGAP))


def test_url_escapes_plus():
    assert k3s.url(VERSION, k3s.BINARY, k3s.RELEASES) == (
        "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s-arm64"
    )


def test_embed_downloads_verifies_and_caches(release, tmp_path):
    base, folder = release
    downloads = tmp_path / "downloads"
    plan = k3s.plan("embed", pinned(folder), downloads, tmp_path, base)
    assert plan.mode == "embedded" and plan.warning == ""
    assert plan.files.binary.read_bytes() == (folder / k3s.BINARY).read_bytes()
    assert plan.files.binary == downloads / "k3s" / VERSION / k3s.BINARY
    # Cached: a second plan works with the server gone (an unroutable base URL).
    again = k3s.plan("embed", pinned(folder), downloads, tmp_path, "http://127.0.0.1:9")
    assert again.files == plan.files


def test_checksum_mismatch_is_refused(release, tmp_path):
    base, folder = release
    wrong = K3s(VERSION, "0" * 64, pinned(folder).airgap_sha256)
    with pytest.raises(ScoobyError) as err:
        k3s.plan("embed", wrong, tmp_path / "d", tmp_path, base)
    message = str(err.value)
    assert "sha256" in message and "0" * 64 in message
    assert not list((tmp_path / "d").rglob("k3s-arm64"))  # nothing half-verified kept


def test_embed_unreachable_names_files_and_where_to_put_them(tmp_path):
    pins = K3s(VERSION, "a" * 64, "b" * 64)
    with pytest.raises(ScoobyError) as err:
        k3s.plan("embed", pins, tmp_path / ".cache" / "downloads", tmp_path, "http://127.0.0.1:9")
    message = str(err.value)
    assert "k3s-arm64" in message and k3s.AIRGAP in message
    assert "a" * 64 in message and "b" * 64 in message
    assert f".cache/downloads/k3s/{VERSION}" in message


def test_auto_falls_back_to_first_boot_with_warning(tmp_path):
    pins = K3s(VERSION, "a" * 64, "b" * 64)
    plan = k3s.plan("auto", pins, tmp_path / "d", tmp_path, "http://127.0.0.1:9")
    assert plan.mode == "first-boot" and plan.files is None
    assert "first boot" in plan.warning and VERSION in plan.warning


def test_auto_refuses_unpinned_checksums(release, tmp_path):
    base, folder = release
    plan = k3s.plan("auto", K3s(VERSION, "", ""), tmp_path / "d", tmp_path, base)
    assert plan.mode == "first-boot" and "no sha256 pinned" in plan.warning


def test_none(tmp_path):
    plan = k3s.plan("none", K3s(VERSION, "", ""), tmp_path, tmp_path)
    assert plan.mode == "none" and plan.files is None


def test_schema_pins_the_release(tmp_path):
    import json

    from scooby.core.paths import SCHEMAS_DIR

    props = json.loads((SCHEMAS_DIR / "config.schema.json").read_text())["properties"]
    for key in ("LC_K3S_SHA256", "LC_K3S_AIRGAP_SHA256"):
        assert len(props[key]["default"]) == 64, key
