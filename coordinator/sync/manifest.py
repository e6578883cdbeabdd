"""--file-manifest-path: after a sync, the files it transferred (status SYNCHRONIZED, either
direction; not the directories it made), one a line, in a text manifest in that directory (async hands the directory to its
ascp, which writes its TEXT manifests there). The file is written under a temporary name ending
in `.aspera-inprogress` and renamed when complete, as ascp's manifests are."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

__all__ = ["INPROGRESS_SUFFIX", "write_manifest"]

INPROGRESS_SUFFIX = ".aspera-inprogress"


def write_manifest(directory: str, pair: str, lines: Iterable[tuple[str, str]], local_root: str) -> str:
    """Write the manifest of one run (`lines`: (path, status); `local_root` tells directories
    from files, both sides having the same after a sync); returns its path."""
    os.makedirs(directory, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = os.path.join(directory, f"surge-sync-{pair}-{stamp}-{os.getpid()}-manifest.txt")
    tmp = name + INPROGRESS_SUFFIX
    with open(tmp, "w", encoding="utf-8") as out:
        for path, status in lines:
            if status == "SYNCHRONIZED" and not os.path.isdir(os.path.join(local_root, path)):
                out.write(f"/{path}\n")
    os.replace(tmp, name)
    return name
