"""Per-file results of an upload: batched `files` messages when the client asks for them, one
`file` message each for a client that does not (protocol compatibility within the repo)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coordinator.cp import upload as upload_mod
from coordinator.cp.client import run_copy
from coordinator.cp.endpoint import LocalAgent
from coordinator.cp.options import parse_cp_args


def _tree(root: Path, n: int) -> dict[str, bytes]:
    files = {}
    for i in range(n):
        rel = f"d{i % 3}/f{i:03d}.bin"
        data = bytes([i % 251]) * (100 + i * 37)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
        files[rel] = data
    return files


class _CountingAgent:
    """A local agent that records the type of every control message it sends back."""

    def __init__(self, seen: list[str]) -> None:
        self.agent = LocalAgent()
        self.udp_host = self.agent.udp_host
        self.seen = seen

    def send(self, msg: dict[str, Any]) -> None:
        self.agent.send(msg)

    def recv(self, timeout: float | None = None) -> Any:
        msg = self.agent.recv(timeout)
        self.seen.append(msg["type"])
        return msg

    def close(self) -> None:
        self.agent.close()


@pytest.mark.parametrize("batch", [True, False])
def test_every_file_is_reported_batched_or_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    files = _tree(src, 300)
    if not batch:  # an older client: no `batch_results` in its push
        original = upload_mod._push_request

        def old_request(*args: Any) -> dict[str, Any]:
            req = original(*args)
            req.pop("batch_results")
            return req

        monkeypatch.setattr(upload_mod, "_push_request", old_request)
    seen: list[str] = []
    reported: list[str] = []
    opts = parse_cp_args(["-l", "1g", "-d", str(src), str(dst)])
    result = run_copy(opts, endpoint_factory=lambda _o: _CountingAgent(seen),
                      on_file=lambda f, msg: reported.append(f.rel if msg["status"] == "done" else "?"))  # fmt: skip
    assert result.ok
    assert sorted(r.partition("/")[2] for r in reported) == sorted(files)
    assert all(s["type"] == "file" and s["status"] == "done" for s in result.status.values())
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data
    if batch:
        assert "file" not in seen and 1 <= seen.count("files") < 50
    else:
        assert "files" not in seen and seen.count("file") == 300
