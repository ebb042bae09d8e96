"""Files that are never half-written: every output goes to a temporary file and is renamed."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence


def read_regular(path: Path, limit: int) -> bytes:
    """A regular file's bytes, at most ``limit`` of them: a FIFO (whose open blocks), a device such
    as /dev/zero (which never ends) or a file over the limit raises ``ValueError`` before reading on."""
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file")
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit >> 20} MiB")
    return data


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never half.

    The rename is atomic on POSIX and Windows file systems when the temporary file sits in the
    same directory, which is why it is created there; an interrupted write leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if isinstance(data, bytes) else "w") as f:
            f.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename is None:  # a write that failed (a full disk) names no file
            raise OSError(e.errno, e.strerror or str(e), str(path)) from e
        raise


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A CSV file with a header, atomically; keys of a row outside ``columns`` are left out."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buf.getvalue())


def write_json(path: Path, doc: Any) -> None:
    """Indented JSON, atomically (values JSON does not know are written as their ``str``)."""
    write_atomic(path, json.dumps(doc, indent=2, default=str) + "\n")
