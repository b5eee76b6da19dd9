"""Packed data files: one member of a zip archive, unzipped once beside the archive.

``corpora.fetch`` verifies the archive (sha256); the unzipped member is a cache of it, reused
while its size and CRC-32 match the archive's own record of the member, and written again
(atomically) when they do not.
"""

from __future__ import annotations

import os
import shutil
import zipfile
import zlib
from pathlib import Path

from seqlab.errors import DataError


def unzip_member(archive: Path, member: str) -> Path:
    """``archive.parent / member``: the member unzipped once, then reused while it matches."""
    if not member or "/" in member or "\\" in member or member in (".", ".."):
        raise DataError(f"zip member {member!r} is not a plain file name")
    dest = archive.parent / member
    info = member_info(archive, member)
    if os.path.lexists(dest) and not dest.is_file():
        raise DataError(
            f"{dest} is not a regular file (where {archive.name} unzips); move it aside"
        )
    if dest.is_file() and dest.stat().st_size == info.file_size and crc32_of(dest) == info.CRC:
        return dest
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # processes may race; rename wins
    try:
        with zipfile.ZipFile(archive) as z, z.open(info) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp, dest)
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(
            f"cannot unzip {member} from {archive} into {dest.parent} ({reason}); free some "
            "disk space or delete the archive to download it again"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def member_info(archive: Path, member: str) -> zipfile.ZipInfo:
    """The zip directory's entry for ``member``; one DataError when there is none."""
    try:
        with zipfile.ZipFile(archive) as z:
            names = z.namelist()
            if member in names:
                return z.getinfo(member)
    except (OSError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"{archive} is not a readable zip archive ({reason}); delete it") from None
    shown = ", ".join(repr(n) for n in names[:5]) + (" ..." if len(names) > 5 else "")
    raise DataError(
        f"{archive} has no member {member!r} (it holds {shown or 'nothing'}); it is not the "
        "expected archive: delete it"
    )


def crc32_of(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            crc = zlib.crc32(block, crc)
    return crc
