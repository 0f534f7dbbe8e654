"""Process helpers shared by the server's workers and the batch command."""
from __future__ import annotations

import ctypes
import os
import signal


def die_with(parent: int, sig: int = signal.SIGKILL) -> None:
    """End this forked process with `parent` (Linux: the parent-death signal), so a killed
    parent leaves nothing serving or deciding behind it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before the signal was set
        os._exit(1)
