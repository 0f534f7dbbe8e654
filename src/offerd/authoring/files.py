"""Files the authoring commands write (a reformatted catalog file, a JUnit report): whole or
not at all, with the mode the file had, or a new file's usual mode."""
from __future__ import annotations

import os
import stat
import tempfile


def write_atomically(path: str, data: bytes) -> None:
    """Replace the file by a renamed temporary file of the same folder: a reader sees the old
    content or the new, never part of it. A symbolic link stays one; its target is rewritten."""
    real = os.path.realpath(path)
    mode = _mode(real)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(real), prefix="." + os.path.basename(real) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # not mkstemp's 0600, which others (a CI's other users) cannot read
        os.replace(tmp, real)
    except BaseException:
        os.unlink(tmp)
        raise


def _mode(path: str) -> int:
    """The file's mode, or a new file's: 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask
