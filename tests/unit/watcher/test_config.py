"""Token storage and the command line's choices of server and token."""

from __future__ import annotations

import stat
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from snapmatch.watcher import cli, config
from tests.conftest import ROOT


def test_the_token_file_is_private_and_keyed_by_server(tmp_path: Path) -> None:
    store = config.CredentialStore(tmp_path / "cfg")
    store.save(config.StoredToken("https://a.example", "tok-a", "me@example.com", 3, None))
    store.save(config.StoredToken("https://b.example", "tok-b"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert store.get("https://a.example").token == "tok-a"
    assert store.default_server() == "https://b.example"
    assert store.get("https://c.example") is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [("https://Photos.Example.com/", "https://photos.example.com"), ("http://127.0.0.1:8000", "http://127.0.0.1:8000")],
)
def test_server_urls_are_normalised(given: str, expected: str) -> None:
    assert config.normalize_server(given) == expected


@pytest.mark.parametrize("bad", ["photos.example.com", "ftp://x", "https://"])
def test_a_server_without_http_is_refused(bad: str) -> None:
    with pytest.raises(config.ConfigError):
        config.normalize_server(bad)


def test_token_comes_from_the_option_then_the_environment_then_the_login_file(monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    store = config.CredentialStore(tmp_path)
    store.save(config.StoredToken("https://a.example", "from-file"))
    args = cli.build_parser().parse_args(["upload", str(tmp_path), "--event", "1"])
    monkeypatch.delenv("SNAPMATCH_TOKEN", raising=False)
    assert cli._token(args, "https://a.example", store) == "from-file"
    monkeypatch.setenv("SNAPMATCH_TOKEN", "from-env")
    assert cli._token(args, "https://a.example", store) == "from-env"
    args.token = "from-option"
    assert cli._token(args, "https://a.example", store) == "from-option"
    monkeypatch.delenv("SNAPMATCH_TOKEN")
    args.token = None
    with pytest.raises(config.ConfigError, match="snapmatch login"):
        cli._token(args, "https://b.example", store)


def test_without_a_token_the_command_says_how_to_get_one(monkeypatch, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SNAPMATCH_CONFIG_DIR", str(tmp_path / "cfg"))
    monkeypatch.setenv("SNAPMATCH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("SNAPMATCH_TOKEN", raising=False)
    code = cli.main(["watch", str(tmp_path), "--event", "1", "--server", "http://127.0.0.1:9"])
    assert code == cli.EXIT_REFUSED
    assert "snapmatch login --server http://127.0.0.1:9" in capsys.readouterr().err


def test_the_console_script_resolves_to_the_cli() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, name = scripts["snapmatch"].partition(":")
    assert getattr(import_module(module), name) is cli.main
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
