"""What a worker process holds for its whole life: the face engine (models loaded once), storage,
Redis and settings. The worker builds it before forking work horses, which inherit it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from redis import Redis
from rq import get_current_job

from snapmatch.faces import FaceEngine
from snapmatch.redis_client import get_redis
from snapmatch.settings import Settings, get_settings
from snapmatch.storage import Storage, open_storage


@dataclass
class Runtime:
    settings: Settings
    engine: FaceEngine
    storage: Storage

    @property
    def redis(self) -> Redis:
        return get_redis(self.settings.REDIS_URL)


def build_engine(settings: Settings) -> FaceEngine:
    if settings.FACE_ENGINE == "local":
        from snapmatch.faces.local import LocalFaceEngine

        return LocalFaceEngine(min_face_px=settings.FACE_MIN_SIZE)
    if settings.FACE_ENGINE == "rekognition":
        from snapmatch.faces.rekognition import RekognitionFaceEngine

        return RekognitionFaceEngine.from_settings(settings)
    raise ValueError(f"FACE_ENGINE must be 'local' or 'rekognition', got {settings.FACE_ENGINE!r}")


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    settings = get_settings()
    return Runtime(settings=settings, engine=build_engine(settings), storage=open_storage(settings.STORAGE_URL))


def current_worker_name() -> str | None:
    job = get_current_job()
    return job.worker_name if job is not None else None


def current_job_generation() -> int:
    """The generation encoded in this job's id (``photo-<id>-<generation>``)."""
    job = get_current_job()
    return int(job.id.rsplit("-", 1)[1]) if job is not None else 0
