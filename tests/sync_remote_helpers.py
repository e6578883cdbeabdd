"""The far end of the remote sync tests: `surge server` and the system sshd running `surge agent`,
each with an empty docroot (test modules load the fixture with ``pytest_plugins``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from sshd import FarEnd, surge_server, system_sshd


@pytest.fixture(params=["server", "sshd"])
def far(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FarEnd]:
    docroot = tmp_path / "docroot"
    docroot.mkdir()
    starter = surge_server if request.param == "server" else system_sshd
    with starter(tmp_path / request.param, docroot=docroot) as end:
        yield end
