"""An S3-compatible bucket (AWS S3, MinIO, moto) as the off-machine copy of a data dir.

Every object carries the SHA-256 of its content in its metadata (``sha256``);
downloads are verified against it before anything is loaded. Endpoint, region
and credentials come from the usual AWS environment (``AWS_ENDPOINT_URL``,
``AWS_DEFAULT_REGION``, ``AWS_ACCESS_KEY_ID``, ...) or ``endpoint_url``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MULTIPART_THRESHOLD = 16 * 1024 * 1024


class ObjectStoreError(RuntimeError):
    """The bucket could not be reached or answered an error."""


class ChecksumMismatch(ObjectStoreError):
    """A downloaded object's content does not match its recorded SHA-256."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://"):
            raise ValueError(f"object store must be s3://BUCKET[/PREFIX], got {url!r}")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket or any(c in bucket for c in " \\"):
            raise ValueError(f"object store URL {url!r} names no valid bucket")
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ObjectStore:
    def __init__(self, location: S3Location, endpoint_url: str | None = None,
                 timeout_s: float = 10.0) -> None:
        import boto3
        from botocore.config import Config

        self.location = location
        self.client = boto3.client(
            "s3", endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
            config=Config(connect_timeout=timeout_s, read_timeout=timeout_s,
                          retries={"max_attempts": 1}))  # the shipper does its own retries
        from boto3.s3.transfer import TransferConfig

        self.transfer = TransferConfig(multipart_threshold=MULTIPART_THRESHOLD,
                                       multipart_chunksize=MULTIPART_THRESHOLD)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (BotoCoreError, ClientError) as exc:
            raise ObjectStoreError(f"{what}: {exc}") from None

    def upload(self, path: Path, key: str) -> str:
        """Upload a file (multipart above 16 MiB) with its SHA-256; returns the digest."""
        digest = sha256_file(path)
        self._call(f"upload {key}", self.client.upload_file, str(path),
                   self.location.bucket, key, ExtraArgs={"Metadata": {"sha256": digest}},
                   Config=self.transfer)
        return digest

    def download(self, key: str, dest: Path) -> None:
        """Download and verify; a mismatching object is removed locally and reported."""
        head = self._call(f"head {key}", self.client.head_object,
                          Bucket=self.location.bucket, Key=key)
        expected = head.get("Metadata", {}).get("sha256")
        if not expected:
            raise ChecksumMismatch(f"s3://{self.location.bucket}/{key} has no sha256 metadata; "
                                   "it was not written by akidb and is not loaded")
        tmp = dest.with_name(dest.name + ".part")
        dest.parent.mkdir(parents=True, exist_ok=True)
        self._call(f"download {key}", self.client.download_file, self.location.bucket, key,
                   str(tmp), Config=self.transfer)
        actual = sha256_file(tmp)
        if actual != expected:
            tmp.unlink(missing_ok=True)
            raise ChecksumMismatch(f"s3://{self.location.bucket}/{key}: content SHA-256 "
                                   f"{actual[:16]}… does not match the recorded "
                                   f"{expected[:16]}…; the object is corrupt and was not loaded")
        os.replace(tmp, dest)

    def list(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under ``prefix``."""
        out: list[tuple[str, int]] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call(f"list {prefix}", lambda: list(paginator.paginate(
            Bucket=self.location.bucket, Prefix=prefix)))
        for page in pages:
            out.extend((o["Key"], int(o["Size"])) for o in page.get("Contents", []))
        return out
