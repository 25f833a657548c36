"""`pip install .` in a fresh virtual environment gives the `snapmatch` command and nothing of the server
stack (what a photographer's laptop gets from `pipx install`); `[server]` adds the service's pins."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
# What pip says when the package index cannot be reached: the build needs setuptools from it.
_OFFLINE = ("No matching distribution found", "Failed to establish a new connection", "Temporary failure in name")


def _run_pip(args: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 and any(marker in done.stderr for marker in _OFFLINE):
        pytest.skip(f"the package index cannot be reached: {done.stderr.strip().splitlines()[-1]}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built the way `pip install .` builds it (isolated, with the declared backend)."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "src"  # a copy, so the build leaves nothing in the working tree
    skip = (".venv", ".git", "var", "build", "*.egg-info", "bench", "__pycache__", ".ruff_cache", "test-artifacts")
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*skip))
    built = _run_pip(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check", "-w", str(out),
         str(source)]
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("snapmatch-*.whl")
    return path


def test_pip_install_gives_the_snapmatch_command_without_the_server_stack(tmp_path: Path, wheel: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = _run_pip([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)])
    assert install.returncode == 0, install.stderr[-3000:]

    helped = subprocess.run([str(env_dir / "bin" / "snapmatch"), "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "watch" in helped.stdout and "login" in helped.stdout
    usage = subprocess.run([str(env_dir / "bin" / "snapmatch"), "upload", "--help"], capture_output=True, text=True)
    assert "--concurrency" in usage.stdout

    installed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True)
    names = {line.split("==")[0].lower() for line in installed.stdout.splitlines()}
    assert {"requests", "watchdog", "rich", "platformdirs"} <= names
    assert not names & {"flask", "opencv-python-headless", "dlib-bin", "numpy", "sqlalchemy", "rq", "boto3"}


def test_the_wheel_ships_the_three_packages_their_data_and_the_server_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        metadata = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/METADATA"))
    assert {"snapmatch/watcher/cli.py", "webapp/__init__.py", "jobs/worker.py"} <= names
    assert "snapmatch/migrations/script.py.mako" in names and "webapp/templates/base.html" in names
    assert any(n.startswith("snapmatch/migrations/versions/0001") for n in names)
    assert not any(n.startswith(("tests/", "bench/", "scripts/")) for n in names)
    assert 'Requires-Dist: Flask==3.1.3; extra == "server"' in metadata
