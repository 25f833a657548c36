"""Flask CLI commands for bootstrap and operations: ``db upgrade``, ``users create``, ``tokens create``."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from snapmatch import accounts, db
from snapmatch.errors import SnapmatchError

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


@tokens_cli.command("create")
@click.argument("email")
def tokens_create(email: str) -> None:
    """Create an API token; it is printed once, alone on the last line."""
    try:
        token = accounts.create_token(email)
    except SnapmatchError as exc:
        raise click.ClickException(exc.message) from exc
    click.echo(f"API token for {email} (store it now, it is not shown again):")
    click.echo(token)


def init_app(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(tokens_cli)
    app.cli.add_command(db_cli)
