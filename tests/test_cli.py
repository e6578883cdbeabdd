"""The `surge` command's own surface: version, help, unknown commands."""

from __future__ import annotations

import subprocess
import sys

from common import __version__


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "coordinator.cli", *args], capture_output=True, text=True, timeout=60)


def test_version() -> None:
    res = run("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"surge {__version__}"


def test_help_lists_commands() -> None:
    res = run("-h")
    assert res.returncode == 0 and "cp" in res.stdout and "agent" in res.stdout


def test_cp_help_documents_ascp_options() -> None:
    res = run("cp", "-h")
    assert res.returncode == 0
    for option in ("-l", "-m", "--policy", "-c", "-k", "--overwrite", "-Z", "-X", "-O", "--file-checksum"):
        assert option in res.stdout, option


def test_unknown_command_is_usage_error() -> None:
    res = run("teleport")
    assert res.returncode == 2 and "unknown command 'teleport'" in res.stderr


def test_no_arguments_prints_usage_and_fails() -> None:
    res = run()
    assert res.returncode == 2 and "usage: surge" in res.stdout
