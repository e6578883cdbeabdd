"""Ownership and extended attributes of synchronized files, applied at the destination after a
file is committed (or linked/copied by --dedup):

* `-u`/`-j`: the source file's uid/gid; `--write-uid`/`--write-gid`: a fixed owner (a name is
  looked up on the host that writes). As the reference says, a failure to set the owner is
  logged, not an error (the file itself is synchronized).
* `--preserve-xattrs` / `--remote-preserve-xattrs`: `native` copies the extended attributes,
  `metafile` writes them into `<name>.aspera-meta` beside the file. Each side has its own format:
  `--preserve-xattrs` for the local directory, `--remote-preserve-xattrs` (default: the same) for
  the remote one.
* `--preserve-acls=metafile`: on Linux the POSIX ACLs are the `system.posix_acl_*` attributes;
  they go into the metafile (native ACLs are refused on Linux by the option checks).
* `--store-metadata-records`: the source's attributes are kept in the snapshot record's `meta`.

A metafile is JSON, `{"version": 1, "xattrs": {name: base64}, "acls": {name: base64}}` - ours,
not IBM's undocumented layout; metafiles are never synchronized as files themselves.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from common.snapshot import Entry

from .sides import SideError

__all__ = ["ACL_NAMES", "METAFILE_SUFFIX", "MetadataPolicy"]

log = logging.getLogger("surge.sync")

METAFILE_SUFFIX = ".aspera-meta"
ACL_NAMES = ("system.posix_acl_access", "system.posix_acl_default")


def _b64(attrs: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode() for k, v in sorted(attrs.items())}


class MetadataPolicy:
    """What to carry besides the data, decided once per sync from the options."""

    def __init__(self, opts: Any, local: Any, remote: Any) -> None:
        self.opts = opts
        self.local, self.remote = local, remote
        self.formats = {  # side -> (xattrs format, ACLs format)
            id(local): (opts.preserve_xattrs, opts.preserve_acls),
            id(remote): (opts.remote_preserve_xattrs or opts.preserve_xattrs,
                         opts.remote_preserve_acls or opts.preserve_acls),
        }  # fmt: skip
        self.owner = bool(
            opts.preserve_uid or opts.preserve_gid or opts.write_uid or opts.write_gid
        )
        self.attrs = any(f != "none" for pair in self.formats.values() for f in pair)
        self.active = self.owner or self.attrs or opts.store_metadata_records

    def read(self, side: Any, path: str) -> tuple[dict[str, bytes], dict[str, bytes]]:
        """(xattrs, ACLs) of a source file, from its native attributes and its metafile."""
        xattr_fmt, acl_fmt = self.formats[id(side)]
        native = side.get_xattrs(path)
        xattrs = {k: v for k, v in native.items() if k not in ACL_NAMES}
        acls = {k: v for k, v in native.items() if k in ACL_NAMES}
        if "metafile" in (xattr_fmt, acl_fmt):
            try:
                meta = json.loads(side.read_small(path + METAFILE_SUFFIX))
            except (SideError, ValueError):
                meta = {}
            for name, into in (("xattrs", xattrs), ("acls", acls)):
                for k, v in (meta.get(name) or {}).items():
                    into.setdefault(k, base64.b64decode(v))
        return xattrs, acls

    def apply(self, source_side: Any, dest_side: Any, path: str, entry: Entry) -> str | None:
        """Carry owner and attributes of `entry` (at `path` on `source_side`) to `dest_side`.
        Returns the JSON for the snapshot's meta with --store-metadata-records, else None."""
        if not self.active:
            return None
        if self.owner:
            self._owner(dest_side, path, entry)
        if not (self.attrs or self.opts.store_metadata_records):
            return None
        try:
            xattrs, acls = self.read(source_side, path)
        except SideError as exc:
            log.warning("%s: cannot read extended attributes: %s", path, exc)
            return None
        xattr_fmt, acl_fmt = self.formats[id(dest_side)]
        native = {
            **(xattrs if xattr_fmt == "native" else {}),
            **(acls if xattr_fmt == "native" else {}),
        }
        meta: dict[str, Any] = {}
        if xattr_fmt == "metafile":
            meta["xattrs"] = _b64(xattrs)
        if acl_fmt == "metafile":
            meta["acls"] = _b64(acls)
        try:
            if native:
                dest_side.set_xattrs(path, native)
            if meta:
                dest_side.write_small(
                    path + METAFILE_SUFFIX, json.dumps({"version": 1, **meta}).encode()
                )
        except SideError as exc:
            raise SideError(f"--preserve-xattrs: {exc}") from None
        if self.opts.store_metadata_records and (xattrs or acls):
            return json.dumps({"xattrs": _b64(xattrs), "acls": _b64(acls)}, separators=(",", ":"))
        return None

    def _owner(self, side: Any, path: str, entry: Entry) -> None:
        o = self.opts
        user: int | str | None = (
            o.write_uid
            if o.write_uid is not None
            else (entry.uid if o.preserve_uid and entry.uid >= 0 else None)
        )
        group: int | str | None = (
            o.write_gid
            if o.write_gid is not None
            else (entry.gid if o.preserve_gid and entry.gid >= 0 else None)
        )
        if user is None and group is None:
            return
        try:
            side.chown(path, user, group)
        except SideError as exc:  # the reference: logged, not an error
            log.warning("%s: cannot set the owner: %s", path, exc)
