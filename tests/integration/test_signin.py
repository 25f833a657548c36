"""Sign-in with the session cookie, CSRF, rate limits, the forged-cookie hole, and API tokens
(issue 13, items 1-3 and 6), through the Flask app on SQLite and PostgreSQL with real Redis."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from flask.sessions import SecureCookieSessionInterface

PASSWORD = "correct horse battery"


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


def sign_in(client, email: str, password: str = PASSWORD, next_path: str | None = None):  # type: ignore[no-untyped-def]
    page = client.get("/login", headers={"Accept": "text/html"})
    data = {"email": email, "password": password, "csrf_token": csrf_from(page.get_data(as_text=True))}
    if next_path is not None:
        data["next"] = next_path
    return client.post("/login", data=data, headers={"Accept": "text/html"})


def session_cookie(client):  # type: ignore[no-untyped-def]
    return client.get_cookie("snapmatch_session")


def test_login_page_has_the_form_the_page_contract_names(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/login", headers={"Accept": "text/html"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert html.count("<form") == 1
    assert 'name="email"' in html and 'name="password"' in html
    assert re.search(r'<input type="hidden" name="csrf_token" value="[^"]+"', html)
    assert re.search(r'<meta name="csrf-token" content="[^"]+"', html)
    # Other sites cannot frame the sign-in form (clickjacking) or make the browser sniff types.
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def test_sign_in_sets_a_rotated_httponly_lax_cookie_and_goes_home(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    client.get("/login")
    before = session_cookie(client).value
    resp = sign_in(client, email)
    assert resp.status_code == 303 and resp.headers["Location"] == "/events"
    set_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie
    assert session_cookie(client).value != before
    me = client.get("/api/me")
    assert me.status_code == 200 and me.json["email"] == email and me.json["role"] == "photographer"


def test_the_session_cookie_is_secure_when_configured(client, app, make_user) -> None:  # type: ignore[no-untyped-def]
    app.config["SESSION_COOKIE_SECURE"] = True
    email, _ = make_user("attendee")
    resp = sign_in(client, email)
    assert "Secure" in resp.headers["Set-Cookie"]


def test_each_role_lands_on_its_home_and_next_is_same_origin_only(app, make_user) -> None:  # type: ignore[no-untyped-def]
    app.config["SNAPMATCH"] = replace(app.config["SNAPMATCH"], LOGIN_RATE_LIMIT_PER_EMAIL="100/minute")
    admin, _ = make_user("admin")
    attendee, _ = make_user("attendee")
    assert sign_in(app.test_client(), admin).headers["Location"] == "/admin"
    assert sign_in(app.test_client(), attendee).headers["Location"] == "/me"
    assert sign_in(app.test_client(), attendee, next_path="/e/7?x=1").headers["Location"] == "/e/7?x=1"
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "/ok\r\nX: y"):
        assert sign_in(app.test_client(), attendee, next_path=evil).headers["Location"] == "/me", evil


def test_an_attendee_lands_on_the_event_they_joined_last(client, make_user) -> None:  # type: ignore[no-untyped-def]
    _, photographer = make_user("photographer")
    email, attendee = make_user("attendee")
    for name in ("First", "Second"):
        event = client.post("/api/events", json={"name": name}, headers=auth(photographer)).json
        joined = client.post(
            f"/api/events/{event['id']}/join", json={"access_code": event["access_code"]}, headers=auth(attendee)
        )
        assert joined.status_code == 200
    assert sign_in(client, email).headers["Location"] == f"/e/{event['id']}"


def test_wrong_password_and_unknown_email_get_the_same_page_and_the_same_work(client, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import hashlib

    from snapmatch import accounts

    email, _ = make_user("photographer")
    accounts.authenticate("warm-up@example.com", "x")  # the dummy hash is made once per process
    calls: list[int] = []
    real_scrypt = hashlib.scrypt

    def counting_scrypt(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs.get("n", 0))
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting_scrypt)
    wrong = sign_in(client, email, "not the password")
    work_for_wrong_password = list(calls)
    calls.clear()
    unknown = sign_in(client, "nobody-here@example.com", "not the password")
    assert calls == work_for_wrong_password == [2**14]
    assert wrong.status_code == unknown.status_code == 401
    page = wrong.get_data(as_text=True)
    assert "do not match an account" in page

    def without_tokens(html: str, typed_email: str) -> str:  # CSRF tokens carry a timestamp
        return re.sub(r'(content|value)="[A-Za-z0-9._-]{40,}"', "", html.replace(typed_email, ""))

    assert without_tokens(page, email) == without_tokens(unknown.get_data(as_text=True), "nobody-here@example.com")
    assert client.get("/api/me").status_code == 401


def test_logout_needs_csrf_and_ends_the_session(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    sign_in(client, email)
    assert client.post("/logout").status_code == 400
    assert client.get("/api/me").status_code == 200
    token = csrf_from(client.get("/me", headers={"Accept": "text/html"}).get_data(as_text=True))
    resp = client.post("/logout", data={"csrf_token": token})
    assert resp.status_code == 303
    assert client.get("/api/me").status_code == 401


def test_pages_redirect_to_login_and_api_answers_401(client) -> None:  # type: ignore[no-untyped-def]
    resp = client.get("/me?tab=1", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert resp.status_code == 302 and resp.headers["Location"] == "/login?next=/me?tab%3D1"
    resp = client.get("/api/me", headers={"Accept": "text/html"})
    assert resp.status_code == 401 and resp.json["error"]["code"] == "unauthorized"


def test_a_cookie_signed_with_the_old_default_key_is_refused(client, app, make_user, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The hole of issue 13 item 1: a session forged with the published key acted as the admin.
    An install without SECRET_KEY no longer serves at all, and the running app refuses the cookie."""
    from snapmatch import settings
    from webapp import create_app
    from webapp.secret_key import InsecureSecretKey

    monkeypatch.delenv("SECRET_KEY")
    settings.get_settings.cache_clear()
    with pytest.raises(InsecureSecretKey):
        create_app()
    make_user("admin")
    forged = SecureCookieSessionInterface().get_signing_serializer(
        type("OldApp", (), {"secret_key": "dev-only-change-me", "config": {"SECRET_KEY_FALLBACKS": None}})()
    )
    for payload in ({"user_id": 1}, {"_user_id": "1", "_fresh": True, "user_id": 1}):
        client.set_cookie("session", forged.dumps(payload))
        client.set_cookie("snapmatch_session", forged.dumps(payload))
        resp = client.get("/api/admin/providers")
        assert resp.status_code == 401, payload


def test_a_cookie_session_cannot_post_without_the_csrf_token_and_can_with_it(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, token = make_user("photographer")
    sign_in(client, email)
    refused = client.post("/api/events", json={"name": "Gala"})
    assert refused.status_code == 400 and refused.json["error"]["code"] == "csrf_failed"
    wrong = client.post("/api/events", json={"name": "Gala"}, headers={"X-CSRFToken": "forged"})
    assert wrong.status_code == 400 and wrong.json["error"]["code"] == "csrf_failed"
    token_from_meta = re.search(
        r'<meta name="csrf-token" content="([^"]+)"',
        client.get("/me", headers={"Accept": "text/html"}).get_data(as_text=True),
    ).group(1)
    created = client.post("/api/events", json={"name": "Gala"}, headers={"X-CSRFToken": token_from_meta})
    assert created.status_code == 201
    # Bearer requests need no token, even from a client that also holds a cookie.
    assert client.post("/api/events", json={"name": "Script"}, headers=auth(token)).status_code == 201
    # Unsafe methods other than POST are checked too.
    event_id = created.json["id"]
    assert client.delete(f"/api/events/{event_id}/selfie").json["error"]["code"] == "csrf_failed"


def test_blueprints_mounted_later_are_covered_by_the_same_check(app, client, make_user) -> None:  # type: ignore[no-untyped-def]
    """Like rq-dashboard at /admin/rq (operations area): a blueprint mounted after create_app is
    covered by the app-wide check without doing anything."""
    from flask import Blueprint

    late = Blueprint("late_dashboard", __name__)

    @late.post("/admin/late-board/requeue-all")
    def requeue_all():  # type: ignore[no-untyped-def]
        return {"requeued": 1}

    app.register_blueprint(late)
    email, _ = make_user("admin")
    sign_in(client, email)
    assert client.post("/admin/late-board/requeue-all").status_code == 400
    token = csrf_from(client.get("/login", headers={"Accept": "text/html"}).get_data(as_text=True))
    assert client.post("/admin/late-board/requeue-all", headers={"X-CSRFToken": token}).status_code == 200


def test_login_itself_needs_the_csrf_token(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    resp = client.post("/login", data={"email": email, "password": PASSWORD}, headers={"Accept": "text/html"})
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login")
    # The message rides in the address (a flash would be a session write; see webapp/csrf.py).
    assert "security token" in client.get(resp.headers["Location"], headers={"Accept": "text/html"}).get_data(
        as_text=True
    )
    assert client.get("/api/me").status_code == 401


def test_sign_in_attempts_are_limited_per_email_and_per_address(app, make_user) -> None:  # type: ignore[no-untyped-def]
    app.config["SNAPMATCH"] = replace(
        app.config["SNAPMATCH"], LOGIN_RATE_LIMIT_PER_EMAIL="3/minute", LOGIN_RATE_LIMIT_PER_IP="5/minute"
    )
    email, _ = make_user("photographer")
    client = app.test_client()
    statuses = [sign_in(client, email, "wrong password").status_code for _ in range(3)]
    assert statuses == [401, 401, 401]
    page = sign_in(client, email)  # the right password, but over the per-email limit
    assert page.status_code == 429 and int(page.headers["Retry-After"]) > 0
    assert "Too many attempts" in page.get_data(as_text=True)
    # The token endpoint shares the budget and answers JSON.
    api = client.post("/api/tokens", json={"email": email, "password": PASSWORD})
    assert api.status_code == 429 and api.json["error"]["code"] == "rate_limited"
    assert int(api.headers["Retry-After"]) > 0
    # Another email from the same address: two more attempts, then the per-address limit.
    other = [
        client.post("/api/tokens", json={"email": f"x{i}@example.com", "password": "x"}).status_code for i in range(3)
    ]
    assert other == [401, 401, 429]


def test_post_api_tokens_exchanges_credentials_for_a_token(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    resp = client.post("/api/tokens", json={"email": email, "password": PASSWORD, "name": "laptop", "expires_days": 30})
    assert resp.status_code == 201
    body = resp.json
    assert set(body) == {"token", "id", "expires_at"} and body["expires_at"]
    assert client.get("/api/me", headers=auth(body["token"])).json["email"] == email
    no_expiry = client.post("/api/tokens", json={"email": email, "password": PASSWORD}).json
    assert no_expiry["expires_at"] is None
    wrong = client.post("/api/tokens", json={"email": email, "password": "nope"})
    assert wrong.status_code == 401 and wrong.json["error"]["code"] == "invalid_credentials"
    bad = client.post("/api/tokens", json={"email": email, "password": PASSWORD, "expires_days": "²"})
    assert bad.status_code == 400 and bad.json["error"]["code"] == "invalid_parameter"


def test_post_api_tokens_needs_no_csrf_token_even_with_a_session(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("attendee")
    sign_in(client, email)
    resp = client.post("/api/tokens", json={"email": email, "password": PASSWORD})
    assert resp.status_code == 201


def test_tokens_expire_record_last_use_and_can_be_listed_and_revoked(app, client, make_user) -> None:  # type: ignore[no-untyped-def]
    from datetime import timedelta

    from sqlalchemy import select, update

    from snapmatch import db
    from snapmatch.schema import api_tokens

    email, first = make_user("photographer")
    runner = app.test_cli_runner()
    created = runner.invoke(args=["tokens", "create", email, "--expires-days", "2", "--name", "ci"])
    assert created.exit_code == 0, created.output
    second = created.output.strip().splitlines()[-1]
    assert second.startswith("smk_") and len(second) > 40

    assert client.get("/api/me", headers=auth(second)).status_code == 200
    with db.connection() as conn:
        used = conn.execute(select(api_tokens.c.last_used_at).where(api_tokens.c.prefix == second[:12])).scalar()
    assert used is not None
    client.get("/api/me", headers=auth(second))
    with db.connection() as conn:
        again = conn.execute(select(api_tokens.c.last_used_at).where(api_tokens.c.prefix == second[:12])).scalar()
    assert again == used  # written at most once a minute

    listed = runner.invoke(args=["tokens", "list", email])
    assert listed.exit_code == 0, listed.output
    assert first not in listed.output and second not in listed.output
    assert second[:12] in listed.output and first[:12] in listed.output and "ci" in listed.output

    with db.transaction() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.prefix == second[:12])
            .values(expires_at=db.utcnow() - timedelta(seconds=1))
        )
    expired = client.get("/api/me", headers=auth(second))
    assert expired.status_code == 401 and expired.json["error"]["code"] == "token_expired"

    revoked = runner.invoke(args=["tokens", "revoke", first[:12]])
    assert revoked.exit_code == 0, revoked.output
    assert client.get("/api/me", headers=auth(first)).status_code == 401
    missing = runner.invoke(args=["tokens", "revoke", "99999"])
    assert missing.exit_code != 0 and "No API token" in missing.output


@pytest.mark.parametrize("key", ["", "dev-only-change-me", "change-me", "short-but-random-Xk29", "a" * 40])
def test_the_web_app_refuses_to_start_with_a_weak_secret_key(env, monkeypatch, key) -> None:  # type: ignore[no-untyped-def]
    from snapmatch import settings
    from webapp import create_app
    from webapp.secret_key import InsecureSecretKey

    monkeypatch.setenv("SECRET_KEY", key)
    settings.get_settings.cache_clear()
    with pytest.raises(InsecureSecretKey, match="SECRET_KEY") as raised:
        create_app()
    assert "secrets.token_urlsafe(48)" in str(raised.value)


def test_a_cookie_replayed_after_sign_out_is_refused(client, make_user) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    sign_in(client, email)
    copied = session_cookie(client).value
    token = csrf_from(client.get("/me", headers={"Accept": "text/html"}).get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    client.set_cookie("snapmatch_session", copied)
    assert client.get("/api/me").status_code == 401


def test_users_sign_out_ends_every_browser_session(app, make_user) -> None:  # type: ignore[no-untyped-def]
    email, token = make_user("photographer")
    laptop, phone = app.test_client(), app.test_client()
    sign_in(laptop, email)
    sign_in(phone, email)
    assert laptop.get("/api/me").status_code == phone.get("/api/me").status_code == 200
    result = app.test_cli_runner().invoke(args=["users", "sign-out", email])
    assert result.exit_code == 0 and "ended 2 session(s)" in result.output
    assert laptop.get("/api/me").status_code == phone.get("/api/me").status_code == 401
    assert laptop.get("/api/me", headers=auth(token)).status_code == 200  # tokens are separate
