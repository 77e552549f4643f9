"""The README's walk-through, pasted twice in a row into a shell beside `agegate serve`.

The block runs as written, in a folder of its own (its `./var` is the service's state), with
two stand-ins on the way: `curl` notes the status of every request it sends, and
`.venv/bin/agegate` the exit code of every command. Only the address changes, to a free port.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.servers import free_port

README = Path(__file__).resolve().parents[2] / "README.md"

# (method, path, status) of each request the block sends, in order. The 401, 403 and 422 are
# the ones it shows on purpose.
EXPECTED_REQUESTS = [
    ("GET", "/healthz", 200),
    ("GET", "/readyz", 200),
    ("GET", "/v1/jurisdictions/resolve", 200),
    ("GET", "/v1/jurisdictions/DE", 401),
    ("GET", "/v1/jurisdictions/DE", 403),
    ("GET", "/v1/jurisdictions/UK", 422),
    ("PUT", "/v1/jurisdictions/DE", 200),
    ("GET", "/v1/jurisdictions/DE", 200),
    ("GET", "/v1/jurisdictions/DE/history", 200),
    ("GET", "/v1/jurisdictions/export", 200),
    ("POST", "/v1/jurisdictions/import", 200),
    ("POST", "/v1/jurisdictions/import", 200),
    ("POST", "/v1/age-checks", 200),
    ("POST", "/v1/age-checks", 200),
    ("POST", "/v1/age-checks", 422),
    ("POST", "/v1/accounts/demo-child-1/flags", 201),
    ("GET", "/v1/cases/CASE", 200),  # until completed: repeats are folded into one
    ("GET", "/v1/cases/CASE/receipt", 200),
]
EXPECTED_COMMANDS = [
    "keys create",
    "keys create",
    "jurisdictions show",
    "keys create",
    "keys create",
    "receipts verify",
    "targets preview",
    "targets preview",
    "keys list",
    "keys revoke",
    "audit verify",
]


def walkthrough_block(port: int) -> str:
    text = README.read_text()
    section = text[text.index("\n## Walk-through") :]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the walk-through has a sh block"
    return re.sub(r"(localhost|127\.0\.0\.1):8000", rf"\1:{port}", block.group(1))


def stand_ins(folder: Path, log: Path) -> tuple[Path, Path]:
    """A `curl` that logs statuses and a `.venv/bin/agegate` that logs exit codes."""
    real_curl = shutil.which("curl")
    assert real_curl, "the walk-through needs curl"
    shims = folder / "shims"
    shims.mkdir()
    curl = shims / "curl"
    curl.write_text(
        "#!/bin/sh\n"
        f"exec {real_curl} -w '%{{stderr}}http %{{method}} %{{url_effective}} %{{response_code}}\\n'"
        f' "$@" 2>>{log}\n'
    )
    real_agegate = Path(sys.executable).parent / "agegate"
    clone = folder / "clone"
    (clone / ".venv" / "bin").mkdir(parents=True)
    agegate = clone / ".venv" / "bin" / "agegate"
    agegate.write_text(
        f'#!/bin/sh\n{real_agegate} "$@"; code=$?\necho "cli $1 $2 $code" >>{log}\nexit $code\n'
    )
    for script in (curl, agegate):
        script.chmod(0o755)
    return shims, clone


def logged(log: Path) -> tuple[list[tuple[str, str, int]], list[tuple[str, int]]]:
    requests: list[tuple[str, str, int]] = []
    commands: list[tuple[str, int]] = []
    for line in log.read_text().splitlines():
        kind, *rest = line.split()
        if kind == "http":
            method, url, status = rest
            path = re.sub(r"/v1/cases/[0-9a-f-]{36}", "/v1/cases/CASE", urlsplit(url).path)
            entry = (method, path, int(status))
            if not (requests and requests[-1] == entry == ("GET", "/v1/cases/CASE", 200)):
                requests.append(entry)
        elif kind == "cli":
            *words, code = rest
            commands.append((" ".join(words), int(code)))
    return requests, commands


def wait_ready(port: int, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "agegate serve stopped"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("agegate serve was not ready within 60 s")


@pytest.mark.timeout(600)
def test_the_readme_walkthrough_can_be_pasted_twice_in_a_row(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "walkthrough.log"
    shims, clone = stand_ins(tmp_path, log)
    # A fresh clone's shell: none of the suite's own AGEGATE_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGEGATE_")}
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    server_log = tmp_path / "serve.log"
    with server_log.open("wb") as out:
        server = subprocess.Popen(  # the real command: it must get the stop signal itself
            [str(Path(sys.executable).parent / "agegate"), "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(port, server)
        for paste in (1, 2):
            shell = subprocess.run(
                ["bash", "-c", walkthrough_block(port)],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            requests, commands = logged(log)
            log.write_text("")
            context = f"paste {paste}:\n{shell.stdout[-3000:]}\n{shell.stderr[-3000:]}"
            assert shell.returncode == 0, context
            assert requests == EXPECTED_REQUESTS, context
            assert commands == [(c, 0) for c in EXPECTED_COMMANDS], context
            assert "receipt verifies" in shell.stdout, context
            assert "intact" in shell.stdout, context
            assert not (clone / "table.csv").exists() and not (clone / "receipt.json").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
