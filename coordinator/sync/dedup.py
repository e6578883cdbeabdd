"""--dedup: duplicate source files are linked or copied at the target instead of transferred.

A pure pass over a plan (no I/O). Files are duplicates when they have the same full checksum
(`hardlink`, `copy`) or the same source inode (`inode`). Of each group, one file is transferred
(or, better, an unchanged file the target already has stands for the group); every other member
becomes a `dedup` action whose `old_path` names that original. The executor performs dedup
actions after the transfers, so the original is in place first: `hardlink`/`inode` make a hard
link to it at the target, `copy` makes a copy there.

The reference: "Duplicates might still be synchronized, rather than hard linked or copied, if one
of the duplicates has not yet been synchronized on the target" - here an original whose transfer
failed turns its duplicates into errors for this run; the next run sends them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from common.snapshot import Entry

from .decide import Action, Plan, changed

__all__ = ["DEDUP_MODES", "plan_dedup"]

DEDUP_MODES = ("hardlink", "inode", "copy")


def _key(entry: Entry, mode: str) -> object | None:
    if entry.kind != "file":
        return None
    if mode == "inode":
        return (entry.dev, entry.inode) if entry.nlink > 1 and entry.inode else None
    if entry.checksum is None or entry.checksum.split(":")[0].endswith(
        "s"
    ):  # sparse digests do not qualify
        return None
    return (entry.size, entry.checksum)


def plan_dedup(plan: Plan, mode: str | None, source: Mapping[str, Entry],
               snapshot: Mapping[str, Entry]) -> Plan:  # fmt: skip
    """Rewrite the one-way sends of `plan` that duplicate another file (see the module doc).
    `source` is the scanned source tree, `snapshot` the source side's records of the last sync
    (an unchanged file there is already at the target)."""
    if mode is None:
        return plan
    if mode not in DEDUP_MODES:
        raise ValueError(f"--dedup: unknown mode {mode!r}")
    originals: dict[object, str] = {}
    sending = {a.path for a in plan.actions if a.kind == "send"}
    for path, now in sorted(source.items()):
        key = _key(now, mode)
        if key is None or key in originals or path in sending:
            continue
        before = snapshot.get(path)
        if before is not None and not changed(now, before):
            originals[key] = path  # synchronized earlier and unchanged: the target has it
    out: list[Action] = []
    for a in plan.actions:
        key = _key(a.source, mode) if a.kind == "send" and a.source is not None else None
        if key is None:
            out.append(a)
            continue
        original = originals.setdefault(key, a.path)
        if original == a.path:
            out.append(a)
        else:
            out.append(
                dataclasses.replace(
                    a, kind="dedup", old_path=original, reason=f"duplicate of {original}"
                )
            )
    return Plan(out, plan.conflicts)
