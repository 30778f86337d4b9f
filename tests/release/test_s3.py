"""S3 uploads against a real S3-compatible server: moto's server mode on 127.0.0.1.

The code under test is the production path (scooby.s3 / scooby.publish with boto3 and
s3transfer); only the endpoint differs, through AWS_ENDPOINT_URL as on any S3-compatible host.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest
from botocore.exceptions import ConnectionClosedError

from scooby.core.errors import ScoobyError
from scooby.release import publish, s3
from scooby.release.artifacts import Artifact, Release

MiB = 1024 * 1024
_buckets = itertools.count()


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def env(moto_endpoint: str, monkeypatch) -> dict[str, str]:
    """The original's four secrets, pointing at a fresh bucket on the local server."""
    bucket = f"scooby-test-{next(_buckets)}"
    values = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing-secret",
        "AWS_REGION": "eu-west-2",
        "AWS_BUCKET_S3_URI": f"s3://{bucket}/releases",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    # Keep boto3 away from any real credentials or config on the machine.
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    target, _ = s3.target(values)
    s3.client(target).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-2"}
    )
    return values


@pytest.fixture
def small_parts(monkeypatch) -> None:
    """Multipart above 5 MiB in 5 MiB parts (S3's minimum part size), so tests stay small."""
    monkeypatch.setattr(s3, "THRESHOLD", 5 * MiB)
    monkeypatch.setattr(s3, "CHUNKSIZE", 5 * MiB)


def make_file(path: Path, size: int) -> Artifact:
    path.write_bytes(os.urandom(size))
    return Artifact(path, size, hashlib.sha256(path.read_bytes()).hexdigest(), "image")


def target_and_client(env: dict[str, str]):
    target, _ = s3.target(env)
    return target, s3.client(target)


def test_absent_secrets_skip_with_one_line() -> None:
    target, why = s3.target({"AWS_ACCESS_KEY_ID": "x", "AWS_REGION": "eu-west-2"})
    assert target is None
    assert why == "S3: skipped: AWS_SECRET_ACCESS_KEY, AWS_BUCKET_S3_URI not set"


def test_bad_bucket_uri_is_a_user_error() -> None:
    with pytest.raises(ScoobyError, match="AWS_BUCKET_S3_URI: must look like s3://BUCKET"):
        s3.target(dict.fromkeys(s3.ENV_KEYS, "https://example.invalid/x"))


def test_release_artifacts_go_up_and_a_rerun_replaces_nothing(
    env, tmp_path: Path, small_parts
) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    made = Release(
        "v1.2.3",
        "v1.2.3",
        [
            make_file(dist / "scooby-v1.2.3.img.zst", 12 * MiB + 7),  # 3 parts
            make_file(dist / "scooby-v1.2.3.img.bmap", 3000),
            make_file(dist / "SHA256SUMS", 200),
        ],
    )
    found = publish.Targets(s3=s3.target(env)[0], version="v1.2.3")
    results = publish.publish(made, found)
    assert results["scooby-v1.2.3.img.zst"] == [
        f"s3://{found.s3.bucket}/releases/v1.2.3/scooby-v1.2.3.img.zst (uploaded)"
    ]
    target, client = target_and_client(env)
    for a in made.artifacts:
        head = client.head_object(Bucket=target.bucket, Key=f"releases/v1.2.3/{a.name}")
        assert head["ContentLength"] == a.size
        assert head["Metadata"]["sha256"] == a.sha256
        body = client.get_object(Bucket=target.bucket, Key=f"releases/v1.2.3/{a.name}")["Body"]
        assert hashlib.sha256(body.read()).hexdigest() == a.sha256
    again = publish.publish(made, found)
    assert all(lines[0].endswith("(identical)") for lines in again.values())


def test_multipart_upload_over_the_threshold(env, tmp_path: Path, small_parts) -> None:
    target, client = target_and_client(env)
    a = make_file(tmp_path / "big.img.zst", 11 * MiB)
    config = s3.transfer_config()
    assert s3.part_size(a.size, config) == 5 * MiB
    parts = []
    client.meta.events.register("before-call.s3.UploadPart", lambda **kw: parts.append(1))
    seen = []
    outcome = s3.upload(
        client, target, "k/big.img.zst", a.path, a.size, a.sha256, config, seen.append
    )
    assert outcome == "uploaded"
    assert len(parts) == 3
    assert sum(seen) == a.size  # the progress bar ends at the file's size
    head = s3.head(client, target.bucket, "k/big.img.zst")
    # S3 stores a composite checksum for multipart uploads; ours matches it.
    assert s3.same_checksum(head["ChecksumSHA256"], s3.expected_checksum(a.path, a.size, config))
    assert s3.expected_checksum(a.path, a.size, config).endswith("-3")


class InjectedFailure(ConnectionClosedError):
    """Raised by the test after N parts, like a network that drops mid-upload."""


def test_failure_mid_upload_leaves_no_parts_and_a_rerun_completes(
    env, tmp_path: Path, small_parts
) -> None:
    target, client = target_and_client(env)
    a = make_file(tmp_path / "big.img.zst", 16 * MiB)
    config = s3.transfer_config()
    config.max_request_concurrency = 1  # parts in order, so "after two parts" is exact
    key = "k/big.img.zst"
    stored = []

    def count_parts(**kwargs):
        stored.append(kwargs["http_response"].status_code)

    def fail_after_two_parts(**kwargs):
        if len(stored) >= 2:
            raise InjectedFailure(endpoint_url="injected: dropped after two parts")

    client.meta.events.register("after-call.s3.UploadPart", count_parts)
    client.meta.events.register("before-call.s3.UploadPart", fail_after_two_parts)
    with pytest.raises(ScoobyError, match=f"S3: upload to s3://{target.bucket}/{key} failed"):
        s3.upload(client, target, key, a.path, a.size, a.sha256, config)
    assert stored == [200, 200]  # two parts were on the server when it failed
    assert client.list_multipart_uploads(Bucket=target.bucket).get("Uploads", []) == []
    assert s3.head(client, target.bucket, key) is None
    client.meta.events.unregister("before-call.s3.UploadPart", fail_after_two_parts)
    assert s3.upload(client, target, key, a.path, a.size, a.sha256, config) == "uploaded"
    assert client.list_multipart_uploads(Bucket=target.bucket).get("Uploads", []) == []


def test_parts_left_by_a_killed_run_are_aborted(env, tmp_path: Path, small_parts) -> None:
    target, client = target_and_client(env)
    key = "k/x.img.zst"
    stale = client.create_multipart_upload(Bucket=target.bucket, Key=key)
    client.upload_part(
        Bucket=target.bucket, Key=key, UploadId=stale["UploadId"], PartNumber=1, Body=b"x" * 100
    )
    a = make_file(tmp_path / "x.img.zst", 1000)
    assert s3.upload(client, target, key, a.path, a.size, a.sha256, s3.transfer_config())
    assert client.list_multipart_uploads(Bucket=target.bucket).get("Uploads", []) == []


def test_changed_object_is_replaced(env, tmp_path: Path) -> None:
    target, client = target_and_client(env)
    key = "k/SHA256SUMS"
    client.put_object(Bucket=target.bucket, Key=key, Body=b"old", Metadata={"sha256": "0" * 64})
    a = make_file(tmp_path / "SHA256SUMS", 300)
    assert s3.upload(client, target, key, a.path, a.size, a.sha256, s3.transfer_config()) == (
        "uploaded"
    )
    assert s3.head(client, target.bucket, key)["Metadata"]["sha256"] == a.sha256


def test_verify_catches_an_object_that_differs(env, tmp_path: Path) -> None:
    target, client = target_and_client(env)
    a = make_file(tmp_path / "f.bin", 1000)
    key = "k/f.bin"
    # Right metadata, wrong bytes: only the checksum S3 computed can tell.
    client.put_object(
        Bucket=target.bucket,
        Key=key,
        Body=os.urandom(1000),
        Metadata={"sha256": a.sha256},
        ChecksumAlgorithm="SHA256",
    )
    with pytest.raises(ScoobyError, match="the checksum S3 computed does not match"):
        s3.verify(client, target, key, a.path, a.size, a.sha256, s3.transfer_config())


def test_progress_counter_takes_negative_deltas_from_threads() -> None:
    import threading

    seen = []
    counter = s3.Counter(seen.append)
    threads = [
        threading.Thread(target=lambda: [counter(d) for d in (100, -40, 40)]) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.total == 800
    assert sum(seen) == 800


def test_imager_url_is_the_s3_object_when_github_cannot_serve_it(env, tmp_path: Path) -> None:
    bucket = env["AWS_BUCKET_S3_URI"].removeprefix("s3://").split("/")[0]
    endpoint = env["AWS_ENDPOINT_URL"]
    # untagged: no GitHub release, so the list points at the S3 copy
    found = publish.targets(tmp_path, "v1.2.3-4-gabc1234", env)
    assert found.github is None and found.s3 is not None
    assert found.url_for("x.img.zst", False) == (
        f"{endpoint}/{bucket}/releases/v1.2.3-4-gabc1234/x.img.zst"
    )
    # tagged but split into parts: Imager cannot join parts, so S3 again
    tagged = publish.targets(tmp_path, "v1.2.3", {**env, "GITHUB_REPOSITORY": "o/r"})
    assert tagged.url_for("x.img.zst", False) == (
        "https://github.com/o/r/releases/download/v1.2.3/x.img.zst"
    )
    assert tagged.url_for("x.img.zst", True) == f"{endpoint}/{bucket}/releases/v1.2.3/x.img.zst"
