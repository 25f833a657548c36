"""The web process's SECRET_KEY must be present, not a known default and long enough: anyone who
knows the key can sign a session cookie for any user, the admin included.

Only processes that sign or check cookies need it: the web server (gunicorn, ``flask run``).
Workers, the scheduler and Flask CLI commands such as ``users``/``tokens``/``db`` sign nothing, so
they start without it.
"""

from __future__ import annotations

import logging
import os

import click

log = logging.getLogger(__name__)

MIN_SECRET_KEY_BYTES = 32
HOW_TO_MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
# Keys that have appeared in this project's files, its docs, and common examples.
KNOWN_DEFAULT_KEYS = frozenset(
    {
        "dev-only-change-me",
        "change-me",
        "changeme",
        "change_me",
        "secret",
        "secret-key",
        "secret_key",
        "dev",
        "development",
        "test",
        "test-secret",
        "snapmatch",
        "your-secret-key",
        "please-change-me",
        "replace-me",
    }
)


class InsecureSecretKey(RuntimeError):
    """Raised by ``create_app``: the process ends with this message instead of serving forgeable
    sessions (an exception, not SystemExit, so gunicorn halts with "Worker failed to boot" instead
    of respawning the worker forever)."""


def secret_key_problem(key: str | None) -> str | None:
    """Why this key must not sign cookies, or None when it is fit."""
    if not key:
        return "SECRET_KEY is not set."
    if key.strip().lower() in KNOWN_DEFAULT_KEYS:
        return "SECRET_KEY is a published default value."
    if len(key.encode()) < MIN_SECRET_KEY_BYTES:
        return f"SECRET_KEY is shorter than {MIN_SECRET_KEY_BYTES} bytes."
    if len(set(key)) < 8:
        return "SECRET_KEY repeats too few characters to be random."
    return None


def refusal_message(problem: str) -> str:
    return (
        f"Refusing to start the web process: {problem} It signs session cookies, so it must be a "
        f"random value of at least {MIN_SECRET_KEY_BYTES} bytes. Make one with\n"
        f"    {HOW_TO_MAKE_ONE}\n"
        "and set it in the environment as SECRET_KEY (`make run` creates ./var/secret_key for you)."
    )


def loaded_for_cli_command() -> bool:
    """True when ``flask --app webapp <command>`` loads the app for a command other than ``run``:
    those commands (users, tokens, db, shell, routes) sign no cookie."""
    if os.environ.get("FLASK_RUN_FROM_CLI") != "true":
        return False
    ctx = click.get_current_context(silent=True)
    # FlaskGroup loads the app while resolving an app command (before it is "invoked"); `flask run`
    # loads it from inside the run command.
    return ctx is not None and ctx.find_root().invoked_subcommand != "run"


def check_secret_key(key: str | None) -> str | None:
    """The key to sign with. Raises ``InsecureSecretKey`` for the web server; CLI commands get None
    (so nothing can be signed by accident) when the key is unfit."""
    problem = secret_key_problem(key)
    if problem is None:
        return key
    if loaded_for_cli_command():
        return None
    message = refusal_message(problem)
    log.critical(message)
    raise InsecureSecretKey(message)
