"""`scooby release` on small real images: artifacts, bmaptool round trip, parts, no secrets."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import WILLOW, git, write_repo
from release_images import make_image, release_values
from test_github import SLUG, api  # noqa: F401 (fixture: the GitHub REST API test double)
from test_github import TOKEN as GITHUB_TOKEN
from test_s3 import env, moto_endpoint  # noqa: F401 (fixtures: moto's server on 127.0.0.1)

from scooby import cli
from scooby.cli import release as cli_release
from scooby.load.digest import config_digest
from scooby.release import artifacts as release
from scooby.util.git import describe

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGx0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2Vj willow@x"
TOKEN = "ghp_thisIsATestTokenThatMustNeverLeak0123"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SECRETS = (SSH_KEY, TOKEN, AWS_SECRET, "AAAAC3NzaC1lZDI1NTE5")
# Some compressible and some random bytes, like a root file system.
PAYLOAD = os.urandom(2 << 20) + b"scooby " * (1 << 20)


@pytest.fixture(autouse=True)
def no_publishing_secrets(monkeypatch):
    """The runner's own secrets must not turn these tests into uploads."""
    for key in (
        "GITHUB_TOKEN",
        "GITHUB_REPOSITORY",
        "LC_PACKER_GITHUB_API_TOKEN",
        "LC_SSH_AUTH_KEY",
        "LC_DEFAULT_USER",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_BUCKET_S3_URI",
    ):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    """A committed, tagged repository with its image built: what CI has after `nox -s build`."""
    repo = write_repo(tmp_path / "repo", {"config": "", "agents/willow.agent": WILLOW})
    (repo / ".gitignore").write_text("/images/\n/dist/\n/.env\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "cluster")
    git(repo, "tag", "v1.2.3")
    (repo / "images").mkdir()
    make_image(repo / "images/scooby.img", release_values(repo), payload=PAYLOAD)
    return repo


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_dry_run_lists_every_artifact_with_size_and_sha256(tagged: Path, capsys) -> None:
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    dist = tagged / "dist"
    names = sorted(p.name for p in dist.iterdir())
    assert names == sorted(
        [
            "scooby-v1.2.3.img.zst",
            "scooby-v1.2.3.img.bmap",
            "SHA256SUMS",
            "release.json",
            "rpi-imager.json",
        ]
    )
    for name in names:
        path = dist / name
        assert name in out
        assert sha256(path) in out
        assert cli_release.human(path.stat().st_size) in out
    assert "dry run" in out
    # No secrets configured: one clear line per destination.
    assert "GitHub: skipped: no GITHUB_TOKEN or LC_PACKER_GITHUB_API_TOKEN" in err
    assert "S3: skipped: AWS_ACCESS_KEY_ID" in err


def test_bmaptool_copy_restores_the_image(tagged: Path, tmp_path: Path) -> None:
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    restored = tmp_path / "restored.img"
    # bmaptool finds scooby-v1.2.3.img.bmap beside scooby-v1.2.3.img.zst by itself.
    subprocess.run(
        ["bmaptool", "copy", str(tagged / "dist/scooby-v1.2.3.img.zst"), str(restored)],
        check=True,
        capture_output=True,
    )
    assert sha256(restored) == sha256(tagged / "images/scooby.img")


def test_xz_format_round_trips_through_bmaptool(tagged: Path, tmp_path: Path) -> None:
    assert cli.main(["release", "--repo", str(tagged), "--dry-run", "--format", "xz"]) == 0
    restored = tmp_path / "restored.img"
    subprocess.run(
        [
            "bmaptool",
            "copy",
            "--bmap",
            str(tagged / "dist/scooby-v1.2.3.img.bmap"),
            str(tagged / "dist/scooby-v1.2.3.img.xz"),
            str(restored),
        ],
        check=True,
        capture_output=True,
    )
    assert sha256(restored) == sha256(tagged / "images/scooby.img")


def test_sha256sums_checks_out_and_manifests_agree(tagged: Path) -> None:
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    dist = tagged / "dist"
    subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=dist, check=True)
    image = tagged / "images/scooby.img"
    packed = dist / "scooby-v1.2.3.img.zst"
    data = json.loads((dist / "release.json").read_text())
    assert data["version"] == "v1.2.3"
    assert data["commit"] == git(tagged, "rev-parse", "HEAD")
    assert data["base"] == "debian"
    assert data["k3s"] == "v1.33.4+k3s1"
    assert data["config_digest"] == config_digest(tagged)
    assert data["master"]["hostname"] == "buffy"
    assert data["agents"] == [
        {"name": "willow", "ip": "192.168.64.65", "mac": "b8:27:eb:81:1a:52", "pxe_id": "c6811a52"}
    ]
    assert data["image"] == {
        "name": "scooby.img",
        "size": image.stat().st_size,
        "sha256": sha256(image),
    }
    assert {"name": packed.name, "size": packed.stat().st_size, "sha256": sha256(packed)} in data[
        "artifacts"
    ]
    (entry,) = json.loads((dist / "rpi-imager.json").read_text())["os_list"]
    required = {
        "name",
        "description",
        "icon",
        "url",
        "extract_size",
        "extract_sha256",
        "image_download_size",
        "release_date",
    }
    assert required <= set(entry)
    assert entry["extract_size"] == image.stat().st_size
    assert entry["extract_sha256"] == sha256(image)
    assert entry["image_download_size"] == packed.stat().st_size
    assert entry["image_download_sha256"] == sha256(packed)
    assert entry["url"] == packed.resolve().as_uri()  # no upload target: the local file
    assert "init_format" not in entry
    assert entry["release_date"] == git(tagged, "show", "-s", "--format=%cs", "HEAD")
    # Nothing half-written is left behind.
    assert not [p for p in dist.iterdir() if p.name.endswith(".partial")]


def test_without_k3s_says_so(tagged: Path) -> None:
    image = tagged / "images/scooby.img"
    make_image(image, release_values(tagged, K3S_MODE="none", K3S_VERSION=""), payload=b"x")
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    data = json.loads((tagged / "dist/release.json").read_text())
    assert data["k3s"] == "without K3S"
    assert data["k3s_mode"] == "none"


def test_large_image_is_split_into_parts(tagged: Path) -> None:
    from scooby.validate.validator import validated

    dist = tagged / "dist"
    made = release.make(
        tagged, tagged / "images/scooby.img", dist, validated(tagged), part_size=1 << 20
    )
    assert made.split
    packed = dist / "scooby-v1.2.3.img.zst"
    parts = sorted(dist.glob("scooby-v1.2.3.img.zst.part*"))
    assert len(parts) == -(-packed.stat().st_size // (1 << 20)) > 1
    assert all(p.stat().st_size <= 1 << 20 for p in parts)
    assert b"".join(p.read_bytes() for p in parts) == packed.read_bytes()
    by_name = {a.name: a for a in made.artifacts}
    # GitHub gets the parts (each under its limit), S3 the whole file.
    assert not by_name[packed.name].github and by_name[packed.name].s3
    assert all(by_name[p.name].github and not by_name[p.name].s3 for p in parts)
    sums = (dist / "SHA256SUMS").read_text()
    assert all(f"{sha256(p)}  {p.name}\n" in sums for p in parts + [packed])
    data = json.loads((dist / "release.json").read_text())
    assert data["reassemble"] == f"cat {packed.name}.part* > {packed.name}"
    # Released again without the need to split: no stale parts are left to upload by mistake.
    again = release.make(tagged, tagged / "images/scooby.img", dist, validated(tagged))
    assert not again.split and not list(dist.glob("*.part*"))
    assert "reassemble" not in json.loads((dist / "release.json").read_text())


def test_secrets_never_reach_release_files_or_output(tagged: Path, capsys, monkeypatch) -> None:
    (tagged / ".env").write_text(
        f"LC_DEFAULT_USER=spike\nLC_SSH_AUTH_KEY={SSH_KEY}\nLC_PACKER_GITHUB_API_TOKEN={TOKEN}\n"
    )
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    for path in (tagged / "dist").iterdir():
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, path.name
    for secret in SECRETS:
        assert secret not in out + err


def test_image_from_other_inputs_is_refused(tagged: Path, capsys) -> None:
    (tagged / "agents/willow.agent").write_text(WILLOW.replace("192.168.64.65", "192.168.64.66"))
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 1
    out, err = capsys.readouterr()
    (line,) = err.strip().splitlines()
    assert line.startswith("images/scooby.img: error: CONFIG_DIGEST: built from other inputs")
    assert not (tagged / "dist").exists()


def test_missing_image_is_one_clear_line(tagged: Path, capsys) -> None:
    (tagged / "images/scooby.img").unlink()
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "images/scooby.img: error: no image here: run `scooby build` first"


def test_image_without_release_file_is_refused(tagged: Path, tmp_path: Path, capsys) -> None:
    image = tagged / "images/scooby.img"
    make_image(image, {"SCOOBY_VERSION": "v1.2.3"})  # a release file that lacks keys
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert (
        "images/scooby.img:/etc/scooby/release: error: CONFIG_DIGEST: "
        "missing from the image's release file"
    ) in err
    assert "Traceback" not in err


def test_not_a_disk_image(tmp_path: Path) -> None:
    bogus = tmp_path / "x.img"
    bogus.write_bytes(b"\0" * 4096)
    with pytest.raises(release.ScoobyError, match="not a disk image"):
        release.image_release(bogus)


def test_dirty_build_is_not_published(tagged: Path, capsys, monkeypatch) -> None:
    make_image(tagged / "images/scooby.img", release_values(tagged, "v1.2.3-dirty"), payload=b"x")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", "someone/cluster")
    assert cli.main(["release", "--repo", str(tagged)]) == 0
    err = capsys.readouterr().err
    assert "GitHub: skipped: v1.2.3-dirty was built from uncommitted changes" in err
    assert "S3: skipped: v1.2.3-dirty was built from uncommitted changes" in err


def test_untagged_build_skips_github_with_a_reason(tagged: Path, capsys, monkeypatch) -> None:
    (tagged / "README").write_text("more\n")
    git(tagged, "add", "README")
    git(tagged, "commit", "-q", "-m", "more")
    make_image(tagged / "images/scooby.img", release_values(tagged), payload=b"x")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    out, err = capsys.readouterr()
    assert "is not a release tag" in err
    described = describe(tagged)
    assert described.startswith("v1.2.3-1-g")
    assert f"scooby-{described}.img.zst" in out
    data = json.loads((tagged / "dist/release.json").read_text())
    assert data["commit"] == git(tagged, "rev-parse", "HEAD")


# --- publishing what dist/ holds: a local S3 server and the GitHub test double -------------


def test_upload_only_publishes_dist_to_github_and_s3(tagged, api, env, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setenv("GITHUB_REPOSITORY", SLUG)
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    dist = tagged / "dist"
    (entry,) = json.loads((dist / "rpi-imager.json").read_text())["os_list"]
    # Known from the repository and the tag alone: the build job needs no token for it.
    assert entry["url"] == (
        f"https://github.com/{SLUG}/releases/download/v1.2.3/scooby-v1.2.3.img.zst"
    )
    capsys.readouterr()
    monkeypatch.setenv("GITHUB_TOKEN", GITHUB_TOKEN)
    monkeypatch.setenv("SCOOBY_GITHUB_API", api.url)
    assert cli.main(["release", "--repo", str(tagged), "--upload-only"]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in dist.iterdir())
    assert sorted(a["name"] for a in api.assets.values()) == names
    for a in api.assets.values():
        assert a["body"] == (dist / a["name"]).read_bytes()
    from scooby.release import s3

    target, _ = s3.target(env)
    client = s3.client(target)
    listed = client.list_objects_v2(Bucket=target.bucket, Prefix="releases/v1.2.3/")
    assert sorted(o["Key"].rsplit("/", 1)[1] for o in listed["Contents"]) == names
    assert f"s3://{target.bucket}/releases/v1.2.3/SHA256SUMS (uploaded)" in out
    body = api.releases["v1.2.3"]["body"]
    assert f"commit: `{git(tagged, 'rev-parse', 'HEAD')}`" in body
    assert "sudo bmaptool copy scooby-v1.2.3.img.zst /dev/sdX" in body
    assert GITHUB_TOKEN not in out
    # Once more: everything is already there.
    assert cli.main(["release", "--repo", str(tagged), "--upload-only"]) == 0
    out = capsys.readouterr().out
    assert "(uploaded)" not in out and out.count("(identical)") == 2 * len(names)


def test_upload_only_refuses_a_changed_artifact(tagged: Path, capsys) -> None:
    assert cli.main(["release", "--repo", str(tagged), "--dry-run"]) == 0
    (tagged / "dist/scooby-v1.2.3.img.bmap").write_text("tampered\n")
    capsys.readouterr()
    assert cli.main(["release", "--repo", str(tagged), "--upload-only"]) == 1
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith(
        "SHA256SUMS: error: scooby-v1.2.3.img.bmap: missing or changed since it was listed"
    )


def test_upload_only_without_a_release(tagged: Path, capsys) -> None:
    assert cli.main(["release", "--repo", str(tagged), "--upload-only"]) == 1
    err = capsys.readouterr().err
    assert "no release here" in err and "run `scooby release --dry-run` first" in err
