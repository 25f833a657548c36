"""AWS Rekognition face engine: one face collection per event, photos and selfies indexed into it, searched there.

botocore's own retries are switched off: this module retries throttling itself so every HTTP attempt takes a lease.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import cv2
import numpy as np
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError
from redis import Redis

from snapmatch.costs import CostTracker
from snapmatch.errors import PermanentImageError, ProviderRejected, SnapmatchError
from snapmatch.errors import QuotaExceeded as QuotaExceeded  # raised by the shared call loop, caught from here
from snapmatch.errors import RetryLater as RetryLater
from snapmatch.faces import DetectedFace
from snapmatch.forksafe import PerProcess
from snapmatch.limiter import (
    CallPolicy,
    Classified,
    DenyReason,
    ProviderLimiter,
    ProviderWaits,
    Verdict,
    WaitDecision,
    call_through,
    decide_wait,
    limits_for,
)
from snapmatch.settings import Settings

log = logging.getLogger(__name__)

PROVIDER = "rekognition"
# Image.Bytes limit of the image APIs (ImageBlob max in the service model): raw bytes, before base64.
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# IndexFaces indexes at most 100 faces per image; DeleteFaces takes at most 4096 ids per call.
MAX_FACES_PER_IMAGE = 100
DELETE_BATCH = 4096
SELFIE_PREFIX = "selfie-"

# Error codes (and the HTTP status) that mean "slow down": retried by us, never counted as a provider failure.
THROTTLING_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "TooManyRequestsException", "Throttling"}
)
# The provider (or the network) failed: worth a few quick retries, and the circuit breaker should hear of it.
TRANSIENT_CODES = frozenset({"InternalServerError", "ServiceUnavailable", "ServiceUnavailableException"})
TRANSIENT_RETRIES = 2
# The image itself is refused: no retry and no other call will take it.
PERMANENT_IMAGE_CODES = frozenset({"ImageTooLargeException", "InvalidImageFormatException", "InvalidS3ObjectException"})
# Exponential backoff for a throttle that came without a retry delay: base * 2**n seconds, capped like botocore.
BACKOFF_BASE_SECONDS = 0.25
BACKOFF_CAP_SECONDS = 20.0


class ProviderError(SnapmatchError):
    """Rekognition refused or failed a call and retrying now will not help (bad request, outage)."""

    code = "provider_error"
    status = 503


@dataclass(frozen=True)
class IndexedFace:
    """A face stored in the event's collection. The box is in ratios of the image that was sent (0..1)."""

    face_id: str  # Rekognition FaceId: store it; DeleteFaces and SearchFaces need it
    external_image_id: str
    left: float
    top: float
    width: float
    height: float
    confidence: float  # 0..100, that the box holds a face

    def pixel_box(self, image_width: int, image_height: int) -> tuple[int, int, int, int]:
        """(left, top, width, height) in pixels of an image of that size showing the same picture."""
        left = max(0, round(self.left * image_width))
        top = max(0, round(self.top * image_height))
        right = min(image_width, round((self.left + self.width) * image_width))
        bottom = min(image_height, round((self.top + self.height) * image_height))
        return left, top, max(0, right - left), max(0, bottom - top)

    def to_detected_face(self, image_width: int, image_height: int) -> DetectedFace:
        """The protocol's shape; the embedding is empty because the vector stays inside Rekognition."""
        left, top, width, height = self.pixel_box(image_width, image_height)
        return DetectedFace(
            left=left,
            top=top,
            width=width,
            height=height,
            embedding=np.empty(0, dtype=np.float32),
            score=self.confidence / 100.0,
        )


@dataclass(frozen=True)
class FaceHit:
    """One search result: a stored face of a photo or a selfie, and how similar it is (0..100)."""

    kind: str  # "photo" or "selfie"
    ref_id: int  # photo id or selfie id, from the ExternalImageId
    face_id: str
    similarity: float

    @property
    def photo_id(self) -> int | None:
        return self.ref_id if self.kind == "photo" else None

    @property
    def selfie_id(self) -> int | None:
        return self.ref_id if self.kind == "selfie" else None


def photo_external_id(photo_id: int) -> str:
    return str(photo_id)


def selfie_external_id(selfie_id: int) -> str:
    return f"{SELFIE_PREFIX}{selfie_id}"


def parse_external_id(external_id: str) -> tuple[str, int] | None:
    """("photo", id) or ("selfie", id); None for a face someone else put in the collection."""
    if external_id.startswith(SELFIE_PREFIX) and external_id[len(SELFIE_PREFIX) :].isdigit():
        return "selfie", int(external_id[len(SELFIE_PREFIX) :])
    if external_id.isdigit():
        return "photo", int(external_id)
    return None


def fit_image_bytes(image: bytes | np.ndarray, max_bytes: int = MAX_IMAGE_BYTES, quality: int = 90) -> bytes:
    """JPEG or PNG bytes of at most ``max_bytes``: passed through when they already fit, else re-encoded and shrunk.

    ``image`` is encoded bytes (decoded with EXIF orientation applied) or an RGB uint8 array (H, W, 3).
    """
    if isinstance(image, bytes | bytearray | memoryview):
        data = bytes(image)
        is_jpeg_or_png = data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n"
        if is_jpeg_or_png and len(data) <= max_bytes:
            return data
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            raise PermanentImageError("The image cannot be decoded for face recognition.", code="corrupt_image")
    else:
        bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    encoded = _encode(bgr, quality)
    # JPEG size grows roughly with the pixel count: shrink by the square root of the excess, with a margin,
    # and repeat in the rare case the estimate was short.
    while len(encoded) > max_bytes:
        factor = min(0.9, (max_bytes / len(encoded)) ** 0.5 * 0.95)
        h, w = bgr.shape[:2]
        if min(h, w) * factor < 80:  # Rekognition's minimum image side
            raise PermanentImageError("The image cannot be made small enough for face recognition.", code="too_large")
        bgr = cv2.resize(bgr, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)
        encoded = _encode(bgr, quality)
    return encoded


def _encode(bgr: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise PermanentImageError("The image could not be re-encoded.", code="encode_failed")
    return buf.tobytes()


def make_client(endpoint_url: str | None = None, region: str | None = None, max_pool_connections: int = 10) -> Any:
    """A Rekognition client that never retries by itself and honours the standard AWS environment.

    Without ``endpoint_url`` botocore resolves AWS_ENDPOINT_URL_REKOGNITION, then AWS_ENDPOINT_URL, then the
    shared config file, then the public endpoint; credentials come from the usual chain.
    """
    session = boto3.session.Session()
    region = region or os.environ.get("AWS_REGION") or session.region_name or "us-east-1"
    config = Config(
        # total_max_attempts counts the first request; the older ``max_attempts`` key counts retries only, so
        # max_attempts=1 would still mean two attempts. One attempt each: our loop retries, through the limiter.
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=5,
        read_timeout=60,
        max_pool_connections=max_pool_connections,
    )
    return session.client("rekognition", region_name=region, endpoint_url=endpoint_url or None, config=config)


def _headers(exc: ClientError) -> dict[str, str]:
    return {k.lower(): v for k, v in exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).items()}


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_throttle(exc: ClientError) -> bool:
    return _code(exc) in THROTTLING_CODES or _status(exc) == 429


def retry_after_seconds(exc: ClientError) -> float | None:
    """The provider's retry delay: ``x-amz-retry-after`` (ms, what botocore reads) or ``Retry-After`` (s or date)."""
    headers = _headers(exc)
    raw_ms = headers.get("x-amz-retry-after")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_seconds(attempt: int) -> float:
    """Equal-jitter exponential backoff: never zero (it becomes the shared cooldown), spread so waiters part."""
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2**attempt)
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class RekognitionFaceEngine:
    """Face engine backed by Rekognition collections. Build once per worker (``from_settings``); thread-safe.

    Every public method that talks to AWS takes ``deadline`` (unix seconds): the end of the photo's time budget.
    Pass the same deadline when a rescheduled job runs again, so waiting across reschedules is bounded too.
    """

    name = PROVIDER

    def __init__(
        self,
        *,
        limiter: ProviderLimiter,
        costs: CostTracker,
        collection_prefix: str = "snapmatch",
        client: Any = None,
        endpoint_url: str | None = None,
        match_similarity: float = 80.0,
        max_faces: int = MAX_FACES_PER_IMAGE,
        search_max_faces: int = 4096,
        quality_filter: str = "AUTO",
        time_budget_seconds: float = 600.0,
        max_inline_wait_seconds: float = 5.0,
    ) -> None:
        self.limiter = limiter
        self.costs = costs
        self.collection_prefix = collection_prefix
        self.endpoint_url = endpoint_url
        self.match_similarity = match_similarity
        self.max_faces = max(1, min(MAX_FACES_PER_IMAGE, max_faces))
        self.search_max_faces = search_max_faces
        self.quality_filter = quality_filter
        self.time_budget_seconds = time_budget_seconds
        self.max_inline_wait_seconds = max_inline_wait_seconds
        self._given_client = client
        # boto3 clients are thread-safe but must not cross a fork (the worker builds the engine before forking
        # work horses): one client per process id, created on first use.
        self._client = PerProcess(
            lambda: make_client(self.endpoint_url, max_pool_connections=max(10, self.limiter.limits.concurrency))
        )

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> RekognitionFaceEngine:
        from snapmatch.redis_client import get_redis

        redis = redis if redis is not None else get_redis(settings.REDIS_URL)
        return cls(
            limiter=ProviderLimiter(redis, limits_for(PROVIDER, settings), prefix=settings.REDIS_PREFIX),
            costs=CostTracker.from_settings(redis, settings),
            collection_prefix=settings.REKOGNITION_COLLECTION_PREFIX,
            match_similarity=settings.REKOGNITION_MATCH_SIMILARITY,
            max_faces=settings.REKOGNITION_MAX_FACES,
            quality_filter=settings.REKOGNITION_QUALITY_FILTER,
            time_budget_seconds=settings.AWS_TIMEOUT_SECONDS_TOTAL,
            max_inline_wait_seconds=settings.AWS_MAX_INLINE_WAIT_SECONDS,
        )

    @property
    def client(self) -> Any:
        return self._given_client if self._given_client is not None else self._client.get()

    # -- the FaceEngine protocol ------------------------------------------------------------------------------

    def detect(self, rgb: np.ndarray) -> list[DetectedFace]:
        """Not offered: Rekognition keeps the face vectors, so the pipeline must call ``index_photo``."""
        raise NotImplementedError("the rekognition engine indexes photos with index_photo(event_id, photo_id, image)")

    def detect_selfie(self, rgb: np.ndarray) -> DetectedFace | None:
        """Not offered: use ``index_selfie`` + ``match_selfie`` (or ``search_selfie``)."""
        raise NotImplementedError("the rekognition engine indexes selfies with index_selfie(event_id, selfie_id, ...)")

    # -- time budget -----------------------------------------------------------------------------------------

    def deadline_from(self, started: datetime | float | None) -> float:
        """The photo's deadline: its first start (datetime or unix seconds; None = now) plus the time budget."""
        if started is None:
            start = time.time()
        elif isinstance(started, datetime):
            start = started.timestamp()
        else:
            start = float(started)
        return start + self.time_budget_seconds

    # -- collections -----------------------------------------------------------------------------------------

    def collection_id(self, event_id: int) -> str:
        return f"{self.collection_prefix}-event-{event_id}"

    def ensure_collection(self, event_id: int, *, deadline: float | None = None) -> bool:
        """Create the event's collection; False when it already existed (another worker was first)."""
        try:
            self._call("CreateCollection", event_id, deadline, CollectionId=self.collection_id(event_id))
        except ClientError as exc:
            if _code(exc) == "ResourceAlreadyExistsException":
                return False
            raise self._provider_error("CreateCollection", exc) from exc
        return True

    def delete_collection(self, event_id: int, *, deadline: float | None = None) -> bool:
        """Drop the event's collection and every face in it (event deleted). False when there was none."""
        try:
            self._call("DeleteCollection", event_id, deadline, CollectionId=self.collection_id(event_id))
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return False
            raise self._provider_error("DeleteCollection", exc) from exc
        self.costs.record_faces_stored(PROVIDER, event_id, -self._stored_faces(event_id))
        return True

    def _stored_faces(self, event_id: int) -> int:
        return int(self.costs.event_summary(PROVIDER, event_id)["faces_stored"])

    # -- indexing --------------------------------------------------------------------------------------------

    def index_photo(
        self, event_id: int, photo_id: int, image: bytes | np.ndarray, *, deadline: float | None = None
    ) -> list[IndexedFace]:
        """IndexFaces: store every face of the photo (ExternalImageId = photo id), largest first.

        ``image``: prefer the EXIF-oriented RGB array or the working JPEG, so boxes (ratios) map onto the
        oriented original. Re-running for the same photo adds new faces: delete the ones stored before first.
        """
        return self._index(event_id, photo_external_id(photo_id), image, self.max_faces, deadline)

    def index_selfie(
        self, event_id: int, selfie_id: int, image: bytes | np.ndarray, *, deadline: float | None = None
    ) -> IndexedFace | None:
        """IndexFaces with MaxFaces=1: store the selfie's largest face; None when there is no usable face."""
        faces = self._index(event_id, selfie_external_id(selfie_id), image, 1, deadline)
        return faces[0] if faces else None

    def _index(
        self, event_id: int, external_id: str, image: bytes | np.ndarray, max_faces: int, deadline: float | None
    ) -> list[IndexedFace]:
        deadline = deadline if deadline is not None else self.deadline_from(None)
        params = {
            "CollectionId": self.collection_id(event_id),
            "Image": {"Bytes": fit_image_bytes(image)},
            "ExternalImageId": external_id,
            "MaxFaces": max_faces,
            "QualityFilter": self.quality_filter,
            "DetectionAttributes": ["DEFAULT"],
        }
        response = self._with_collection("IndexFaces", event_id, deadline, params)
        faces = [_indexed_face(record["Face"]) for record in response.get("FaceRecords", [])]
        self.costs.record_faces_stored(PROVIDER, event_id, len(faces))
        if response.get("UnindexedFaces"):
            reasons = [u.get("Reasons", []) for u in response["UnindexedFaces"]]
            log.info("%s: %d face(s) not indexed: %s", external_id, len(reasons), reasons)
        return faces

    def _with_collection(self, operation: str, event_id: int, deadline: float, params: dict[str, Any]) -> Any:
        """Call, creating the event's collection when the provider says it does not exist yet."""
        try:
            return self._call(operation, event_id, deadline, **params)
        except ClientError as exc:
            if _code(exc) != "ResourceNotFoundException":
                raise self._provider_error(operation, exc) from exc
        self.ensure_collection(event_id, deadline=deadline)
        try:
            return self._call(operation, event_id, deadline, **params)
        except ClientError as exc:
            raise self._provider_error(operation, exc) from exc

    # -- matching --------------------------------------------------------------------------------------------

    def match_photo_faces(
        self, event_id: int, face_ids: Iterable[str], *, deadline: float | None = None
    ) -> dict[str, list[FaceHit]]:
        """SearchFaces for each new face of a photo: the selfies it matches, by face id (one billed call each).

        Call it after ``index_photo`` and skip it when the event has no ready selfie: it is the costly half.
        """
        deadline = deadline if deadline is not None else self.deadline_from(None)
        return {
            face_id: [hit for hit in self.search_face(event_id, face_id, deadline=deadline) if hit.kind == "selfie"]
            for face_id in face_ids
        }

    def match_selfie(self, event_id: int, selfie_face_id: str, *, deadline: float | None = None) -> list[FaceHit]:
        """SearchFaces for an indexed selfie: the photo faces that match it (other selfies left out)."""
        return [hit for hit in self.search_face(event_id, selfie_face_id, deadline=deadline) if hit.kind == "photo"]

    def search_face(self, event_id: int, face_id: str, *, deadline: float | None = None) -> list[FaceHit]:
        """SearchFaces: every stored face (photos and selfies) similar to a stored one, most similar first."""
        try:
            response = self._call(
                "SearchFaces",
                event_id,
                deadline,
                CollectionId=self.collection_id(event_id),
                FaceId=face_id,
                FaceMatchThreshold=self.match_similarity,
                MaxFaces=self.search_max_faces,
            )
        except ClientError as exc:
            # No collection, or the face was deleted meanwhile (selfie replaced): nothing to match.
            if _code(exc) in ("ResourceNotFoundException", "InvalidParameterException"):
                log.info("SearchFaces %s in event %s: %s", face_id, event_id, _code(exc))
                return []
            raise self._provider_error("SearchFaces", exc) from exc
        return _hits(response)

    def search_selfie(
        self, event_id: int, image: bytes | np.ndarray, *, deadline: float | None = None
    ) -> list[FaceHit] | None:
        """SearchFacesByImage without storing anything: photo faces matching the image's largest face.

        None when the image has no face. For live two-way matching prefer ``index_selfie`` + ``match_selfie``:
        a photo indexed later can then find the selfie with ``match_photo_faces``.
        """
        try:
            response = self._call(
                "SearchFacesByImage",
                event_id,
                deadline,
                CollectionId=self.collection_id(event_id),
                Image={"Bytes": fit_image_bytes(image)},
                FaceMatchThreshold=self.match_similarity,
                MaxFaces=self.search_max_faces,
                QualityFilter=self.quality_filter,
            )
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                return []
            # Rekognition answers a face-less image with InvalidParameterException ("no faces in the image").
            if _code(exc) == "InvalidParameterException":
                return None
            raise self._provider_error("SearchFacesByImage", exc) from exc
        return [hit for hit in _hits(response) if hit.kind == "photo"]

    # -- deletion --------------------------------------------------------------------------------------------

    def delete_faces(self, event_id: int, face_ids: Iterable[str], *, deadline: float | None = None) -> list[str]:
        """DeleteFaces (photo or selfie deleted, or a re-run replacing its faces); returns the ids deleted."""
        ids = list(dict.fromkeys(face_ids))
        deleted: list[str] = []
        for start in range(0, len(ids), DELETE_BATCH):
            try:
                response = self._call(
                    "DeleteFaces",
                    event_id,
                    deadline,
                    CollectionId=self.collection_id(event_id),
                    FaceIds=ids[start : start + DELETE_BATCH],
                )
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return deleted
                raise self._provider_error("DeleteFaces", exc) from exc
            deleted.extend(response.get("DeletedFaces", []))
        self.costs.record_faces_stored(PROVIDER, event_id, -len(deleted))
        return deleted

    def list_faces(self, event_id: int, *, deadline: float | None = None) -> dict[str, str]:
        """ListFaces, all pages: face id -> ExternalImageId of everything stored for the event."""
        faces: dict[str, str] = {}
        token: str | None = None
        while True:
            params: dict[str, Any] = {"CollectionId": self.collection_id(event_id), "MaxResults": 4096}
            if token:
                params["NextToken"] = token
            try:
                response = self._call("ListFaces", event_id, deadline, **params)
            except ClientError as exc:
                if _code(exc) == "ResourceNotFoundException":
                    return faces
                raise self._provider_error("ListFaces", exc) from exc
            faces.update({f["FaceId"]: f.get("ExternalImageId", "") for f in response.get("Faces", [])})
            token = response.get("NextToken")
            if not token:
                return faces

    def purge_unknown_faces(
        self, event_id: int, known_face_ids: Iterable[str], *, deadline: float | None = None
    ) -> list[str]:
        """Delete stored faces the database does not know (a worker died between IndexFaces and its commit)."""
        known = set(known_face_ids)
        unknown = [face_id for face_id in self.list_faces(event_id, deadline=deadline) if face_id not in known]
        return self.delete_faces(event_id, unknown, deadline=deadline) if unknown else []

    # -- one call, every attempt through the limiter ---------------------------------------------------------

    def _call(self, operation: str, event_id: int, deadline: float | None, **params: Any) -> Any:
        """Call ``operation`` until it answers; each attempt takes a lease. ClientErrors other than throttling
        and outages are raised as they are, for the caller to interpret.

        Raises ``RetryLater`` when the next attempt is more than ``max_inline_wait_seconds`` away, ``QuotaExceeded``
        when it would fall past ``deadline``, and ``BudgetExceeded`` (before a billable call) when the event's
        budget is spent.
        """
        deadline = deadline if deadline is not None else self.deadline_from(None)
        billable = self.costs.prices.call_price(PROVIDER, operation) > 0
        method = getattr(self.client, _snake_case(operation))
        return call_through(
            self.limiter,
            lambda: method(**params),
            lambda exc: self._classify(operation, exc),
            deadline=deadline,
            policy=self._policy(),
            waits=ProviderWaits(PROVIDER, operation, self.time_budget_seconds),
            before_attempt=(lambda: self.costs.check_budget(event_id, PROVIDER)) if billable else None,
            on_throttle=lambda _delay: self.costs.record_throttle(PROVIDER, operation),
            # Free calls (collections, deletes, listing) are counted too, at price 0, so the admin page shows them.
            on_success=lambda _response: self.costs.record_call(PROVIDER, operation, event_id),
            name=f"{PROVIDER} {operation}",
        )

    def _policy(self) -> CallPolicy:
        return CallPolicy(
            max_inline_wait=self.max_inline_wait_seconds,
            # Any denial short enough is waited out inline, a cooldown or an open breaker included.
            wait_for=frozenset(DenyReason),
            transient_retries=TRANSIENT_RETRIES,
            throttle_backoff=backoff_seconds,
            failure_backoff=backoff_seconds,  # counted from the first failure: 0.25-0.5 s, then 0.5-1 s
            decide_pause=_decide_pause,
        )

    def _classify(self, operation: str, exc: Exception) -> Classified | None:
        if isinstance(exc, ClientError):
            if is_throttle(exc):
                return Classified(Verdict.THROTTLED, retry_after_seconds(exc), detail=_code(exc) or _status(exc))
            if _code(exc) in TRANSIENT_CODES or _status(exc) >= 500:
                return Classified(Verdict.TRANSIENT, error=self._provider_error(operation, exc))
            # The provider answered (bad request, missing resource): it is healthy, the request was not. The
            # ClientError goes to the caller as it is.
            return Classified(Verdict.PERMANENT)
        if isinstance(exc, ParamValidationError):
            # Refused by botocore before sending: a bug on our side, nothing the breaker should learn.
            return None
        if isinstance(exc, BotoCoreError):  # connection refused/reset, read timeout
            return Classified(Verdict.TRANSIENT, error=ProviderError(f"{PROVIDER} {operation}: {exc}"))
        return None

    def _provider_error(self, operation: str, exc: ClientError) -> SnapmatchError:
        """The typed error for a ClientError the call loop did not retry: an image the provider refuses
        and any other 4xx are permanent (the job fails at once); outages are ``ProviderError`` (RQ retries)."""
        code, message = _code(exc), exc.response.get("Error", {}).get("Message", "")
        detail = f"{PROVIDER} {operation}: {code or _status(exc)}: {message}"
        if code in PERMANENT_IMAGE_CODES:
            return PermanentImageError(detail, code="provider_image")
        if code not in TRANSIENT_CODES and 400 <= _status(exc) < 500:
            return ProviderRejected(detail)
        return ProviderError(detail)

    def limiter_state(self) -> dict[str, Any]:
        return self.limiter.state()


def _decide_pause(now: float, delay: float, deadline: float, max_inline_seconds: float) -> WaitDecision:
    """A backoff longer than the inline bound reschedules even when it ends past the deadline (the next run
    then ends in quota_exceeded); otherwise the shared rule."""
    if delay > max_inline_seconds:
        return WaitDecision.RESCHEDULE
    return decide_wait(now, delay, deadline, max_inline_seconds)


def _snake_case(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


def _indexed_face(face: dict[str, Any]) -> IndexedFace:
    box = face.get("BoundingBox", {})
    return IndexedFace(
        face_id=face["FaceId"],
        external_image_id=face.get("ExternalImageId", ""),
        left=float(box.get("Left", 0.0)),
        top=float(box.get("Top", 0.0)),
        width=float(box.get("Width", 0.0)),
        height=float(box.get("Height", 0.0)),
        confidence=float(face.get("Confidence", 0.0)),
    )


def _hits(response: dict[str, Any]) -> list[FaceHit]:
    hits = []
    for match in response.get("FaceMatches", []):
        face = match.get("Face", {})
        parsed = parse_external_id(face.get("ExternalImageId", ""))
        if parsed is None:
            continue
        hits.append(FaceHit(parsed[0], parsed[1], face["FaceId"], float(match.get("Similarity", 0.0))))
    return sorted(hits, key=lambda h: -h.similarity)
