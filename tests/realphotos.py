"""Real photos of real people for tests and benchmarks: the tests/test_images of PyPI's
face_recognition 1.3.0 source distribution (Obama several times, Biden), downloaded once into a
cache. Nothing is committed; an unreachable PyPI is reported, never hidden."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

REQUIRED = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg", "32bit.png")


class PhotosUnavailable(RuntimeError):
    pass


def face_images_dir() -> Path:
    cache = Path(os.environ.get("SNAPMATCH_TEST_DATA", Path.home() / ".cache" / "snapmatch-test-data"))
    images = cache / "face_recognition-1.3.0" / "tests" / "test_images"
    if all((images / name).exists() for name in REQUIRED):
        return images
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / "face_recognition-1.3.0.tar.gz"
    if not sdist.exists():
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
        result = subprocess.run(
            [*command, "face_recognition==1.3.0", "-d", str(cache)], capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0 or not sdist.exists():
            raise PhotosUnavailable(
                "cannot download the face_recognition 1.3.0 source distribution from PyPI "
                f"(its tests/test_images are the real photos): {result.stderr[-400:]}"
            )
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/tests/test_images/" in m.name]
        tar.extractall(cache, members=members, filter="data")
    return images


def offline_aws_environment(monkeypatch, **values: str) -> None:  # type: ignore[no-untyped-def]
    """Dummy credentials, then ``values`` (loopback endpoints, settings): no AWS setup of the machine leaks in."""
    for name in (
        "AWS_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL_REKOGNITION",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    for name, value in values.items():
        monkeypatch.setenv(name, value)
