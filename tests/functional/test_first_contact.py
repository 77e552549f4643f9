"""A newcomer's first commands, from folders that are not the repository: the package carries
its defaults and its shipped table, `agegate serve` runs anywhere, and a one-off command
never makes up a fresh state where it happens to run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.functional.test_walkthrough import wait_ready
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
AGEGATE = str(Path(sys.executable).parent / "agegate")


def newcomer_env() -> dict[str, str]:
    """A shell with none of the suite's AGEGATE_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AGEGATE_")}


@pytest.mark.timeout(300)
def test_the_wheel_carries_the_defaults_and_the_shipped_table(tmp_path: Path) -> None:
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT / "agegate", source / "agegate", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("agegate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "agegate/data/defaults.toml",
        "agegate/data/jurisdictions.csv",
        "agegate/gunicorn_conf.py",
    ):
        assert needed in names


@pytest.mark.timeout(120)
def test_serve_runs_from_an_empty_folder_and_keeps_its_state_there(tmp_path: Path) -> None:
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [AGEGATE, "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=tmp_path,
            env=newcomer_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(port, server)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert (tmp_path / "var" / "agegate.db").is_file()  # AGEGATE_VAR_DIR's default, ./var
    assert "Listening" in (tmp_path / "serve.log").read_text()


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AGEGATE, *args],
        cwd=cwd,
        env={**newcomer_env(), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.timeout(120)
def test_one_off_commands_use_the_services_state_or_say_where_they_looked(
    tmp_path: Path,
) -> None:
    service, elsewhere = tmp_path / "service", tmp_path / "elsewhere"
    service.mkdir()
    elsewhere.mkdir()
    assert run(["db", "upgrade"], service).returncode == 0  # makes the state, as serve does
    made = run(["keys", "create", "--name", "ops", "--scope", "cases:read"], service)
    assert made.returncode == 0, made.stderr
    assert made.stdout.endswith("\n")

    lost = run(["keys", "list"], elsewhere)
    assert lost.returncode == 2
    assert f"{elsewhere / 'var' / 'agegate.db'} does not exist" in lost.stderr
    assert "AGEGATE_VAR_DIR" in lost.stderr
    assert list(elsewhere.iterdir()) == []  # nothing made up where the command ran

    pointed = run(["keys", "list"], elsewhere, AGEGATE_VAR_DIR=str(service / "var"))
    assert pointed.returncode == 0 and "ops" in pointed.stdout
    assert pointed.stdout.endswith("\n") and lost.stderr.endswith("\n")
    assert list(elsewhere.iterdir()) == []


@pytest.mark.timeout(120)
def test_targets_commands_find_the_embedded_defaults_file_as_serve_does(tmp_path: Path) -> None:
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    assert run(["demo", "seed"], tmp_path).returncode == 0
    checked = run(["targets", "check"], tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.splitlines() == ["platform-db sql ok", "media files ok"]
    preview = run(["targets", "preview", "e2e-child-1"], tmp_path)
    assert preview.returncode == 0 and preview.stdout.endswith("\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    lost = run(["targets", "check"], elsewhere)
    assert lost.returncode == 2 and "no agegate state here" in lost.stderr


def cut(help_text: str) -> bool:
    """Whether a summary was cut short ("...", after the usage line, whose "[ARGS]..." is
    click's notation)."""
    body = help_text.split("\n", 1)[1]
    return "..." in body or "…" in body


def test_the_help_lists_agegates_commands_only_grouped_and_whole(tmp_path: Path) -> None:
    long, short = run(["--help"], tmp_path), run(["-h"], tmp_path)
    assert long.returncode == short.returncode == 0 and long.stdout == short.stdout
    listed = {line.split()[0] for line in long.stdout.splitlines() if line.startswith("  ")}
    assert {"run", "shell", "routes"}.isdisjoint(listed)  # Flask's development commands
    assert {"serve", "worker", "keys", "jurisdictions", "cases", "targets"} <= listed
    for flask_only in ("--app", "--env-file", "--debug"):
        assert flask_only not in long.stdout
    for section in ("Run the service:", "Access:", "Remediation:", "The jurisdiction table:"):
        assert section in long.stdout
    assert not cut(long.stdout)
    for group in ("keys", "jurisdictions", "cases", "targets", "receipts", "audit", "db"):
        sub = run([group, "-h"], tmp_path)
        assert sub.returncode == 0 and not cut(sub.stdout), group
    version = run(["--version"], tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("agegate, version ")
    assert run(["-V"], tmp_path).stdout == version.stdout
    assert list(tmp_path.iterdir()) == []  # asking for help makes no state


@pytest.mark.timeout(180)
def test_every_configuration_problem_is_reported_before_listening(tmp_path: Path) -> None:
    from tests.support.servers import PrivatePostgres

    server = PrivatePostgres()
    server.start()
    try:
        missing_database = server.url("nosuchdb").replace("postgres@", "postgres:sekret-pw@")
        broken = tmp_path / "targets.yaml"
        broken.write_text("targets:\n  - name: a\n    kind: sql\n   url: x\n")
        env = {
            "AGEGATE_DATABASE_URL": missing_database,
            "AGEGATE_SECRET_KEY": "k" * 40,
            "AGEGATE_TARGETS_FILE": str(broken),
        }
        started = run(["serve", "--bind", f"127.0.0.1:{free_port()}"], tmp_path, **env)
        one_off = run(["keys", "list"], tmp_path, **env)
    finally:
        server.remove()
    output = started.stdout + started.stderr
    assert started.returncode == 2 and "Listening" not in output
    for problem in (
        "AGEGATE_DATABASE_URL: the database 'nosuchdb' does not exist on 127.0.0.1:",
        "AGEGATE_RECEIPT_SIGNING_KEY: required outside the embedded default",
        "AGEGATE_TARGETS_FILE: targets.yaml: not valid YAML: line 4, column 4:",
    ):
        assert problem in started.stderr, started.stderr
    assert one_off.returncode == 2 and "'nosuchdb' does not exist" in one_off.stderr
    assert "sekret-pw" not in output + one_off.stdout + one_off.stderr
    assert "unreachable" not in output + one_off.stderr
