"""Upload release artifacts to S3 (or any S3-compatible server) with boto3.

The original's secret names: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION and
AWS_BUCKET_S3_URI (`s3://bucket[/prefix]`). boto3 itself honours AWS_ENDPOINT_URL, which is how
the tests point this same code at a moto server on loopback.

Each artifact lands at `PREFIX/VERSION/NAME` with its SHA-256 in the object's metadata.
An object of the same size and SHA-256 is left alone, so a re-run uploads only what changed.
After an upload the object is checked: its size, its metadata, and the checksum S3 computed
itself. For a multipart upload that checksum is a composite (the SHA-256 of the parts'
SHA-256s, suffixed `-N`), never the file's own SHA-256, so we compute the composite locally
from the same part size and compare. A failed upload aborts its multipart upload, and stale
ones for the same key (a run killed mid-upload) are aborted first: no orphaned parts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from scooby.core.errors import Diagnostic, ScoobyError

ENV_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_BUCKET_S3_URI")
MiB = 1024 * 1024
# 64 MiB parts: a 4 GB image is ~60 parts, well under S3's 10,000, and a retry resends little.
THRESHOLD = 64 * MiB
CHUNKSIZE = 64 * MiB
CONCURRENCY = 4
CONTENT_TYPES = {".json": "application/json", ".bmap": "application/xml"}


@dataclass(frozen=True)
class Target:
    bucket: str
    prefix: str
    region: str
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    def key(self, version: str, name: str) -> str:
        return "/".join(p for p in (self.prefix, version, name) if p)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def https_url(self, key: str) -> str:
        """The object's virtual-hosted URL (readable only when the bucket allows it)."""
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            return f"{endpoint.rstrip('/')}/{self.bucket}/{key}"
        return f"https://{self.bucket}.s3.{self.region}.amazonaws.com/{key}"


def place(environ: Mapping[str, str]) -> Target | None:
    """The bucket and prefix alone (no credentials): enough to name the objects' URLs."""
    uri = urlparse(environ.get("AWS_BUCKET_S3_URI", ""))
    if uri.scheme != "s3" or not uri.netloc or not environ.get("AWS_REGION"):
        return None
    return Target(uri.netloc, uri.path.strip("/"), environ["AWS_REGION"])


def target(environ: Mapping[str, str]) -> tuple[Target | None, str]:
    """The bucket to upload to, or None and the one-line reason it is skipped."""
    missing = [k for k in ENV_KEYS if not environ.get(k)]
    if missing:
        return None, f"S3: skipped: {', '.join(missing)} not set"
    uri = urlparse(environ["AWS_BUCKET_S3_URI"])
    if uri.scheme != "s3" or not uri.netloc:
        raise ScoobyError(
            Diagnostic(
                "", None, "must look like s3://BUCKET or s3://BUCKET/PREFIX", "AWS_BUCKET_S3_URI"
            )
        )
    found = Target(
        uri.netloc,
        uri.path.strip("/"),
        environ["AWS_REGION"],
        environ["AWS_ACCESS_KEY_ID"],
        environ["AWS_SECRET_ACCESS_KEY"],
    )
    return found, ""


def client(target: Target):
    """A boto3 S3 client; it honours AWS_ENDPOINT_URL(_S3) from the environment by itself."""
    import boto3
    from botocore.config import Config

    # standard retry mode: exponential backoff on throttling, 5xx and connection errors.
    return boto3.client(
        "s3",
        region_name=target.region,
        aws_access_key_id=target.access_key,
        aws_secret_access_key=target.secret_key,
        config=Config(retries={"max_attempts": 8, "mode": "standard"}),
    )


def transfer_config(threshold: int | None = None, chunksize: int | None = None):
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=threshold or THRESHOLD,
        multipart_chunksize=chunksize or CHUNKSIZE,
        max_concurrency=CONCURRENCY,
        use_threads=True,
    )


def part_size(size: int, config) -> int | None:
    """The part size s3transfer will use for SIZE bytes, None for a single PUT."""
    from s3transfer.utils import ChunksizeAdjuster

    if size < config.multipart_threshold:
        return None
    return ChunksizeAdjuster().adjust_chunksize(config.multipart_chunksize, size)


def expected_checksum(path: Path, size: int, config) -> str:
    """The ChecksumSHA256 S3 reports for this file uploaded with this config."""
    chunk = part_size(size, config)
    with path.open("rb") as f:
        if chunk is None:
            return base64.b64encode(_sha256_stream(f, size)).decode()
        digests, parts = b"", 0
        while parts * chunk < size:
            digests += _sha256_stream(f, min(chunk, size - parts * chunk))
            parts += 1
    return f"{base64.b64encode(hashlib.sha256(digests).digest()).decode()}-{parts}"


def _sha256_stream(f, length: int) -> bytes:
    digest = hashlib.sha256()
    while length > 0 and (block := f.read(min(4 * MiB, length))):
        digest.update(block)
        length -= len(block)
    return digest.digest()


class Counter:
    """A boto3 progress callback: deltas arrive from several threads and go negative when
    s3transfer retries a part, so they are summed under a lock."""

    def __init__(self, advance: Callable[[int], None] | None = None):
        self._lock = threading.Lock()
        self.total = 0
        self._advance = advance

    def __call__(self, delta: int) -> None:
        with self._lock:
            self.total += delta
            if self._advance:
                self._advance(delta)


def head(s3, bucket: str, key: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return None
        raise


def identical(found: dict | None, size: int, sha256: str) -> bool:
    return (
        found is not None
        and found.get("ContentLength") == size
        and found.get("Metadata", {}).get("sha256") == sha256
    )


def abort_pending(s3, bucket: str, key: str) -> int:
    """Abort every multipart upload in progress for KEY; how many there were."""
    aborted = 0
    pages = s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key)
    for page in pages:
        for upload in page.get("Uploads", []):
            if upload["Key"] == key:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
    return aborted


def upload(
    s3,
    target: Target,
    key: str,
    path: Path,
    size: int,
    sha256: str,
    config,
    advance: Callable[[int], None] | None = None,
) -> str:
    """Upload one file unless an identical object is there; "uploaded" or "identical"."""
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    where = target.uri(key)
    try:
        if identical(head(s3, target.bucket, key), size, sha256):
            if advance:
                advance(size)
            return "identical"
        abort_pending(s3, target.bucket, key)  # parts left by a run that was killed
        counter = Counter(advance)
        s3.upload_file(
            str(path),
            target.bucket,
            key,
            ExtraArgs={
                "Metadata": {"sha256": sha256},
                "ChecksumAlgorithm": "SHA256",
                "ContentType": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
            },
            Config=config,
            Callback=counter,
        )
        verify(s3, target, key, path, size, sha256, config)
    except BaseException as exc:  # Ctrl-C included: no parts may be left behind
        # s3transfer aborts its own multipart upload on failure; make sure, even when the
        # failure was in the abort itself. A second failure here must not hide the first.
        with contextlib.suppress(Exception):
            abort_pending(s3, target.bucket, key)
        if isinstance(exc, (BotoCoreError, ClientError, Boto3Error, OSError)):
            message = f"S3: upload to {where} failed: {exc}"
            raise ScoobyError(Diagnostic("", None, message)) from exc
        raise
    return "uploaded"


def verify(s3, target: Target, key: str, path: Path, size: int, sha256: str, config) -> None:
    found = head(s3, target.bucket, key)
    where = target.uri(key)
    if not identical(found, size, sha256):
        raise ScoobyError(Diagnostic("", None, f"S3: {where}: size or sha256 differ after upload"))
    reported = found.get("ChecksumSHA256")
    if reported and not same_checksum(reported, expected_checksum(path, size, config)):
        raise ScoobyError(
            Diagnostic("", None, f"S3: {where}: the checksum S3 computed does not match the file")
        )


def same_checksum(reported: str, expected: str) -> bool:
    """AWS writes a composite as `DIGEST-PARTS`; some S3-compatible servers (moto) leave out
    `-PARTS`. The digest must match, and the part count when both give one."""
    got_digest, _, got_parts = reported.partition("-")
    want_digest, _, want_parts = expected.partition("-")
    return got_digest == want_digest and (not got_parts or got_parts == want_parts)
