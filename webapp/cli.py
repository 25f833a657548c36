"""Flask CLI commands for bootstrap and operations: ``db upgrade``, ``users create``, ``tokens create|list|revoke``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import func, select

from snapmatch import accounts, db
from snapmatch import settings as settings_module
from snapmatch.errors import SnapmatchError
from snapmatch.schema import users

users_cli = AppGroup("users", help="Manage users.")
tokens_cli = AppGroup("tokens", help="Manage API tokens.")
db_cli = AppGroup("db", help="Database schema.")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration."""
    db.migrate()
    click.echo("database is up to date")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "photographer", "attendee"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
def users_create(email: str, role: str, password: str) -> None:
    """Create a user with a role and a password."""
    try:
        user = accounts.create_user(email, role, password)
    except SnapmatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"created {user.role.value} {user.email} (id {user.id})")


FIRST_ADMIN_EMAIL = "admin@snapmatch.local"


@users_cli.command("bootstrap")
def users_bootstrap() -> None:
    """On an empty database only: create a first admin with a generated password, written to
    ``$SNAPMATCH_VAR_DIR/first-admin.txt`` (mode 0600), so a new install can sign in at /login at once.
    An admin passes every role check: it can create events and upload like a photographer."""
    with db.connection() as conn:
        existing = conn.execute(select(func.count()).select_from(users)).scalar_one()
    credentials = Path(settings_module.VAR_DIR) / "first-admin.txt"
    if existing:
        if credentials.exists():
            click.echo(f"Sign in with the first admin's credentials in {credentials}.")
        return
    password = secrets.token_urlsafe(12)
    user = accounts.create_user(FIRST_ADMIN_EMAIL, "admin", password)
    credentials.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"email: {user.email}\npassword: {password}\n")
    click.echo(f"Created the first admin: {user.email} / {password} (also in {credentials}, mode 0600).")


@users_cli.command("sign-out")
@click.argument("email")
def users_sign_out(email: str) -> None:
    """End every browser session of a user (their API tokens stay: see `tokens revoke`)."""
    try:
        ended = accounts.end_all_sessions(email)
    except SnapmatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"ended {ended} session(s) of {email}")


@tokens_cli.command("create")
@click.argument("email")
@click.option("--name", default=None, help="A label to tell this token apart (shown by `tokens list`).")
@click.option(
    "--expires-days", type=click.IntRange(1, accounts.MAX_TOKEN_DAYS), default=None, help="Expire after N days."
)
def tokens_create(email: str, name: str | None, expires_days: int | None) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    try:
        issued = accounts.issue_token(accounts.find_user(email), name=name, expires_days=expires_days)
    except SnapmatchError as exc:
        raise click.ClickException(exc.message) from exc
    expiry = f", expires {issued.expires_at:%Y-%m-%d %H:%M} UTC" if issued.expires_at else ""
    click.echo(f"API token {issued.id} for {email}{expiry} (store it now, it is not shown again):")
    click.echo(issued.token)


def _when(value) -> str:  # type: ignore[no-untyped-def]
    return f"{value:%Y-%m-%d %H:%M}" if value else "-"


@tokens_cli.command("list")
@click.argument("email")
def tokens_list(email: str) -> None:
    """List a user's API tokens (never the tokens themselves: id, prefix, dates, name)."""
    try:
        tokens = accounts.list_tokens(email)
    except SnapmatchError as exc:
        raise click.ClickException(exc.message) from exc
    if not tokens:
        click.echo(f"{email} has no API tokens.")
        return
    now = db.utcnow()
    click.echo(f"{'id':>6}  {'prefix':<12}  {'created (UTC)':<16}  {'last used':<16}  {'expires':<16}  name")
    for t in tokens:
        expires = _when(t.expires_at) + (" (expired)" if t.is_expired(now) else "")
        click.echo(
            f"{t.id:>6}  {t.prefix or '(old)':<12}  {_when(t.created_at):<16}  {_when(t.last_used_at):<16}  "
            f"{expires:<16}  {t.name or ''}"
        )


@tokens_cli.command("revoke")
@click.argument("token_ref")
def tokens_revoke(token_ref: str) -> None:
    """Revoke (delete) a token by its id or its prefix, as `tokens list` shows them."""
    try:
        token_id = accounts.revoke_token(token_ref)
    except SnapmatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"revoked API token {token_id}")


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(db_cli)
