"""Which SECRET_KEY values the web process refuses (webapp/secret_key.py)."""

from __future__ import annotations

import secrets

import pytest

from webapp.secret_key import InsecureSecretKey, check_secret_key, secret_key_problem


@pytest.mark.parametrize(
    "key", [None, "", "dev-only-change-me", "change-me", "CHANGE-ME", "x" * 31, "ab" * 20, "short-but-random-Xk29"]
)
def test_weak_keys_are_refused(key) -> None:  # type: ignore[no-untyped-def]
    assert secret_key_problem(key) is not None
    with pytest.raises(InsecureSecretKey) as raised:
        check_secret_key(key)
    assert "SECRET_KEY" in str(raised.value) and "secrets.token_urlsafe(48)" in str(raised.value)


def test_a_generated_key_is_accepted() -> None:
    key = secrets.token_urlsafe(48)
    assert secret_key_problem(key) is None and check_secret_key(key) == key
