"""The one way this project rewrites a file: a reader sees the old file or the new one, never half.

    from trainer.utils.atomic import atomic_write
    atomic_write(path, "text")                          # or bytes
    atomic_write(path, lambda f: torch.save(obj, f))    # a function writing to a binary file

The bytes go to a temporary file in the destination folder (so the swap is a rename, never a
copy across file systems), are flushed and fsynced, and ``os.replace`` swaps it in; then the
folder is fsynced so that the rename itself survives a power cut. The file keeps the mode of the
one it replaces; a new file gets what a plain ``open()`` would give (0o666 less the umask), where
``tempfile.mkstemp``'s 0o600 would stick to it. A failure at any point removes the temporary file
and leaves the original as it was. Checkpoints (``trainer.checkpoint.atomic_io``), the operating point
written into the best checkpoint, model cards and bundle files all go through here.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Content = bytes | str | Callable[[BinaryIO], object]


def atomic_write(path: str | Path, data: Content, mode: int | None = None) -> Path:
    """Write ``data`` to ``path`` atomically and durably; return the path.

    Args:
        path: the file to create or replace; its folder must exist.
        data: bytes, text (UTF-8), or a function that writes to the open binary file.
        mode: permission bits of the result; default: the replaced file's, else the umask's.
    """
    path = Path(path)
    if mode is None:
        with contextlib.suppress(FileNotFoundError):
            mode = stat.S_IMODE(os.stat(path).st_mode)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _create_temp(path: Path) -> tuple[int, str]:
    """An exclusive new ``.<name>.<random>.tmp`` beside ``path``, created with mode 0o666.

    Not ``tempfile.mkstemp``: it creates 0o600. ``os.open(..., 0o666)`` lets the kernel apply the
    umask (and a folder's default ACL) exactly as for any new file, without reading the
    process-wide umask (``os.umask`` can only be read by setting it, a race with other threads).
    The ``.*.tmp`` name is what ``trainer.checkpoint.resume`` sweeps up after a kill.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp"))
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


def temp_folder_beside(path: Path, tag: str = "tmp") -> Path:
    """A new empty ``.<name>.<tag>-<random>`` folder beside ``path``, to fill and then rename
    into place (a bundle, a generated dataset). Created with the mode a plain ``mkdir`` gives
    (0o777 less the umask): ``tempfile.mkdtemp``'s 0o700 would stick after the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{tag}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"no free temporary folder name beside {path}")


def fsync_dir(folder: str | Path) -> None:
    """Make renames in ``folder`` durable (a no-op where directories cannot be opened or synced)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a file another library wrote (an ONNX export, say) to disk before it is moved."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
