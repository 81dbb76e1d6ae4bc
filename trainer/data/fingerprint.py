"""A fingerprint of a dataset: the same for the same files, whatever order they were listed in,
and different after any change of content, name, class or split."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path

DIGEST_PREFIX = 16  # hex chars of a file's sha256 that record it (64 bits: no chance collisions)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dataset_fingerprint(
    entries: Iterable[tuple[str, Path]], digests: Mapping[Path, str] | None = None
) -> str:
    """sha256 over sorted ``(key, content hash)`` pairs; ``key`` names split, class and file.

    Args:
        entries: ``(key, path)`` pairs.
        digests: the files' sha256 where already computed (each file is then read once for
            the fingerprint and the record of what trained); the others are read here.
    """
    digests = digests or {}
    digest = hashlib.sha256()
    for key, path in sorted(entries, key=lambda e: e[0]):
        sha = digests.get(path) or file_sha256(path)
        digest.update(f"{key}\0{sha}\n".encode())
    return digest.hexdigest()
