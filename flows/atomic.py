"""Atomic file writes: whoever reads the file sees the old content or the new, never half.

Every file paperdigest writes outside the warehouse goes through here: outbox messages, the
subscribers file and readers' libraries, ranking models, and the archive site's pages.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_atomic(
    path: Path, content: bytes, *, durable: bool = False, mode: int | None = None
) -> None:
    """Write `content` to `path` through a temporary file renamed over it.

    `durable` flushes the bytes to disk before the rename (for files that are the only copy of
    what they hold); `mode` sets the permissions (a temporary file is private by default).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
