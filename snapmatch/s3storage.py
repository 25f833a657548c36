"""S3 object storage behind the ``Storage`` interface (``STORAGE_URL=s3://bucket/prefix``), with boto3.

Endpoint: ``S3_ENDPOINT_URL`` when set, else boto3's own resolution (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, config).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from snapmatch.forksafe import PerProcess
from snapmatch.storage import _check_key

# Files above this go up in parts (in parallel, each part retried alone): originals can be tens of megabytes.
MULTIPART_THRESHOLD = 16 * 1024 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchBucket"})


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw in (None, "") else raw.strip().lower() in ("1", "true", "yes", "on")


class S3Storage:
    """Objects under ``prefix/`` in ``bucket``. Thread-safe; one boto3 client per process (clients do not survive
    a fork, and the worker opens storage before forking its work horses)."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        create_bucket: bool | None = None,
        client: Any = None,
    ) -> None:
        if not bucket:
            raise ValueError("S3 storage needs a bucket: STORAGE_URL=s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if endpoint_url is None:
            from snapmatch.settings import get_settings

            endpoint_url = get_settings().S3_ENDPOINT_URL or None
        self.endpoint_url = endpoint_url
        self.region = region
        # Creating a missing bucket suits dev and test servers (moto, MinIO); production turns it off with
        # S3_CREATE_BUCKET=0 when the credentials may not create buckets.
        self.create_bucket = _env_flag("S3_CREATE_BUCKET", True) if create_bucket is None else create_bucket
        self._given_client = client
        self._client = PerProcess(self._make_client)
        self._bucket_lock = threading.Lock()
        self._bucket_ready = False
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_THRESHOLD
        )

    @property
    def client(self) -> Any:
        return self._given_client if self._given_client is not None else self._client.get()

    def _make_client(self) -> Any:
        session = boto3.session.Session()
        region = self.region or os.environ.get("AWS_REGION") or session.region_name or "us-east-1"
        custom_endpoint = bool(
            self.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        )
        config = Config(
            retries={"mode": "standard"},
            # Dev servers answer on a host name or IP that has no per-bucket subdomains.
            s3={"addressing_style": "path" if custom_endpoint else "auto"},
            max_pool_connections=20,
        )
        return session.client("s3", region_name=region, endpoint_url=self.endpoint_url, config=config)

    def object_key(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            if self._bucket_ready:
                return
            client = self.client
            try:
                client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if _error_code(exc) not in _NOT_FOUND or not self.create_bucket:
                    raise
                self._create_bucket(client)
            self._bucket_ready = True

    def _create_bucket(self, client: Any) -> None:
        region = client.meta.region_name
        params: dict[str, Any] = {"Bucket": self.bucket}
        if region and region != "us-east-1":
            # us-east-1 is the one region that refuses an explicit LocationConstraint.
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**params)
        except ClientError as exc:
            # Another process created it between our HEAD and our PUT.
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # -- the Storage protocol -------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        object_key = self.object_key(key)
        self._ensure_bucket()
        self.client.put_object(Bucket=self.bucket, Key=object_key, Body=data, ContentType=content_type)

    def put_file(self, key: str, path: str, content_type: str = "application/octet-stream") -> None:
        object_key = self.object_key(key)
        self._ensure_bucket()
        self.client.upload_file(
            Filename=str(path),
            Bucket=self.bucket,
            Key=object_key,
            ExtraArgs={"ContentType": content_type},
            Config=self._transfer,
        )

    def get(self, key: str) -> bytes:
        """The object's bytes; ``FileNotFoundError`` when it is missing, like the local storage."""
        object_key = self.object_key(key)
        self._ensure_bucket()
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                raise FileNotFoundError(f"s3://{self.bucket}/{object_key}") from exc
            raise
        with response["Body"] as body:
            return body.read()

    def exists(self, key: str) -> bool:
        object_key = self.object_key(key)
        self._ensure_bucket()
        try:
            self.client.head_object(Bucket=self.bucket, Key=object_key)
        except ClientError as exc:
            if _error_code(exc) in _NOT_FOUND:
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (S3 and the local storage agree)."""
        object_key = self.object_key(key)
        self._ensure_bucket()
        self.client.delete_object(Bucket=self.bucket, Key=object_key)
