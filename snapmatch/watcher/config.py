"""Where the watcher keeps things (platformdirs: the user's config and state directories) and the
API token store written by ``snapmatch login``: one JSON file, readable by its owner only (0600)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import platformdirs

APP_NAME = "snapmatch"
CREDENTIALS_FILE = "credentials.json"


class ConfigError(Exception):
    """Something the user must fix before the watcher can run (a message for a person)."""


def config_dir() -> Path:
    override = os.environ.get("SNAPMATCH_CONFIG_DIR")
    return Path(override) if override else platformdirs.user_config_path(APP_NAME, appauthor=False)


def state_dir() -> Path:
    override = os.environ.get("SNAPMATCH_STATE_DIR")
    return Path(override) if override else platformdirs.user_state_path(APP_NAME, appauthor=False)


def normalize_server(url: str) -> str:
    """``https://host:port/prefix`` without a trailing slash; the key for tokens and local state."""
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--server must be an http:// or https:// address (like https://photos.example.com): {url!r}")
    return f"{parts.scheme}://{parts.netloc.lower()}{parts.path}"


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable and writable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    os.chmod(path, 0o600)


@dataclass(frozen=True)
class StoredToken:
    server: str
    token: str
    email: str | None = None
    token_id: int | None = None
    expires_at: str | None = None


class CredentialStore:
    """Tokens by server URL in ``<config dir>/credentials.json`` (0600), plus the last server used."""

    def __init__(self, directory: Path | None = None) -> None:
        self.path = (directory or config_dir()) / CREDENTIALS_FILE

    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"servers": {}}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.path} cannot be read ({exc}); remove it and `snapmatch login` again.") from exc
        return data if isinstance(data, dict) and isinstance(data.get("servers"), dict) else {"servers": {}}

    def save(self, stored: StoredToken) -> None:
        data = self._load()
        data["servers"][stored.server] = {
            "token": stored.token,
            "email": stored.email,
            "token_id": stored.token_id,
            "expires_at": stored.expires_at,
        }
        data["default_server"] = stored.server
        write_private(self.path, json.dumps(data, indent=2) + "\n")

    def get(self, server: str) -> StoredToken | None:
        entry = self._load()["servers"].get(server)
        if not isinstance(entry, dict) or not entry.get("token"):
            return None
        return StoredToken(server, entry["token"], entry.get("email"), entry.get("token_id"), entry.get("expires_at"))

    def default_server(self) -> str | None:
        value = self._load().get("default_server")
        return value if isinstance(value, str) else None
