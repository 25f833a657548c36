"""S3 storage with the real boto3 client against moto's server mode on 127.0.0.1: the local storage's contract.

The bucket does not exist beforehand: the storage creates it on first use, as it does on dev servers.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from snapmatch import settings, storage
from snapmatch.s3storage import MULTIPART_THRESHOLD, S3Storage
from tests.realphotos import offline_aws_environment


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("S3_ENDPOINT_URL", raising=False)
    offline_aws_environment(monkeypatch)
    settings.get_settings.cache_clear()
    yield
    settings.get_settings.cache_clear()


@pytest.fixture
def bucket() -> str:
    return f"snapmatch-{uuid.uuid4().hex[:12]}"


def raw_client(url: str):  # type: ignore[no-untyped-def]
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1")


def test_put_get_exists_delete(moto_url: str, bucket: str) -> None:
    s3 = S3Storage(bucket, "media", endpoint_url=moto_url)
    key = "events/1/originals/ab/abcdef.jpg"

    assert s3.exists(key) is False
    s3.put(key, b"\xff\xd8\xff jpeg bytes", "image/jpeg")

    assert s3.exists(key) is True
    assert s3.get(key) == b"\xff\xd8\xff jpeg bytes"
    head = raw_client(moto_url).head_object(Bucket=bucket, Key=f"media/{key}")  # under the prefix
    assert head["ContentType"] == "image/jpeg"

    s3.delete(key)
    assert s3.exists(key) is False
    s3.delete(key)  # deleting twice is fine, like the local storage
    with pytest.raises(FileNotFoundError):
        s3.get(key)


def test_put_file_uploads_big_files_in_parts(moto_url: str, bucket: str, tmp_path: Path) -> None:
    s3 = S3Storage(bucket, "", endpoint_url=moto_url)
    path = tmp_path / "big.jpg"
    data = os.urandom(MULTIPART_THRESHOLD + 1024 * 1024)
    path.write_bytes(data)

    s3.put_file("events/1/originals/big.jpg", str(path), "image/jpeg")

    assert s3.get("events/1/originals/big.jpg") == data
    head = raw_client(moto_url).head_object(Bucket=bucket, Key="events/1/originals/big.jpg")
    assert "-" in head["ETag"]  # a multipart upload's ETag is "<md5 of parts>-<part count>"
    assert head["ContentType"] == "image/jpeg"


def test_keys_are_checked_like_the_local_storage(moto_url: str, bucket: str) -> None:
    s3 = S3Storage(bucket, "media", endpoint_url=moto_url)

    for bad in ("", "/abs", "a/../b", "a//b"):
        with pytest.raises(ValueError):
            s3.put(bad, b"x")


def test_open_storage_honours_aws_endpoint_url_s3(moto_url: str, bucket: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_url)
    storage._cache.pop(f"s3://{bucket}/media", None)

    s3 = storage.open_storage(f"s3://{bucket}/media")
    s3.put("k/v.txt", b"hello")

    assert isinstance(s3, S3Storage)
    assert s3.client.meta.endpoint_url == moto_url
    assert raw_client(moto_url).get_object(Bucket=bucket, Key="media/k/v.txt")["Body"].read() == b"hello"
    storage._cache.pop(f"s3://{bucket}/media", None)


def test_s3_endpoint_url_setting_overrides_the_environment(moto_url: str, bucket: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("S3_ENDPOINT_URL", moto_url)
    settings.get_settings.cache_clear()

    s3 = S3Storage(bucket, "media")
    s3.put("a.txt", b"a")

    assert s3.client.meta.endpoint_url == moto_url
    assert s3.get("a.txt") == b"a"


def test_a_missing_bucket_is_an_error_when_creation_is_off(moto_url: str, bucket: str) -> None:
    s3 = S3Storage(bucket, "media", endpoint_url=moto_url, create_bucket=False)

    with pytest.raises(ClientError) as info:
        s3.put("a.txt", b"a")
    assert info.value.response["Error"]["Code"] in ("404", "NoSuchBucket")
