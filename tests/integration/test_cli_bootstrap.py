"""`flask users bootstrap` (run by `make run`): a first admin on an empty database, never a second."""

from __future__ import annotations

import os
import re
import stat

from snapmatch import settings


def test_bootstrap_creates_one_admin_whose_password_signs_in(app) -> None:  # type: ignore[no-untyped-def]
    runner = app.test_cli_runner()
    first = runner.invoke(args=["users", "bootstrap"])
    assert first.exit_code == 0, first.output
    credentials = settings.VAR_DIR / "first-admin.txt"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    lines = dict(line.split(": ", 1) for line in credentials.read_text().splitlines())
    assert lines["password"] in first.output

    browser = app.test_client()
    page = browser.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    signed_in = browser.post(
        "/login", data={"email": lines["email"], "password": lines["password"], "csrf_token": token}
    )
    assert signed_in.status_code in (302, 303), signed_in.get_data(as_text=True)[:300]

    again = runner.invoke(args=["users", "bootstrap"])
    assert again.exit_code == 0 and lines["password"] not in again.output
    assert credentials.read_text().count("password") == 1
    assert browser.get("/api/me").json["role"] == "admin"
