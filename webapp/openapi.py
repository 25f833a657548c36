"""The OpenAPI 3.1 document of the JSON API, served (public, no secrets) at ``GET /api/openapi.json``.

One dict built by one small function per path group; a test walks ``app.url_map`` and fails when a
route and the document disagree. How to add an operation: docs/openapi.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from flask import Blueprint, jsonify

from snapmatch.ingest import BATCH_ID
from webapp.attendee import MAX_PAGE, MAX_PER_PAGE
from webapp.params import MAX_ID
from webapp.photographer import MAX_CHECK_DIGESTS

bp = Blueprint("openapi", __name__)

Schema = dict[str, Any]
Paths = dict[str, dict[str, Schema]]

ERROR_STATUSES = {
    400: "The request is malformed, a value is out of range, or (cookie sign-in) the CSRF token is missing.",
    401: "No valid credentials: sign in, or send `Authorization: Bearer <token>`.",
    403: "Signed in, but this needs another role or membership of the event.",
    404: "No such resource, or not one the caller may see.",
    405: "The path exists, but not with this method.",
    409: "The resource is not in a state that allows this yet.",
    413: "The request body is larger than this route accepts.",
    415: "The body's media type is not one this route reads.",
    422: "The upload is not an image this service accepts.",
    429: "Too many requests: wait for Retry-After seconds.",
    503: "Temporarily unable to accept this: retry after Retry-After seconds.",
}
RETRY_AFTER_STATUSES = (429, 503)
UNSAFE_METHODS = ("post", "put", "patch", "delete")
SESSION_COOKIE = "snapmatch_session"  # create_app's SESSION_COOKIE_NAME (a test keeps them equal)
# Statuses any operation may answer (e.g. 429 once a rate limit covers every route): add them here.
EVERY_OPERATION_MAY_ANSWER: set[int] = set()


# --- building blocks -------------------------------------------------------------------------------


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: Iterable[str] = (), **properties: Schema) -> Schema:
    """A JSON object with these properties (extra ones allowed, so adding a field is not a break)."""
    return {"type": "object", "required": list(required), "properties": properties}


INT_ID: Schema = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
STRING: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
SHA256: Schema = {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"}


def path_id(name: str, what: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "description": f"The {what}'s id.", "schema": INT_ID}


def query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def json_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def multipart_body(schema: Schema) -> Schema:
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


FILE: Schema = {"type": "string", "contentMediaType": "application/octet-stream"}


def operation(
    summary: str,
    ok: tuple[int, Schema | None] | tuple[int, Schema | None, str],
    *errors: int,
    roles: str | None = None,
    public: bool = False,
    params: Iterable[Schema] = (),
    body: Schema | None = None,
    description: str | None = None,
    ok_headers: Schema | None = None,
    also: dict[int, Schema] | None = None,
) -> Schema:
    """One operation. ``ok`` is (status, schema) or (status, schema, media type); schema None means
    no body. ``errors`` are the error statuses answered with the error shape, besides 401/403 (added
    for non-public operations) and 400/413 (added with a body). ``also``: other responses, in full."""
    status, schema, *media = ok
    success: Schema = {"description": summary}
    if schema is not None:
        success["content"] = {media[0] if media else "application/json": {"schema": schema}}
    if ok_headers:
        success["headers"] = ok_headers
    statuses = set(errors) | EVERY_OPERATION_MAY_ANSWER
    if not public:
        statuses |= {401, 403}
    if body is not None:
        statuses |= {400, 413}
        if "application/json" in body["content"]:
            statuses.add(415)  # a body that is not JSON is refused, never parsed as a form
    out: Schema = {
        "summary": summary,
        "responses": {str(status): success}
        | {str(s): {"$ref": f"#/components/responses/E{s}"} for s in sorted(statuses)}
        | {str(s): response for s, response in (also or {}).items()},
    }
    if description or roles:
        out["description"] = " ".join(filter(None, [f"Who: {roles}." if roles else None, description]))
    if public:
        out["security"] = []
    if params:
        out["parameters"] = list(params)
    if body is not None:
        out["requestBody"] = body
    return out


# --- path groups: one function each ----------------------------------------------------------------


def health_paths() -> Paths:
    return {
        "/healthz": {"get": operation("Liveness", (200, obj(["status"], status=STRING)), public=True)},
        "/readyz": {
            "get": operation(
                "Readiness: Redis and the database answer",
                (200, ref("Readiness")),
                public=True,
                also={
                    503: {
                        "description": "A dependency is down (same body), with Retry-After.",
                        "content": {"application/json": {"schema": ref("Readiness")}},
                        "headers": RETRY_AFTER,
                    }
                },
            )
        },
        "/api/openapi.json": {
            "get": operation("This document", (200, {"type": "object"}), public=True),
        },
    }


EVENT_ID = path_id("event_id", "event")
PHOTO_ID = path_id("photo_id", "photo")
BATCH_ID_PARAM: Schema = {
    "name": "batch_id",
    "in": "path",
    "required": True,
    "description": "The batch's id (the one `POST /api/events/{event_id}/photos` answered).",
    "schema": {"type": "string", "pattern": BATCH_ID.pattern},
}
EVENT_ID_QUERY = query("event_id", INT_ID, "The event's id.", required=True)


def event_paths() -> Paths:
    return {
        "/api/events": {
            "post": operation(
                "Create an event",
                (201, ref("EventCreated")),
                roles="photographer",
                body=json_body(obj(["name"], name={"type": "string", "minLength": 1, "maxLength": 200})),
            )
        },
        "/api/events/{event_id}": {
            "get": operation(
                "An event with its photo counts by status",
                (200, ref("Event")),
                404,
                roles="owner, admin",
                params=[EVENT_ID],
            )
        },
        "/api/events/{event_id}/photos": {
            "post": operation(
                "Upload photos (each acknowledged as queued, duplicate or rejected)",
                (202, ref("UploadAccepted")),
                404,
                409,
                429,  # UPLOAD_RATE_LIMIT
                503,
                roles="owner",
                params=[EVENT_ID],
                body=multipart_body(
                    obj(
                        ["files"],
                        files={"type": "array", "items": FILE, "minItems": 1},
                        batch_id={
                            "anyOf": [{"type": "string", "pattern": BATCH_ID.pattern}, {"const": ""}],
                            "description": "File these under an existing batch of mine; empty or absent: a new one.",
                        },
                    )
                ),
                description="503 queue_full with Retry-After when the photo queue is full (nothing is stored).",
            )
        },
        "/api/events/{event_id}/photos/check": {
            "post": operation(
                "Which of these SHA-256 digests the event already has",
                (200, obj(["present", "missing"], present=_strings(), missing=_strings())),
                404,
                roles="owner",
                params=[EVENT_ID],
                body=json_body(
                    obj(["sha256"], sha256={"type": "array", "items": SHA256, "maxItems": MAX_CHECK_DIGESTS})
                ),
            )
        },
        "/api/batches/{batch_id}": {
            "get": operation(
                "A batch of uploads and its photos", (200, ref("Batch")), 404, roles="owner", params=[BATCH_ID_PARAM]
            )
        },
        "/api/batches/{batch_id}/events": {
            "get": operation(
                "Live progress of a batch (Server-Sent Events)",
                (200, ref("ProgressEvent"), "text/event-stream"),
                400,
                404,
                roles="owner",
                params=[
                    BATCH_ID_PARAM,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": STRING,
                        "description": "Resume after this event id.",
                    },
                    query("last_event_id", STRING, "Resume after this event id (for clients without headers)."),
                ],
                description="The schema describes one event; the stream ends after `batch:done`.",
            )
        },
    }


def attendee_paths() -> Paths:
    return {
        "/api/events/{event_id}/join": {
            "post": operation(
                "Join an event with its access code",
                (200, obj(["event_id", "name", "joined"], event_id=INT_ID, name=STRING, joined={"type": "boolean"})),
                404,
                roles="any signed-in user",
                params=[EVENT_ID],
                body=json_body(obj(["access_code"], access_code=STRING)),
                description="403 wrong_access_code when the code is not the event's.",
            )
        },
        "/api/events/{event_id}/selfie": {
            "put": operation(
                "Upload (or replace) my selfie",
                (
                    202,
                    obj(
                        ["status", "selfie_id", "job_id"],
                        status={"const": "processing"},
                        selfie_id=INT_ID,
                        job_id=nullable(STRING),
                    ),
                ),
                404,
                415,
                422,
                roles="joined attendee",
                params=[EVENT_ID],
                body=multipart_body(obj(["file"], file=FILE)),
            ),
            "get": operation(
                "My selfie's status", (200, ref("SelfieStatus")), 404, roles="joined attendee", params=[EVENT_ID]
            ),
            "delete": operation(
                "Delete my face data (selfie and matches)",
                (204, None),
                404,
                roles="joined attendee",
                params=[EVENT_ID],
            ),
        },
        "/api/my-photos": {
            "get": operation(
                "Photos my selfie matched",
                (200, ref("MyPhotos")),
                400,
                404,
                429,  # MY_PHOTOS_RATE_LIMIT
                roles="joined attendee",
                params=[EVENT_ID_QUERY],
            )
        },
        "/api/all-photos": {
            "get": operation(
                "The event's processed photos, a page at a time",
                (200, ref("AllPhotos")),
                400,
                404,
                roles="joined attendee, owner",
                params=[
                    EVENT_ID_QUERY,
                    query("page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}, "Page number (from 1)."),
                    query("per_page", {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE}, "Photos per page."),
                ],
            )
        },
    }


def photo_paths() -> Paths:
    image = {"type": "string", "contentMediaType": "image/*"}
    return {
        "/api/photos/{photo_id}": {
            "get": operation(
                "A photo: status, faces, analysis, error",
                (200, ref("Photo")),
                404,
                roles="owner, matched attendee, admin",
                params=[PHOTO_ID],
            )
        },
        "/api/photos/{photo_id}/thumbnail": {
            "get": operation(
                "The photo's thumbnail (JPEG)",
                (200, image, "image/jpeg"),
                404,
                409,
                roles="owner, matched attendee, admin",
                params=[PHOTO_ID],
                description="409 not_ready until the photo has been processed.",
            )
        },
        "/api/photos/{photo_id}/original": {
            "get": operation(
                "The photo as uploaded",
                (200, image, "image/*"),
                404,
                409,
                roles="owner, matched attendee, admin",
                params=[PHOTO_ID],
            )
        },
    }


def admin_paths() -> Paths:
    return {
        "/api/admin/providers": {
            "get": operation(
                "Per provider: calls, throttles, estimated cost and limiter state",
                (200, obj(["providers"], providers={"type": "object", "additionalProperties": {"type": "object"}})),
                roles="admin",
            )
        },
    }


def _strings() -> Schema:
    return {"type": "array", "items": STRING}


# Areas append their group function inside their own markers (merge-friendly).
PATH_GROUPS: list[Callable[[], Paths]] = [health_paths, event_paths, attendee_paths, photo_paths, admin_paths]
# [area: security, issue 13] path groups below this line


def identity_paths() -> Paths:
    from snapmatch.accounts import MAX_TOKEN_DAYS

    return {
        "/api/tokens": {
            "post": operation(
                "Exchange an email and password for a new API token",
                (201, obj(["token", "id", "expires_at"], token=STRING, id=INT_ID, expires_at=nullable(STRING))),
                401,
                429,
                public=True,
                body=json_body(
                    obj(
                        ["email", "password"],
                        email={"type": "string", "minLength": 1, "maxLength": 320},
                        password={"type": "string", "minLength": 1, "maxLength": 1024},
                        name={"type": "string", "maxLength": 100},
                        expires_days={"type": "integer", "minimum": 1, "maximum": MAX_TOKEN_DAYS},
                    )
                ),
                description="Rate limited per client address and per email (429 with Retry-After).",
            )
        },
        "/api/me": {
            "get": operation(
                "Who I am",
                (200, obj(["id", "email", "role"], id=INT_ID, email=STRING, role=ref("Role"))),
                roles="any signed-in user",
            )
        },
    }


PATH_GROUPS.append(identity_paths)


# [/area: security]
# [area: robustness, issue 13] path groups below this line
# [/area: robustness]
# [area: matching, issue 14] path groups below this line
def matching_paths() -> Paths:
    return {
        "/api/photos/{photo_id}/not-me": {
            "post": operation(
                "Not me: hide this photo from me at once and for good (and learn from it)",
                (204, None),
                404,
                roles="attendee shown or offered the photo",
                params=[PHOTO_ID],
            )
        },
        "/api/photos/{photo_id}/is-me": {
            "post": operation(
                "Is me: confirm a photo offered under maybe",
                (204, None),
                404,
                roles="attendee shown or offered the photo",
                params=[PHOTO_ID],
            )
        },
        "/api/events/{event_id}/selfies": {
            "post": operation(
                "Add another reference photo of me (at most 3 with the selfie)",
                (
                    202,
                    obj(
                        ["status", "reference_id", "job_id"],
                        status={"const": "processing"},
                        reference_id=INT_ID,
                        job_id=nullable(STRING),
                    ),
                ),
                404,
                409,
                415,
                422,
                roles="joined attendee with a selfie",
                params=[EVENT_ID],
                body=multipart_body(obj(["file"], file=FILE)),
                description="409 selfie_required before the selfie; 409 too_many_reference_photos past the limit.",
            )
        },
    }


PATH_GROUPS.append(matching_paths)
# [/area: matching]
# [area: analysis, issue 18] path groups below this line


def analysis_paths() -> Paths:
    from snapmatch.analysis.search import MAX_QUERY_CHARS
    from webapp.search import DEFAULT_PER_PAGE
    from webapp.search import MAX_PAGE as SEARCH_MAX_PAGE
    from webapp.search import MAX_PER_PAGE as SEARCH_MAX_PER_PAGE

    found = obj(
        ["photo_id", "thumbnail_url"],
        photo_id=INT_ID,
        thumbnail_url=STRING,
        caption=nullable(STRING),
        bib_numbers=_strings(),
    )
    return {
        "/api/events/{event_id}/search": {
            "get": operation(
                "Photos whose analysis has these bib numbers (exact) and words (caption, tags, visible text)",
                (
                    200,
                    obj(
                        ["event_id", "q", "page", "per_page", "total", "photos"],
                        event_id=INT_ID,
                        q=STRING,
                        page=INT,
                        per_page=INT,
                        total={"type": "integer", "minimum": 0},
                        photos={"type": "array", "items": found},
                    ),
                ),
                400,
                404,
                roles="owner, admin, joined attendee (only the photos they may see)",
                params=[
                    EVENT_ID,
                    query(
                        "q",
                        {"type": "string", "maxLength": MAX_QUERY_CHARS},
                        "Bib numbers (digits) and words; a photo must match all of them.",
                        required=True,
                    ),
                    query("page", {"type": "integer", "minimum": 1, "maximum": SEARCH_MAX_PAGE}, "Page (from 1)."),
                    query(
                        "per_page",
                        {"type": "integer", "minimum": 1, "maximum": SEARCH_MAX_PER_PAGE},
                        f"Photos per page (default {DEFAULT_PER_PAGE}).",
                    ),
                ],
            )
        },
        "/api/events/{event_id}": {
            "patch": operation(
                "The event's analysis setting",
                (
                    200,
                    obj(
                        ["id", "analysis_mode"],
                        id=INT_ID,
                        analysis_mode=nullable({"type": "string", "enum": ["immediate", "batch"]}),
                    ),
                ),
                404,
                roles="owner, admin",
                params=[EVENT_ID],
                body=json_body(
                    {
                        **obj(analysis_mode=nullable({"type": "string", "enum": ["immediate", "batch"]})),
                        "minProperties": 1,
                        "additionalProperties": False,
                    }
                ),
                description="analysis_mode null means the server's ANALYSIS_MODE. There is no event-wide search "
                "for attendees: search_event_wide is refused (400 event_wide_search_unavailable).",
            )
        },
    }


PATH_GROUPS.append(analysis_paths)
# [/area: analysis]
# [area: operations, issue 16] path groups below this line


def operations_paths() -> Paths:
    from jobs.queues import QueueName
    from jobs.requeue import MAX_PER_REQUEST, REQUEUABLE_STATUSES

    admin = "admin"
    anything: Schema = {"type": "object"}
    queue_param: Schema = {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "A queue's name.",
        "schema": {"type": "string", "enum": [q.value for q in QueueName]},
    }
    paused = obj(["queue", "paused"], queue=STRING, paused={"type": "boolean"})
    requeue_body = obj(
        job_id={"type": "string", "maxLength": 200},
        photo_id=INT_ID,
        photo_ids={"type": "array", "items": INT_ID, "maxItems": MAX_PER_REQUEST},
        error_code={"type": "string", "maxLength": 64},
        status={"type": "string", "enum": list(REQUEUABLE_STATUSES)},
        event_id=INT_ID,
        all={"type": "boolean"},
    )
    requeue_body["additionalProperties"] = False
    counted = {"type": "integer", "minimum": 0}
    return {
        "/api/admin/queue/stats": {
            "get": operation(
                "Per queue: counts by state, workers, throughput, durations, success rate",
                (200, obj(["queues"], queues=anything, totals=anything)),
                roles=admin,
            )
        },
        "/api/admin/queue/history": {
            "get": operation(
                "Per-minute samples over the last hour",
                (200, obj(["samples"], samples={"type": "array", "items": anything})),
                roles=admin,
            )
        },
        "/api/admin/queue/jobs/{job_id}": {
            "get": operation(
                "One job: status, queue, attempts, last error",
                (
                    200,
                    obj(
                        ["id", "status", "queue", "attempts"],
                        id=STRING,
                        status=nullable(STRING),
                        queue=STRING,
                        attempts=INT,
                    ),
                ),
                404,
                roles=admin,
                params=[
                    {
                        "name": "job_id",
                        "in": "path",
                        "required": True,
                        "schema": STRING,
                        "description": "An RQ job id (as uploads and failures report it).",
                    }
                ],
            )
        },
        "/api/admin/queue/{name}/pause": {
            "post": operation(
                "Pause a queue (workers stop taking its jobs)", (200, paused), 404, roles=admin, params=[queue_param]
            )
        },
        "/api/admin/queue/{name}/resume": {
            "post": operation("Resume a paused queue", (200, paused), 404, roles=admin, params=[queue_param])
        },
        "/api/admin/queue/failed/requeue": {
            "post": operation(
                "Requeue failed photos (by ids, reason, status, event, or all) or one job",
                (200, obj(["requeued"], requeued=counted)),
                roles=admin,
                body=json_body(requeue_body),
            )
        },
        "/api/admin/failures": {
            "get": operation(
                "Failed photos: counts by reason and the 100 most recent",
                (
                    200,
                    obj(
                        ["by_reason", "photos"],
                        by_reason={"type": "array", "items": anything},
                        photos={"type": "array", "items": anything},
                    ),
                ),
                roles=admin,
            )
        },
        "/api/admin/caches": {
            "get": operation(
                "Hits, misses and hit ratio per cache", (200, obj(["caches"], caches=anything)), roles=admin
            )
        },
        "/api/admin/cache/clear": {
            "post": operation("Delete every cached entry", (200, obj(["cleared"], cleared=counted)), roles=admin)
        },
        "/api/admin/schedules": {
            "get": operation(
                "The last run of every schedule", (200, obj(["schedules"], schedules=anything)), roles=admin
            )
        },
        "/api/status": {
            "get": operation(
                "Queue depth, utilisation, workers",
                (
                    200,
                    obj(
                        ["queue_depth", "paused", "utilisation", "workers"],
                        queue_depth=anything,
                        paused=_strings(),
                        utilisation=NUMBER,
                        workers=INT,
                        busy_workers=INT,
                    ),
                ),
                roles=admin,
            )
        },
    }


PATH_GROUPS.append(operations_paths)
# [/area: operations]
# [area: pages, issue 15] path groups below this line


def pages_paths() -> Paths:
    """The attendee's live stream and the zip of originals (the pages use them; so may scripts)."""
    return {
        "/api/events/{event_id}/events": {
            "get": operation(
                "Live news for a joined attendee (Server-Sent Events)",
                (200, {"type": "string"}, "text/event-stream"),
                400,
                404,
                roles="joined attendee",
                params=[
                    EVENT_ID,
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": STRING,
                        "description": "Resume after this event id.",
                    },
                    query("last_event_id", STRING, "Resume after this event id (for clients without headers)."),
                ],
                description=(
                    "Events: `my-photos` (with an id) when my matches change: read `GET /api/my-photos` again; "
                    '`indexing` `{"checked", "total"}` while the event\'s photos are being looked at. '
                    "Heartbeat comments every 15 s; the stream ends after 30 minutes (reconnect with Last-Event-ID)."
                ),
            )
        },
        "/api/events/{event_id}/download.zip": {
            "get": operation(
                "Originals as one zip, streamed",
                (200, {"type": "string", "contentMediaType": "application/zip"}, "application/zip"),
                404,
                roles="owner (every processed photo), joined attendee (my photos), admin",
                params=[EVENT_ID],
                description="404 no_photos when there is nothing to download yet.",
            )
        },
    }


PATH_GROUPS.append(pages_paths)
# [/area: pages]
# [area: watcher, issue 17] path groups below this line
# [/area: watcher]


# --- shared schemas --------------------------------------------------------------------------------


def _schemas() -> dict[str, Schema]:
    error_detail = obj(
        ["code", "message"],
        code={"type": "string", "pattern": "^[a-z0-9]+(_[a-z0-9]+)*$"},
        message={"type": "string", "minLength": 1},
    )
    photo_status = {"type": "string", "enum": ["queued", "processing", "done", "failed", "quota_exceeded"]}
    counts = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
    listed_photo = obj(
        ["photo_id", "thumbnail_url"],
        photo_id=INT_ID,
        thumbnail_url=STRING,
        similarity={"type": "number", "minimum": 0, "maximum": 1},
    )
    stage = {"type": "string", "pattern": "^[a-z_]+:[a-z_]+$", "examples": ["photo:done"]}
    return {
        "Role": {"type": "string", "enum": ["admin", "photographer", "attendee"]},
        "Error": obj(["error"], error=ref("ErrorDetail")),
        "ProgressEvent": obj(
            ["id", "event", "data"],
            id={"type": "string", "pattern": "^[0-9]+-[0-9]+$", "description": "Send back as Last-Event-ID."},
            event=stage,
            data={
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": obj(
                    ["stage", "batchId"], stage=stage, batchId=STRING, photoId=nullable(INT_ID), filename=STRING
                ),
            },
        ),
        "ErrorDetail": error_detail,
        "Readiness": obj(
            ["status", "checks"],
            status={"type": "string", "enum": ["ready", "not_ready"]},
            checks={"type": "object", "additionalProperties": STRING},
        ),
        "EventCreated": obj(["id", "name", "access_code"], id=INT_ID, name=STRING, access_code=STRING),
        "Event": obj(
            ["id", "name", "access_code", "photo_counts", "photos_total"],
            id=INT_ID,
            name=STRING,
            access_code=STRING,
            photo_counts=counts,
            photos_total={"type": "integer", "minimum": 0},
        ),
        "FileResult": obj(
            ["filename", "photo_id", "job_id", "status"],
            filename=STRING,
            photo_id=nullable(INT_ID),
            job_id=nullable(STRING),
            status={"type": "string", "enum": ["queued", "duplicate", "rejected", "failed"]},
            error=ref("ErrorDetail"),
        ),
        "UploadAccepted": obj(
            ["batch_id", "photos"], batch_id=STRING, photos={"type": "array", "items": ref("FileResult")}
        ),
        "PhotoSummary": obj(
            ["photo_id", "filename", "status", "faces", "error"],
            photo_id=INT_ID,
            filename=STRING,
            status=photo_status,
            faces=nullable(INT),
            error=nullable(ref("ErrorDetail")),
        ),
        "Batch": obj(
            ["id", "event_id", "counts", "photos"],
            id=STRING,
            event_id=INT_ID,
            counts=counts,
            photos={"type": "array", "items": ref("PhotoSummary")},
        ),
        "Photo": obj(
            ["id", "event_id", "status", "faces", "analysis", "error"],
            id=INT_ID,
            event_id=INT_ID,
            filename=nullable(STRING),
            status=photo_status,
            width=nullable(INT),
            height=nullable(INT),
            quality=obj(sharpness=nullable(NUMBER), exposure=nullable(NUMBER)),
            faces={
                "type": "array",
                "items": obj(
                    ["box"],
                    box=obj(["left", "top", "width", "height"], left=INT, top=INT, width=INT, height=INT),
                    score=NUMBER,
                ),
            },
            analysis=nullable({"type": "object"}),
            error=nullable(ref("ErrorDetail")),
        ),
        "SelfieStatus": obj(
            ["status"],
            status={"type": "string", "enum": ["processing", "ready", "no_face", "failed"]},
            error=ref("ErrorDetail"),
        ),
        "MyPhotos": obj(
            ["status", "photos"],
            status={"type": "string", "enum": ["missing", "processing", "ready", "no_face", "failed"]},
            photos={"type": "array", "items": listed_photo},
            maybe={"type": "array", "items": listed_photo},
        ),
        "AllPhotos": obj(
            ["event_id", "page", "per_page", "total", "photos"],
            event_id=INT_ID,
            page=INT,
            per_page=INT,
            total=INT,
            photos={
                "type": "array",
                "items": obj(
                    ["photo_id", "thumbnail_url"],
                    photo_id=INT_ID,
                    thumbnail_url=STRING,
                    width=nullable(INT),
                    height=nullable(INT),
                    faces=nullable(INT),
                ),
            },
        ),
    }


RETRY_AFTER: Schema = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer", "minimum": 0}}}


def _error_responses() -> dict[str, Schema]:
    out = {}
    for status, text in ERROR_STATUSES.items():
        response: Schema = {"description": text, "content": {"application/json": {"schema": ref("Error")}}}
        if status in RETRY_AFTER_STATUSES:
            response["headers"] = RETRY_AFTER
        out[f"E{status}"] = response
    return out


@cache
def document() -> Schema:
    paths: Paths = {}
    for group in PATH_GROUPS:
        for path, operations in group().items():
            paths.setdefault(path, {}).update(operations)
    for operations in paths.values():
        for method, op in operations.items():
            if method in UNSAFE_METHODS and op.get("security") != []:
                op["responses"].setdefault("400", {"$ref": "#/components/responses/E400"})  # csrf_failed
                op["responses"] = dict(sorted(op["responses"].items()))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Snapmatch API",
            "version": "1",
            "description": (
                "Event photos delivered to the people in them. Errors are always "
                '`{"error": {"code": "snake_case", "message": "…"}}`. Cookie-authenticated unsafe requests '
                "(POST/PUT/PATCH/DELETE) also need the CSRF token in `X-CSRFToken`; Bearer requests do not."
            ),
        },
        "security": [{"bearerAuth": []}, {"cookieAuth": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token from `flask --app webapp tokens create EMAIL`.",
                },
                "cookieAuth": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "The session cookie `POST /login` sets (pages use it).",
                },
            },
            "schemas": _schemas(),
            "responses": _error_responses(),
        },
    }


@bp.get("/api/openapi.json")
def openapi_json():  # type: ignore[no-untyped-def]
    return jsonify(document())
