"""Bookkeeping tasks: a batch of far-end operations (mkdir, symlink, rename, attrs, delete) run
through the control channel, one event per operation.

An operation is a dict: ``{"op": "mkdir", "path": P}``, ``{"op": "symlink", "path": P,
"target": T}``, ``{"op": "rename", "path": OLD, "to": NEW}``, ``{"op": "attrs", "path": P,
"mtime_ns": N|None, "mode": M|None}``, ``{"op": "delete", "path": P, "keep_dir": D|None}``;
paths are relative to the remote directory. Each is idempotent on redelivery: a mkdir of an
existing directory and a delete of a missing path succeed, and a rename whose source is gone but
whose destination exists is taken as done. The event of an operation carries ``"op"`` and, for
everything but a delete, the far end's attributes of the result.
"""

from __future__ import annotations

from typing import Any

from common.cluster.jobs import JobStore
from common.cluster.schema import TaskSpec
from coordinator.sync.sides import RemoteSide, SideError

from .farends import FarEnds, far_end
from .outcome import Fatal, Outcome, event, options_of, remote_attrs

__all__ = ["OPS", "run_ops"]

OPS = ("mkdir", "symlink", "rename", "attrs", "delete")


def _one(side: RemoteSide, op: dict[str, Any]) -> str:
    """Run one operation; returns the path whose attributes describe the result."""
    kind, path = op["op"], str(op["path"])
    if kind == "mkdir":
        side.mkdir(path)  # the far end's mkdir is `makedirs(exist_ok=True)`
    elif kind == "symlink":
        side.symlink(path, str(op["target"]))
    elif kind == "rename":
        to = str(op["to"])
        if side.stat(path) is not None or side.stat(to) is None:
            side.rename(path, to)
        return to
    elif kind == "attrs":
        side.set_attrs(path, op.get("mtime_ns"), op.get("mode"))
    elif kind == "delete" and side.stat(path) is not None:
        side.delete(path, op.get("keep_dir"))
    return path


def run_ops(spec: TaskSpec, job_options: dict[str, Any], store: JobStore, worker: str,
            far: FarEnds | None = None) -> Outcome:  # fmt: skip
    """Run a bookkeeping task's operations in order; a failed one is an event, not a retry."""
    bad = [op for op in spec.ops if op.get("op") not in OPS or not op.get("path")]
    if bad:
        raise Fatal(f"task {spec.task!r}: malformed operation {bad[0]!r}")
    opts = options_of(job_options)
    out = Outcome()
    with far_end(opts, far) as endpoint:
        side = RemoteSide(endpoint, opts.remote_dir)
        for op in spec.ops:
            try:
                where = _one(side, op)
                attrs = None if op["op"] == "delete" else remote_attrs(side, where)
                ev = event(spec.task, where, "done", 0, attrs)
            except SideError as exc:
                ev = event(spec.task, str(op["path"]), "failed", error=str(exc))
            ev["op"] = op["op"]
            out.events.append(ev)
    return out
