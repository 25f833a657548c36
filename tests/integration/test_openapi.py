"""The OpenAPI document at /api/openapi.json: it names exactly the app's routes, it is a valid
OpenAPI 3.1 document, and schemathesis run against a live app (gunicorn, PostgreSQL, Redis) as a
photographer and as an attendee finds no server error and no response outside the document."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.conftest import ROOT
from tests.images import jpeg
from webapp.openapi import MAX_ID

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
DOCUMENTED_OUTSIDE_API = {"/healthz", "/readyz"}
FLASK_PARAM = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")


def app_operations(app) -> dict[tuple[str, str], dict[str, str]]:  # type: ignore[no-untyped-def]
    """(method, OpenAPI path) -> {parameter: converter} for every route the app serves."""
    out = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = FLASK_PARAM.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        converters = {m.group(2): m.group(1) or "default" for m in FLASK_PARAM.finditer(rule.rule)}
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            out[(method.lower(), path)] = converters
    return out


def documented_operations(doc: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    }


def must_be_documented(path: str) -> bool:
    return path.startswith("/api/") or path in DOCUMENTED_OUTSIDE_API


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_document_names_exactly_the_apps_routes(app, client) -> None:  # type: ignore[no-untyped-def]
    doc = client.get("/api/openapi.json").json
    served = app_operations(app)
    documented = documented_operations(doc)

    undocumented = sorted(key for key in served if must_be_documented(key[1]) and key not in documented)
    assert not undocumented, f"routes missing from webapp/openapi.py (see docs/openapi.md): {undocumented}"
    phantom = sorted(key for key in documented if key not in served)
    assert not phantom, f"webapp/openapi.py documents operations the app does not serve: {phantom}"

    for key, converters in served.items():
        if key not in documented:
            continue
        params = {p["name"]: p["schema"] for p in documented[key].get("parameters", []) if p.get("in") == "path"}
        assert set(params) == set(converters), f"{key}: path parameters differ"
        for name, converter in converters.items():
            if converter == "id":
                assert params[name] == {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}, key


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_document_is_valid_public_and_keeps_no_secrets(app, client, env) -> None:  # type: ignore[no-untyped-def]
    from openapi_spec_validator import validate

    resp = client.get("/api/openapi.json")  # no credentials
    assert resp.status_code == 200 and resp.mimetype == "application/json"
    doc = resp.json
    assert doc["openapi"].startswith("3.1")
    cookie = doc["components"]["securitySchemes"]["cookieAuth"]
    assert cookie["in"] == "cookie" and cookie["name"] == app.config["SESSION_COOKIE_NAME"]
    validate(doc)
    text = resp.get_data(as_text=True)
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "STORAGE_URL"):
        assert env[name] not in text, f"{name}'s value is in the document"
    # Every operation answers errors in the one shape (readiness answers 503 with its checks).
    for key, op in documented_operations(doc).items():
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")) and key != ("get", "/readyz"):
                assert response == {"$ref": f"#/components/responses/E{status}"}, (key, status)


# --- schemathesis against a live app ---------------------------------------------------------------

# A stream on a real batch stays open for 30 minutes: it is checked below by reading its first events.
NOT_FUZZED = ("/api/batches/{batch_id}/events", "/api/events/{event_id}/events")
# Left out: positive_data_acceptance (a schema-valid body may still be refused by the domain: a wrong
# access code, bytes that are not an image) and the checks that need stateful links.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "missing_required_header",
        "unsupported_method",
        "ignored_auth",
    ]
)
MAX_EXAMPLES = 25
SECONDS_PER_ROLE = 35


def _with_examples(doc: dict, examples: dict[str, object]) -> dict:
    """The document with real ids as examples, so the example and coverage phases reach real rows
    (fuzzing still draws ids from the whole 1..2**63-1 range)."""
    doc = json.loads(json.dumps(doc))
    for item in doc["paths"].values():
        for op in item.values():
            for param in op.get("parameters", []):
                if param["name"] in examples:
                    param["schema"]["examples"] = [examples[param["name"]]]
    return doc


def run_schemathesis(tmp_path: Path, url: str, doc: dict, token: str, role: str) -> dict:
    """``st run`` against the live app as one user; the JSON run report, with the console output."""
    schema_file = tmp_path / f"openapi-{role}.json"
    schema_file.write_text(json.dumps(doc))
    report = tmp_path / f"schemathesis-{role}.json"
    args = [
        str(Path(sys.executable).with_name("st")),
        "--config-file",
        str(ROOT / "schemathesis.toml"),
        "run",
        str(schema_file),
        "--url",
        url,
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--max-time",
        str(SECONDS_PER_ROLE),
        "--workers",  # one: hypothesis describes strategies with ast.parse, which CPython 3.11 cannot run
        "1",  # in two threads at once ("AST constructor recursion depth mismatch")
        "--seed",
        "13",
        "--request-timeout",
        "10",
        "--generation-database",
        "none",
        *[arg for path in NOT_FUZZED for arg in ("--exclude-path", path)],
        "--report",
        "json",
        "--report-json-path",
        str(report),
        "--no-color",
    ]
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=SECONDS_PER_ROLE * 4)
    result = json.loads(report.read_text()) if report.exists() else {}
    result["console"] = done.stdout + done.stderr
    result["returncode"] = done.returncode
    return result


def _failures_section(console: str) -> str:
    start = console.find("= FAILURES =")
    return console[max(0, start - 200) if start >= 0 else -8000 :][:12000]


def read_events(url: str, headers: dict[str, str], count: int) -> list[dict[str, str]]:
    """The first ``count`` events of a Server-Sent Events stream, as {field: value}."""
    found: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    with requests.get(url, headers=headers, stream=True, timeout=10) as resp:
        assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/event-stream")
        for line in resp.iter_lines(decode_unicode=True):
            if line == "":
                if "data" in fields:
                    found.append(fields)
                    if len(found) == count:
                        break
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
    return found


def schema_validator(doc: dict, schema: dict):  # type: ignore[no-untyped-def]
    from jsonschema import Draft202012Validator

    return Draft202012Validator({**schema, "components": doc["components"]})


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_schemathesis_finds_no_server_error_and_nothing_outside_the_document(processes, make_user, tmp_path):  # type: ignore[no-untyped-def]
    url = processes.web()
    _, photographer = make_user("photographer")
    _, attendee = make_user("attendee")

    def auth(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    event = requests.post(f"{url}/api/events", json={"name": "Schemathesis"}, headers=auth(photographer), timeout=10)
    assert event.status_code == 201, event.text
    event_id, access_code = event.json()["id"], event.json()["access_code"]
    upload = requests.post(
        f"{url}/api/events/{event_id}/photos",
        files=[("files", ("one.jpg", io.BytesIO(jpeg(seed=13)), "image/jpeg"))],
        headers=auth(photographer),
        timeout=10,
    )
    assert upload.status_code == 202, upload.text
    batch_id, photo_id = upload.json()["batch_id"], upload.json()["photos"][0]["photo_id"]
    joined = requests.post(
        f"{url}/api/events/{event_id}/join", json={"access_code": access_code}, headers=auth(attendee), timeout=10
    )
    assert joined.status_code == 200, joined.text
    doc = requests.get(f"{url}/api/openapi.json", timeout=10).json()

    # The stream schemathesis leaves out: its events as documented.
    event_schema = doc["components"]["schemas"]["ProgressEvent"]
    stream = read_events(f"{url}/api/batches/{batch_id}/events", auth(photographer), count=2)
    assert [e["event"] for e in stream] == ["ingestion:received", "photo:queued"]
    for sse_event in stream:
        schema_validator(doc, event_schema).validate(sse_event)
        schema_validator(doc, event_schema["properties"]["data"]["contentSchema"]).validate(
            json.loads(sse_event["data"])
        )

    with_ids = _with_examples(doc, {"event_id": event_id, "photo_id": photo_id, "batch_id": batch_id})
    runs = {
        role: run_schemathesis(tmp_path, url, with_ids, token, role)
        for role, token in (("photographer", photographer), ("attendee", attendee))
    }
    for role, run in runs.items():
        print(
            f"schemathesis as {role}: {run.get('operations', {}).get('tested')} operations, "
            f"{run.get('test_cases', {}).get('generated')} cases, failures {run.get('failures')}, "
            f"errors {run.get('errors')}, exit {run['returncode']}"
        )
    for role, run in runs.items():
        assert run["returncode"] == 0 and not run.get("failures") and not run.get("errors"), (
            f"schemathesis as {role}:\n{_failures_section(run['console'])}"
        )
        assert run["operations"]["tested"] >= len(documented_operations(doc)) - len(NOT_FUZZED)
