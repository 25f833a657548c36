"""A Generative Language API (Gemini) server on 127.0.0.1 for tests, reached by the real google-genai client.

Wire format (what google-genai 3.3 sends with ``http_options.base_url`` and ``api_version="v1beta"``):
``POST /v1beta/models/<model>:generateContent`` with ``x-goog-api-key`` and a JSON body
``{"contents": [{"parts": [{"inlineData": {...}}, {"text": ...}]}], "generationConfig": {"responseMimeType":
"application/json", "responseSchema": {...}}}``; errors are ``{"error": {"code", "message", "status", "details"}}``,
a 429 carrying ``google.rpc.RetryInfo``.
Batch API: ``POST /v1beta/models/<model>:batchGenerateContent`` answers an operation named ``batches/<id>``;
``GET /v1beta/batches/<id>`` reports its state and, once succeeded, ``metadata.output.inlinedResponses``.

The answer is derived from the image, so tests check the wiring end to end: photos made by ``coded_photo`` carry a
strip of flat colour cells (decoded here by mean colour, robust to JPEG and resizing) that says which bib numbers
and tags the photo "shows"; the digits are also drawn in the picture, for people looking at it.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cv2
import numpy as np

API_KEY = "test-gemini-key"
TAGS = ("podium", "cake", "finish line", "medal", "crowd", "water station", "bicycle", "team")
# Strip cell colours (BGR). Digits and tag indices are grey levels 10 + 24 * value, so 0..9 stay apart after JPEG.
MARK_START = (255, 0, 255)
MARK_NUMBER_SEP = (255, 255, 0)
MARK_TAGS = (0, 255, 255)
MARK_END = (0, 255, 0)
CELLS = 16
# How soon after a 429 a call may still arrive without its client having heard of the 429: its lease was granted
# before the 429, and a CPU-starved work horse can take a few hundred ms to build and send the request.
EARLY_GRACE_SECONDS = 0.5


def _grey(value: int) -> tuple[int, int, int]:
    level = 10 + 24 * value
    return (level, level, level)


def coded_photo(
    numbers: list[str], tags: list[str] = (), *, size: tuple[int, int] = (640, 480), seed: int = 0
) -> bytes:  # type: ignore[assignment]
    """A JPEG whose top strip encodes ``numbers`` (digit strings) and ``tags`` (from TAGS) for the fake to read."""
    width, height = size
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), rng.integers(60, 200, size=3), dtype=np.uint8)
    noise = rng.integers(0, 30, size=(height // 8, width // 8, 3), dtype=np.uint8)
    image[height // 6 :] = cv2.add(image[height // 6 :], cv2.resize(noise, (width, height - height // 6)))
    cells: list[tuple[int, int, int]] = [MARK_START]
    for i, number in enumerate(numbers):
        if i:
            cells.append(MARK_NUMBER_SEP)
        cells.extend(_grey(int(d)) for d in number)
    if tags:
        cells.append(MARK_TAGS)
        cells.extend(_grey(TAGS.index(tag)) for tag in tags)
    cells.append(MARK_END)
    if len(cells) > CELLS:
        raise ValueError("too much to encode in one strip")
    cell_w, cell_h = width // CELLS, height // 8
    for i, colour in enumerate(cells):
        image[0:cell_h, i * cell_w : (i + 1) * cell_w] = colour
    for i, number in enumerate(numbers):  # the bib as a person would see it
        cv2.putText(image, number, (40, height // 2 + i * 70), cv2.FONT_HERSHEY_SIMPLEX, 2.2, (20, 20, 20), 5)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return buf.tobytes()


def _near(colour: np.ndarray, target: tuple[int, int, int], tolerance: float = 40.0) -> bool:
    return float(np.abs(colour - np.array(target, dtype=np.float64)).max()) <= tolerance


def decode_photo(data: bytes) -> tuple[list[str], list[str]] | None:
    """(numbers, tags) encoded by ``coded_photo``; None when the image carries no strip."""
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    height, width = bgr.shape[:2]
    cell_w, cell_h = width / CELLS, height / 8
    means = []
    for i in range(CELLS):
        x0, x1 = int(i * cell_w + cell_w * 0.25), int((i + 1) * cell_w - cell_w * 0.25)
        y0, y1 = int(cell_h * 0.25), int(cell_h * 0.75)
        means.append(bgr[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0))
    if not _near(means[0], MARK_START):
        return None
    numbers: list[str] = [""]
    tags: list[str] = []
    in_tags = False
    for colour in means[1:]:
        if _near(colour, MARK_END):
            return [n for n in numbers if n], tags
        if _near(colour, MARK_NUMBER_SEP):
            numbers.append("")
        elif _near(colour, MARK_TAGS):
            in_tags = True
        else:
            value = int(round((float(colour.mean()) - 10) / 24))
            if in_tags:
                tags.append(TAGS[max(0, min(len(TAGS) - 1, value))])
            else:
                numbers[-1] += str(max(0, min(9, value)))
    return None


def describe(data: bytes) -> dict[str, Any]:
    """What the fake "sees" in an image, by the field names Snapmatch's schema uses."""
    decoded = decode_photo(data)
    numbers, tags = decoded if decoded is not None else ([], [])
    caption = "A runner at the event" if numbers else "An event photo"
    if tags:
        caption += " near the " + " and the ".join(tags)
    return {
        "caption": caption,
        "tags": [*tags, "event"],
        "bib_numbers": numbers,
        "visible_text": [f"BIB {n}" for n in numbers],
        "people_count": len(numbers),
        "blurry": False,
        "eyes_closed": False,
        "overexposed": False,
        "underexposed": False,
    }


def fill_schema(schema: dict[str, Any], known: dict[str, Any]) -> Any:
    """A value shaped by an OpenAPI-style response schema (as the SDK sends it), from ``known`` where it names one."""
    kind = str(schema.get("type", "OBJECT")).upper()
    if kind == "OBJECT":
        props = schema.get("properties", {})
        return {name: known[name] if name in known else fill_schema(sub, {}) for name, sub in props.items()}
    if kind == "ARRAY":
        return []
    if kind == "STRING":
        return ""
    if kind in ("INTEGER", "NUMBER"):
        return 0
    if kind == "BOOLEAN":
        return False
    return None


@dataclass(frozen=True)
class Faults:
    """What the server does wrong on purpose; change with ``GeminiFake.configure``."""

    throttle_rate: float = 0.0  # share of generateContent calls answered 429 RESOURCE_EXHAUSTED
    retry_delay: str | None = "3s"  # RetryInfo.retryDelay sent with a 429 (None: no RetryInfo)
    error_rate: float = 0.0  # share answered 500 INTERNAL
    latency: float = 0.0  # seconds added to every generateContent call
    batch_seconds: float = 1.0  # a batch job stays pending/running this long before it succeeds


class Stats:
    """What the server saw. A call is in flight from its arrival until just before its answer is written."""

    def __init__(self, window_seconds: float = 60.0) -> None:
        self.window = window_seconds
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.in_flight = 0
            self.max_in_flight = 0
            self.arrivals: deque[float] = deque()
            self.max_per_window = 0
            self.calls: Counter[str] = Counter()
            self.throttled = 0
            self.errors = 0
            self.ok = 0
            # Calls that arrived while a retryDelay this server had announced was still running.
            self.early = 0
            self.early_calls: list[tuple[float, float]] = []  # (seconds after the 429, seconds before its end)
            self.throttled_at = 0.0
            self.cooldown_until = 0.0

    def enter(self, op: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.calls[op] += 1
            if op != "generateContent":
                return
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.arrivals.append(now)
            while self.arrivals and self.arrivals[0] <= now - self.window:
                self.arrivals.popleft()
            self.max_per_window = max(self.max_per_window, len(self.arrivals))
            # A call that arrives while an announced retryDelay runs is early, unless it arrived so soon after the
            # 429 that its client could not have heard of it yet (it was already on its way): EARLY_GRACE. And
            # 50 ms of slack at the end: the clients' cooldown runs on Redis's clock, ours on this process's.
            if self.throttled_at + EARLY_GRACE_SECONDS < now < self.cooldown_until - 0.05:
                self.early += 1
                self.early_calls.append((round(now - self.throttled_at, 3), round(self.cooldown_until - now, 3)))

    def leave(self, op: str) -> None:
        if op != "generateContent":
            return
        with self.lock:
            self.in_flight -= 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": dict(self.calls),
                "generate_total": self.calls["generateContent"],
                "in_flight": self.in_flight,
                "max_concurrent": self.max_in_flight,
                "max_per_window": self.max_per_window,
                "window_seconds": self.window,
                "throttled": self.throttled,
                "errors": self.errors,
                "ok": self.ok,
                "early_after_retry_delay": self.early,
                "early_calls": list(self.early_calls),
            }


def _duration_seconds(text: str | None) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", text or "")
    return float(match.group(1)) if match else 0.0


class GeminiFake:
    """``with GeminiFake(throttle_rate=0.4) as fake:`` then ``GEMINI_BASE_URL=fake.base_url``."""

    def __init__(self, *, seed: int | None = None, window_seconds: float = 60.0, **faults: Any) -> None:
        self.faults = Faults(**faults)
        self.stats_data = Stats(window_seconds)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.batches: dict[str, dict[str, Any]] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fake = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def __enter__(self) -> GeminiFake:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="gemini-fake", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def configure(self, **faults: Any) -> Faults:
        self.faults = replace(self.faults, **faults)
        return self.faults

    def stats(self) -> dict[str, Any]:
        return self.stats_data.snapshot()

    # -- operations --------------------------------------------------------------------------------------------

    def _draw(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def generate(self, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        faults = self.faults
        if faults.latency:
            time.sleep(faults.latency)
        if self._draw(faults.throttle_rate):
            details: list[dict[str, Any]] = [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [{"quotaMetric": "generativelanguage.googleapis.com/generate_content_requests"}],
                }
            ]
            if faults.retry_delay is not None:
                details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": faults.retry_delay})
                with self.stats_data.lock:
                    self.stats_data.throttled += 1
                    now = time.monotonic()
                    until = now + _duration_seconds(faults.retry_delay)
                    if until > self.stats_data.cooldown_until:
                        self.stats_data.throttled_at, self.stats_data.cooldown_until = now, until
            else:
                with self.stats_data.lock:
                    self.stats_data.throttled += 1
            return 429, _error(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.", details)
        if self._draw(faults.error_rate):
            with self.stats_data.lock:
                self.stats_data.errors += 1
            return 500, _error(500, "INTERNAL", "An internal error has occurred.")
        try:
            answer = self.answer(model, body)
        except ValueError as exc:
            return 400, _error(400, "INVALID_ARGUMENT", str(exc))
        with self.stats_data.lock:
            self.stats_data.ok += 1
        return 200, answer

    def answer(self, model: str, request: dict[str, Any]) -> dict[str, Any]:
        """A GenerateContentResponse for one request (shared by generateContent and batch jobs)."""
        parts = [p for c in request.get("contents", []) for p in c.get("parts", [])]
        images = [p["inlineData"] for p in parts if "inlineData" in p]
        if not images:
            raise ValueError("The request has no image part.")
        # The SDK sends URL-safe base64 (the API accepts both alphabets).
        encoded = images[0]["data"].replace("-", "+").replace("_", "/")
        data = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
        config = request.get("generationConfig", {})
        schema = config.get("responseSchema")
        if config.get("responseMimeType") != "application/json" or not schema:
            raise ValueError("This fake only answers JSON requests with a responseSchema.")
        text = json.dumps(fill_schema(schema, describe(data)))
        prompt_tokens = 258 + sum(len(p.get("text", "")) // 4 for p in parts)  # 258: one image, as Gemini counts it
        output_tokens = max(1, len(text) // 4)
        return {
            "candidates": [
                {"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}
            ],
            "usageMetadata": {
                "promptTokenCount": prompt_tokens,
                "candidatesTokenCount": output_tokens,
                "totalTokenCount": prompt_tokens + output_tokens,
            },
            "modelVersion": model,
            "responseId": uuid.uuid4().hex[:16],
        }

    def create_batch(self, model: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        batch = body.get("batch", {})
        requests = batch.get("inputConfig", {}).get("requests", {}).get("requests", [])
        if not requests:
            return 400, _error(400, "INVALID_ARGUMENT", "A batch needs inline requests.")
        name = f"batches/{uuid.uuid4().hex[:12]}"
        with self._lock:
            self.batches[name] = {
                "name": name,
                "model": f"models/{model}",
                "displayName": batch.get("displayName", ""),
                "created": time.time(),
                "requests": requests,
                "output": None,
            }
        return 200, self._operation(name)

    def get_batch(self, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            job = self.batches.get(name)
        if job is None:
            return 404, _error(404, "NOT_FOUND", f"Batch {name} not found.")
        return 200, self._operation(name)

    def _operation(self, name: str) -> dict[str, Any]:
        with self._lock:
            job = self.batches[name]
            age = time.time() - job["created"]
            if age < self.faults.batch_seconds / 2:
                state = "BATCH_STATE_PENDING"
            elif age < self.faults.batch_seconds:
                state = "BATCH_STATE_RUNNING"
            else:
                state = "BATCH_STATE_SUCCEEDED"
                if job["output"] is None:
                    job["output"] = [self._inline_response(job["model"], r) for r in job["requests"]]
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job["created"]))
        metadata: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": job["model"],
            "displayName": job["displayName"],
            "createTime": created,
            "updateTime": created,
            "state": state,
            "name": name,
        }
        operation: dict[str, Any] = {"name": name, "metadata": metadata}
        if state == "BATCH_STATE_SUCCEEDED":
            output = {"inlinedResponses": {"inlinedResponses": job["output"]}}
            metadata["output"] = output
            metadata["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            operation["done"] = True
            operation["response"] = {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
                **output,
            }
        return operation

    def _inline_response(self, model: str, item: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "metadata" in item:
            out["metadata"] = item["metadata"]
        try:
            out["response"] = self.answer(model.removeprefix("models/"), item.get("request", {}))
        except ValueError as exc:
            out["error"] = {"code": 3, "message": str(exc)}
        return out


def _error(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


_GENERATE = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|batchGenerateContent)$")
_BATCH = re.compile(r"^/v1beta/(batches/[^/]+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    @property
    def fake(self) -> GeminiFake:
        return self.server.fake  # type: ignore[attr-defined]

    def _send(self, status: int, body: dict[str, Any]) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _authorised(self) -> bool:
        if self.headers.get("x-goog-api-key") == API_KEY:
            return True
        self._send(403, _error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."))
        return False

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        match = _GENERATE.match(path)
        if not match:
            self._send(404, _error(404, "NOT_FOUND", f"No route {path}."))
            return
        if not self._authorised():
            return
        model, op = match.groups()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, _error(400, "INVALID_ARGUMENT", "Invalid JSON payload received."))
            return
        self.fake.stats_data.enter(op)
        try:
            status, answer = (
                self.fake.generate(model, body) if op == "generateContent" else self.fake.create_batch(model, body)
            )
        finally:
            self.fake.stats_data.leave(op)
        self._send(status, answer)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        match = _BATCH.match(path)
        if not match:
            self._send(404, _error(404, "NOT_FOUND", f"No route {path}."))
            return
        if not self._authorised():
            return
        self.fake.stats_data.enter("batches.get")
        self._send(*self.fake.get_batch(match.group(1)))
