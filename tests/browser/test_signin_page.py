"""The sign-in page in a real browser (Debian's chromium via Playwright), on a phone and a laptop
viewport, against gunicorn: sign-in lands on the role's home, the session cookie is out of reach of
scripts, a failed sign-in reads well, and a page's script can POST only with the CSRF token."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

PASSWORD = "correct horse battery"
VIEWPORTS = {
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
    "laptop": {"viewport": {"width": 1280, "height": 800}},
}


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict:
    return {"executable_path": "/usr/bin/chromium", "headless": True, "args": ["--no-sandbox"]}


@pytest.fixture
def database_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path}/snapmatch.db"  # the browser checks the page, not the dialect


@pytest.fixture
def web(processes) -> str:  # type: ignore[no-untyped-def]
    return processes.web()


@pytest.mark.parametrize("device", VIEWPORTS)
def test_sign_in_in_a_browser(browser: Browser, web, make_user, device) -> None:  # type: ignore[no-untyped-def]
    email, _ = make_user("photographer")
    context = browser.new_context(**VIEWPORTS[device])
    page = context.new_page()
    page.goto(web + "/login")
    expect(page.locator("form")).to_have_count(1)
    expect(page.locator("input[type=hidden][name=csrf_token]")).to_have_count(1)
    email_box = page.locator("input[name=email]")
    box = email_box.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORTS[device]["viewport"]["width"]

    email_box.fill(email)
    page.locator("input[name=password]").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match an account")
    expect(page.locator("input[name=email]")).to_have_value(email)

    page.locator("input[name=password]").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(web + "/events")
    cookie = next(c for c in context.cookies() if c["name"] == "snapmatch_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert "snapmatch_session" not in page.evaluate("document.cookie")

    page.goto(web + "/me")
    expect(page.get_by_text(email)).to_be_visible()
    statuses = page.evaluate(
        """async () => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const post = (headers) => fetch('/api/events', {method: 'POST', body: JSON.stringify({name: 'From page'}),
                headers: {'Content-Type': 'application/json', ...headers}}).then(r => r.status);
            return [await post({}), await post({'X-CSRFToken': token})];
        }"""
    )
    assert statuses == [400, 201]

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(web + "/login")
    page.goto(web + "/me")
    page.wait_for_url(web + "/login?next=/me")
    context.close()


def test_a_cross_site_form_post_is_refused_and_leaves_the_victim_signed_in(
    browser: Browser, web, make_user, attacker_site
) -> None:  # type: ignore[no-untyped-def]
    """Another site's page posts forms to ours with a signed-in admin's browser: the browser does
    not send the SameSite=Lax cookie, each post is refused with a readable page, and the admin is
    still signed in afterwards (the refusal must not store a new, empty session over theirs)."""
    email, _ = make_user("admin")
    context = browser.new_context(**VIEWPORTS["laptop"])
    page = context.new_page()
    page.goto(web + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(web + "/admin")
    origin, pages = attacker_site
    for name, action, fields in [
        ("event", "/events", '<input name="name" value="Forged event">'),
        ("logout", "/logout", ""),
        ("rq", "/admin/rq/queue/photos/queued/empty", ""),
    ]:
        pages[f"/{name}"] = (
            f'<form id="f" method="post" action="{web}{action}">{fields}</form>'
            '<script>document.getElementById("f").submit();</script>'
        )
        evil = context.new_page()
        evil.goto(f"{origin}/{name}")
        evil.wait_for_url(web + action)
        expect(evil.get_by_text("security token")).to_be_visible()
        evil.close()
        page.goto(web + "/me")
        assert page.url == web + "/me", f"signed out by a cross-site POST to {action}"
        expect(page.get_by_text(email)).to_be_visible()
    page.goto(web + "/events")
    expect(page.get_by_text("Forged event")).to_have_count(0)
    context.close()
