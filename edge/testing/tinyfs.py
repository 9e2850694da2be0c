"""A real small file system for storage-fault tests: a size-limited tmpfs that fills up or goes read-only.

Mounting needs root (CAP_SYS_ADMIN); where it is not available ``TinyFs.mount`` raises
``TinyFsUnavailable`` with the reason, and tests skip with it (the same faults are reproduced at
the store boundary by ``edge.state_faults`` everywhere). ``fill()`` writes a filler file until
the file system says ENOSPC; ``free()`` removes it; ``read_only(True)`` remounts it read-only (EROFS).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

FILLER = ".filler"


class TinyFsUnavailable(RuntimeError):  # noqa: N818 - reads as what it is
    """This machine cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN in this container)."""


class TinyFs:
    def __init__(self, root: Path, size_kb: int) -> None:
        self.root = root
        self.size_kb = size_kb
        self.mounted = False

    def mount(self) -> None:
        if os.geteuid() != 0:
            raise TinyFsUnavailable("mounting a tmpfs needs root; the injected faults cover this case")
        self.root.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size_kb}k,mode=0700", "tmpfs", str(self.root)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise TinyFsUnavailable(f"mount failed: {done.stderr.strip() or done.returncode}")
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True, check=False)
            self.mounted = False

    def fill(self, leave: int = 0) -> int:
        """Write a filler file until ENOSPC (then give back ``leave`` bytes); returns bytes written."""
        path = self.root / FILLER
        written = 0
        chunk = b"\0" * 4096
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    written += os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
            if leave:
                os.ftruncate(fd, max(0, written - leave))
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        (self.root / FILLER).unlink(missing_ok=True)

    def read_only(self, on: bool) -> None:
        mode = "ro" if on else "rw"
        subprocess.run(["mount", "-o", f"remount,{mode}", str(self.root)], check=True, capture_output=True)


@contextlib.contextmanager
def tiny_fs(root: Path, size_kb: int = 1024) -> Iterator[TinyFs]:
    fs = TinyFs(root, size_kb)
    fs.mount()
    try:
        yield fs
    finally:
        with contextlib.suppress(Exception):
            fs.read_only(False)
        fs.unmount()
