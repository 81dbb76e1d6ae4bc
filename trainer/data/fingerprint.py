"""A fingerprint of a dataset: the same for the same files, whatever order they were listed in,
and different after any change of content, name, class or split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(entries: Iterable[tuple[str, Path]]) -> str:
    """sha256 over sorted ``(key, content hash)`` pairs; ``key`` names split, class and file."""
    digest = hashlib.sha256()
    for key, path in sorted(entries, key=lambda e: e[0]):
        digest.update(f"{key}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()
