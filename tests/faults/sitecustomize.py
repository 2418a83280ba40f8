"""Test-only: a disk that fills up on cue, for the full-disk fault test (tests/test_fault_logic.py).

With ``VIEWSEARCH_TEST_ENOSPC=NEEDLE|TRIGGER`` set and this folder on PYTHONPATH, once the file
TRIGGER exists every open for writing of a path containing NEEDLE fails with ENOSPC, as on a full
disk. Python imports ``sitecustomize`` at start-up, so the driver is affected without any hook in
the project's code.
"""

import builtins
import errno
import io
import os

_SPEC = os.environ.get("VIEWSEARCH_TEST_ENOSPC")
if _SPEC:
    _NEEDLE, _TRIGGER = _SPEC.split("|", 1)
    _open = io.open

    def _full_disk_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and _NEEDLE in str(file) and os.path.exists(_TRIGGER):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return _open(file, mode, *args, **kwargs)

    io.open = builtins.open = _full_disk_open
