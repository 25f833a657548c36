"""A Rekognition-compatible HTTP server on 127.0.0.1 for tests: AWS JSON 1.1, backed by the local dlib engine.

It injects faults (throttling errors, retry delays, latency) and counts what it saw (concurrency, per-second rate).

Wire format: ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` and a JSON body
(``application/x-amz-json-1.1``); errors are HTTP 400 with ``{"__type": "<Code>", "message": "..."}``. The
signature is not checked. Control endpoints: ``GET /_stats``, ``POST /_config`` (JSON of fault settings),
``POST /_reset`` (counters).

Similarity: dlib gives a Euclidean distance d between 128-d descriptors (same person when d <= 0.6). The server
answers ``similarity = clamp(100 - d * 100 / 3, 0, 100)``, a monotone mapping where d = 0.6 gives 80, which is
Rekognition's default FaceMatchThreshold: the two engines then agree on what a match is.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import math
import random
import re
import signal
import sys
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

TARGET_PREFIX = "RekognitionService."
CONTENT_TYPE = "application/x-amz-json-1.1"
MAX_IMAGE_BYTES = 5 * 1024 * 1024
FACE_MODEL_VERSION = "7.0"
COLLECTION_ID = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}$")
THROTTLE_CODES = ("ThrottlingException", "ProvisionedThroughputExceededException")
# Smallest face (pixels wide) each QualityFilter keeps, and the lowest dlib detector score it keeps.
QUALITY_MIN_WIDTH = {"NONE": 0, "LOW": 20, "AUTO": 40, "MEDIUM": 40, "HIGH": 60}
QUALITY_MIN_SCORE = {"NONE": -math.inf, "LOW": -math.inf, "AUTO": -math.inf, "MEDIUM": 0.2, "HIGH": 0.6}


def similarity_from_distance(distance: float) -> float:
    return float(min(100.0, max(0.0, 100.0 - distance * 100.0 / 3.0)))


def confidence_from_score(score: float) -> float:
    """dlib's HOG score (about 0..3 for real faces) as a Rekognition-like detection confidence in percent."""
    return float(min(99.999, max(50.0, 90.0 + 5.0 * score)))


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Faults:
    """What the server does wrong, on purpose. Change at run time with ``RekognitionFake.configure``."""

    throttle_rate: float = 0.0  # share of calls answered with a throttling error
    throttle_code: str = "ThrottlingException"  # or "ProvisionedThroughputExceededException", or "mixed"
    throttle_status: int = 400  # what AWS sends for these; 429 to test status-only detection
    retry_after: float | None = None  # seconds: Retry-After (whole seconds) and x-amz-retry-after (ms)
    latency: float = 0.0  # seconds added to every call
    ops: tuple[str, ...] = ()  # throttle (or fail) only these operations (empty: all)
    error_code: str | None = None  # answer every call (of ``ops``) with this error, e.g. "InvalidParameterException"
    error_status: int = 400


@dataclass
class StoredFace:
    face_id: str
    image_id: str
    external_image_id: str | None
    box: dict[str, float]
    confidence: float
    embedding: np.ndarray = field(repr=False)

    def as_face(self) -> dict[str, Any]:
        face: dict[str, Any] = {
            "FaceId": self.face_id,
            "BoundingBox": self.box,
            "ImageId": self.image_id,
            "Confidence": self.confidence,
            "IndexFacesModelVersion": FACE_MODEL_VERSION,
        }
        if self.external_image_id is not None:
            face["ExternalImageId"] = self.external_image_id
        return face


@dataclass(frozen=True)
class FoundFace:
    box: dict[str, float]
    width_px: int
    area_px: int
    score: float
    embedding: np.ndarray


class Stats:
    """What the server saw. A call counts as in flight from its arrival until just before its answer is written,
    so every call it counts lies inside the client's lease for it (a client releases only after the answer)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.in_flight = 0
            self.max_in_flight = 0
            self.arrivals: deque[float] = deque()
            self.max_per_second = 0
            self.calls: Counter[str] = Counter()
            self.throttled: Counter[str] = Counter()
            self.errors: Counter[str] = Counter()
            self.total = 0

    def enter(self, op: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.total += 1
            self.calls[op] += 1
            # Sliding window: the most calls that arrived within any one second.
            self.arrivals.append(now)
            while self.arrivals and self.arrivals[0] <= now - 1.0:
                self.arrivals.popleft()
            self.max_per_second = max(self.max_per_second, len(self.arrivals))

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": self.total,
                "in_flight": self.in_flight,
                "max_concurrent": self.max_in_flight,
                "max_per_second": self.max_per_second,
                "calls": dict(self.calls),
                "throttled": sum(self.throttled.values()),
                "throttled_by_op": dict(self.throttled),
                "errors": dict(self.errors),
            }


class FakeRekognitionService:
    """The operations, without HTTP: collections of faces described by the local engine."""

    def __init__(self, min_face_px: int = 60) -> None:
        from snapmatch.faces.local import LocalFaceEngine

        self.engine = LocalFaceEngine(min_face_px=min_face_px)
        self.lock = threading.Lock()
        # dlib's models are not documented as thread-safe: one detection at a time.
        self.detect_lock = threading.Lock()
        self.collections: dict[str, dict[str, StoredFace]] = {}
        self._detections: dict[str, list[FoundFace]] = {}

    # -- helpers -------------------------------------------------------------------------------------------

    def _collection(self, collection_id: str) -> dict[str, StoredFace]:
        collection = self.collections.get(collection_id)
        if collection is None:
            raise ApiError("ResourceNotFoundException", f"The collection id: {collection_id} does not exist")
        return collection

    def _image_bytes(self, body: dict[str, Any]) -> bytes:
        image = body.get("Image") or {}
        if "Bytes" not in image:
            raise ApiError("InvalidParameterException", "Only Image.Bytes is supported by this fake")
        try:
            data = base64.b64decode(image["Bytes"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ApiError("InvalidParameterException", "Image.Bytes is not valid base64") from exc
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError("ImageTooLargeException", f"Image size {len(data)} exceeds the limit of {MAX_IMAGE_BYTES}")
        return data

    def _faces(self, data: bytes) -> list[FoundFace]:
        digest = hashlib.sha256(data).hexdigest()
        cached = self._detections.get(digest)
        if cached is not None:
            return cached
        bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if bgr is None or bgr.size == 0:
            raise ApiError("InvalidImageFormatException", "Request has invalid image format")
        h, w = bgr.shape[:2]
        if min(h, w) < 80:
            raise ApiError("InvalidParameterException", "Image is smaller than 80 pixels")
        with self.detect_lock:
            detected = self.engine.detect(bgr)
        found = [
            FoundFace(
                box={"Width": f.width / w, "Height": f.height / h, "Left": f.left / w, "Top": f.top / h},
                width_px=f.width,
                area_px=f.width * f.height,
                score=f.score,
                embedding=f.embedding,
            )
            for f in detected
        ]
        found.sort(key=lambda f: -f.area_px)
        self._detections[digest] = found
        return found

    @staticmethod
    def _quality_ok(face: FoundFace, quality: str) -> str | None:
        if face.width_px < QUALITY_MIN_WIDTH.get(quality, 40):
            return "SMALL_BOUNDING_BOX"
        if face.score < QUALITY_MIN_SCORE.get(quality, -math.inf):
            return "LOW_CONFIDENCE"
        return None

    def _matches(
        self, collection: dict[str, StoredFace], probe: np.ndarray, threshold: float, max_faces: int, skip: str | None
    ) -> list[dict[str, Any]]:
        stored = [f for f in collection.values() if f.face_id != skip]
        if not stored:
            return []
        gallery = np.stack([f.embedding for f in stored])
        distances = np.sqrt(((gallery - probe[None, :]) ** 2).sum(axis=1))
        matches = []
        for face, distance in zip(stored, distances, strict=True):
            similarity = similarity_from_distance(float(distance))
            if similarity >= threshold:
                matches.append({"Similarity": round(similarity, 5), "Face": face.as_face()})
        matches.sort(key=lambda m: -m["Similarity"])
        return matches[:max_faces]

    # -- operations ----------------------------------------------------------------------------------------

    def create_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        collection_id = str(body.get("CollectionId", ""))
        if not COLLECTION_ID.match(collection_id):
            raise ApiError("InvalidParameterException", "CollectionId does not match [a-zA-Z0-9_.\\-]+")
        with self.lock:
            if collection_id in self.collections:
                raise ApiError("ResourceAlreadyExistsException", f"The collection id: {collection_id} already exists")
            self.collections[collection_id] = {}
        return {
            "StatusCode": 200,
            "CollectionArn": f"aws:rekognition:us-east-1:000000000000:collection/{collection_id}",
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def delete_collection(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self._collection(body.get("CollectionId", ""))
            del self.collections[body["CollectionId"]]
        return {"StatusCode": 200}

    def list_collections(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            ids = sorted(self.collections)
        start = int(body.get("NextToken") or 0)
        limit = int(body.get("MaxResults") or 1000)
        page = ids[start : start + limit]
        reply: dict[str, Any] = {"CollectionIds": page, "FaceModelVersions": [FACE_MODEL_VERSION] * len(page)}
        if start + limit < len(ids):
            reply["NextToken"] = str(start + limit)
        return reply

    def index_faces(self, body: dict[str, Any]) -> dict[str, Any]:
        collection_id = body.get("CollectionId", "")
        with self.lock:
            self._collection(collection_id)
        faces = self._faces(self._image_bytes(body))
        quality = body.get("QualityFilter", "AUTO")
        max_faces = int(body.get("MaxFaces") or 100)
        external_id = body.get("ExternalImageId")
        image_id = str(uuid.uuid4())
        records, unindexed, kept = [], [], 0
        for face in faces:  # largest first, so MaxFaces drops the smallest ones
            detail = {"BoundingBox": face.box, "Confidence": confidence_from_score(face.score)}
            reason = self._quality_ok(face, quality)
            if reason is None and kept >= max_faces:
                reason = "EXCEEDS_MAX_FACES"
            if reason is not None:
                unindexed.append({"Reasons": [reason], "FaceDetail": detail})
                continue
            kept += 1
            stored = StoredFace(
                face_id=str(uuid.uuid4()),
                image_id=image_id,
                external_image_id=external_id,
                box=face.box,
                confidence=detail["Confidence"],
                embedding=face.embedding,
            )
            records.append((stored, detail))
        with self.lock:
            collection = self._collection(collection_id)
            for stored, _ in records:
                collection[stored.face_id] = stored
        return {
            "FaceRecords": [{"Face": stored.as_face(), "FaceDetail": detail} for stored, detail in records],
            "UnindexedFaces": unindexed,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def search_faces_by_image(self, body: dict[str, Any]) -> dict[str, Any]:
        collection_id = body.get("CollectionId", "")
        with self.lock:
            self._collection(collection_id)
        quality = body.get("QualityFilter", "NONE")
        faces = [f for f in self._faces(self._image_bytes(body)) if self._quality_ok(f, quality) is None]
        if not faces:
            raise ApiError("InvalidParameterException", "There are no faces in the image. Should be at least 1.")
        largest = faces[0]
        with self.lock:
            matches = self._matches(
                self._collection(collection_id),
                largest.embedding,
                float(body.get("FaceMatchThreshold", 80.0)),
                int(body.get("MaxFaces") or 4096),
                None,
            )
        return {
            "SearchedFaceBoundingBox": largest.box,
            "SearchedFaceConfidence": confidence_from_score(largest.score),
            "FaceMatches": matches,
            "FaceModelVersion": FACE_MODEL_VERSION,
        }

    def search_faces(self, body: dict[str, Any]) -> dict[str, Any]:
        face_id = body.get("FaceId", "")
        with self.lock:
            collection = self._collection(body.get("CollectionId", ""))
            if face_id not in collection:
                raise ApiError("InvalidParameterException", f"FaceId {face_id} was not found in the collection")
            matches = self._matches(
                collection,
                collection[face_id].embedding,
                float(body.get("FaceMatchThreshold", 80.0)),
                int(body.get("MaxFaces") or 4096),
                face_id,  # a face does not match itself
            )
        return {"SearchedFaceId": face_id, "FaceMatches": matches, "FaceModelVersion": FACE_MODEL_VERSION}

    def delete_faces(self, body: dict[str, Any]) -> dict[str, Any]:
        face_ids = list(body.get("FaceIds") or [])
        if not 1 <= len(face_ids) <= 4096:
            raise ApiError("InvalidParameterException", "FaceIds must hold 1 to 4096 ids")
        deleted, missing = [], []
        with self.lock:
            collection = self._collection(body.get("CollectionId", ""))
            for face_id in face_ids:
                if collection.pop(face_id, None) is not None:
                    deleted.append(face_id)
                else:
                    missing.append({"FaceId": face_id, "Reasons": ["FACE_NOT_FOUND"]})
        return {"DeletedFaces": deleted, "UnsuccessfulFaceDeletions": missing}

    def list_faces(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            faces = [f.as_face() for f in self._collection(body.get("CollectionId", "")).values()]
        start = int(body.get("NextToken") or 0)
        limit = int(body.get("MaxResults") or 1000)
        reply: dict[str, Any] = {"Faces": faces[start : start + limit], "FaceModelVersion": FACE_MODEL_VERSION}
        if start + limit < len(faces):
            reply["NextToken"] = str(start + limit)
        return reply

    OPERATIONS = {
        "CreateCollection": create_collection,
        "DeleteCollection": delete_collection,
        "ListCollections": list_collections,
        "IndexFaces": index_faces,
        "SearchFacesByImage": search_faces_by_image,
        "SearchFaces": search_faces,
        "DeleteFaces": delete_faces,
        "ListFaces": list_faces,
    }

    def handle(self, op: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = self.OPERATIONS.get(op)
        if handler is None:
            raise ApiError("UnknownOperationException", f"{op} is not implemented by this fake")
        return handler(self, body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real endpoint
    # Headers and body leave in two writes: without TCP_NODELAY, Nagle + delayed ACK add ~40 ms to every call.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's signature
        pass

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None, ctype: str = CONTENT_TYPE
    ) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/_stats":
            self._send(200, self.server.fake.stats(), ctype="application/json")
        else:
            self._send(404, {"message": "not found"}, ctype="application/json")

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        fake = self.server.fake
        body = self._read_body()
        if self.path.rstrip("/") == "/_config":
            fake.configure(**json.loads(body or b"{}"))
            self._send(200, asdict(fake.faults), ctype="application/json")
            return
        if self.path.rstrip("/") == "/_reset":
            fake.reset_stats()
            self._send(200, {}, ctype="application/json")
            return
        target = self.headers.get("X-Amz-Target", "")
        if not target.startswith(TARGET_PREFIX):
            self._send(400, {"__type": "UnknownOperationException", "message": f"bad X-Amz-Target {target!r}"})
            return
        op = target[len(TARGET_PREFIX) :]
        status, payload, headers = fake.answer(op, body)
        self._send(status, payload, headers)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: RekognitionFake


class RekognitionFake:
    """``with RekognitionFake(throttle_rate=0.3, latency=0.05) as fake:`` then ``endpoint_url=fake.endpoint_url``."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, seed: int | None = None, min_face_px: int = 60, **faults: Any
    ) -> None:
        self.service = FakeRekognitionService(min_face_px=min_face_px)
        self.faults = Faults(**_fault_values(faults))
        self.stats_data = Stats()
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> RekognitionFake:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rekognition-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RekognitionFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    # -- run-time control ----------------------------------------------------------------------------------

    def configure(self, **faults: Any) -> Faults:
        """Change fault injection while running, e.g. ``configure(throttle_rate=0.0)``."""
        self.faults = replace(self.faults, **_fault_values(faults))
        return self.faults

    def stats(self) -> dict[str, Any]:
        return self.stats_data.snapshot()

    def reset_stats(self) -> None:
        self.stats_data.reset()

    def faces(self, collection_id: str) -> dict[str, dict[str, Any]]:
        """The faces stored in a collection (face id -> Face), for assertions."""
        with self.service.lock:
            return {k: v.as_face() for k, v in self.service.collections.get(collection_id, {}).items()}

    # -- one call ------------------------------------------------------------------------------------------

    def _throttle_code(self, op: str) -> str | None:
        faults = self.faults
        if faults.throttle_rate <= 0 or (faults.ops and op not in faults.ops):
            return None
        with self._rng_lock:
            if self._rng.random() >= faults.throttle_rate:
                return None
            if faults.throttle_code == "mixed":
                return self._rng.choice(THROTTLE_CODES)
        return faults.throttle_code

    def answer(self, op: str, raw: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        stats = self.stats_data
        stats.enter(op)
        try:
            faults = self.faults
            if faults.latency > 0:
                time.sleep(faults.latency)
            if faults.error_code and (not faults.ops or op in faults.ops):
                with stats.lock:
                    stats.errors[faults.error_code] += 1
                return faults.error_status, {"__type": faults.error_code, "message": "injected by the fake"}, {}
            code = self._throttle_code(op)
            if code is not None:
                with stats.lock:
                    stats.throttled[op] += 1
                headers = {}
                if faults.retry_after is not None:
                    headers["Retry-After"] = str(max(0, math.ceil(faults.retry_after)))
                    headers["x-amz-retry-after"] = str(round(faults.retry_after * 1000))
                message = "Rate exceeded" if code == "ThrottlingException" else "Provisioned rate exceeded"
                return faults.throttle_status, {"__type": code, "message": message}, headers
            try:
                body = json.loads(raw or b"{}")
                return 200, self.service.handle(op, body), {}
            except ApiError as exc:
                with stats.lock:
                    stats.errors[exc.code] += 1
                return exc.status, {"__type": exc.code, "message": exc.message}, {}
            except json.JSONDecodeError:
                return 400, {"__type": "SerializationException", "message": "body is not JSON"}, {}
        finally:
            # Before the answer is written: the client cannot release its lease before it has the answer.
            stats.leave()


def _fault_values(values: dict[str, Any]) -> dict[str, Any]:
    known = {f.name for f in fields(Faults)}
    unknown = set(values) - known
    if unknown:
        raise TypeError(f"unknown fault settings: {sorted(unknown)}")
    out = dict(values)
    if "ops" in out and out["ops"] is not None:
        out["ops"] = tuple(out["ops"])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rekognition-compatible test server backed by dlib.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--throttle-rate", type=float, default=0.0)
    parser.add_argument("--throttle-code", default="ThrottlingException")
    parser.add_argument("--throttle-status", type=int, default=400)
    parser.add_argument("--retry-after", type=float, default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    fake = RekognitionFake(
        args.host,
        args.port,
        seed=args.seed,
        throttle_rate=args.throttle_rate,
        throttle_code=args.throttle_code,
        throttle_status=args.throttle_status,
        retry_after=args.retry_after,
        latency=args.latency,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"rekognition fake listening on {fake.endpoint_url}", flush=True)
    try:
        fake.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake._httpd.server_close()


if __name__ == "__main__":
    main()
