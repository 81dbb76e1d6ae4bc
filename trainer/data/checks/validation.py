"""Check a dataset before anything trains on it; report every problem at once, change nothing.

Usage::

    from trainer.data.checks.validation import validate_dataset
    report = validate_dataset("data/boards")          # a Policy decides what fails
    report.failed, [f.reason for f in report.findings]

Each file is read once (``trainer.data.checks.image_stats.inspect_file``); the findings are named with
the file's path and a one-line reason. The tree is walked here rather than through
``scan_image_folder``, which stops at the first empty class: a report must show them all.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.checks.image_stats import EXPECTED_FORMAT, MODE_EFFECT, FileInfo, inspect_file
from trainer.data.checks.policy import Policy
from trainer.data.image_folder import (
    IMAGE_EXTENSIONS,
    SPLITS,
    FolderSplits,
    _stratified_split,
    scan_image_folder,
)
from trainer.errors import DataError


@dataclass
class Entry:
    """One file of the tree: where it is, which split and class it belongs to."""

    path: Path
    split: str
    class_name: str


@dataclass
class Finding:
    """One problem: the check that found it, fail or warn, the file (if one) and why."""

    check: str
    severity: str
    reason: str
    path: str | None = None


@dataclass
class Tree:
    """The files of a dataset tree and what the walk itself found."""

    root: Path
    class_names: list[str]
    images: list[Entry]
    stray: list[Entry] = field(default_factory=list)
    empty: list[Entry] = field(default_factory=list)  # path: the empty class folder
    layout_errors: list[str] = field(default_factory=list)


@dataclass
class ValidationReport:
    """Findings and a summary of a dataset; ``infos`` holds what each file turned out to be."""

    root: str
    findings: list[Finding]
    summary: dict[str, Any]
    infos: list[tuple[Entry, FileInfo]] = field(default_factory=list, repr=False)

    @property
    def failed(self) -> bool:
        return any(f.severity == "fail" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "passed": not self.failed,
            "summary": self.summary,
            "findings": [asdict(f) for f in self.findings],
        }


# ----------------------------------------------------------------------------- the tree
def _visible(paths: Iterable[Path]) -> list[Path]:
    return sorted(p for p in paths if not p.name.startswith("."))


def _walk_classes(folder: Path, split: str | None, tree: Tree) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for class_dir in _visible(p for p in folder.iterdir() if p.is_dir()):
        files = _visible(p for p in class_dir.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        tree.stray.extend(
            Entry(p, split or "", class_dir.name)
            for p in files
            if p.suffix.lower() not in IMAGE_EXTENSIONS
        )
        if images:
            found[class_dir.name] = images
        else:
            tree.empty.append(Entry(class_dir, split or "", class_dir.name))
    return found


def walk_tree(
    root: str | Path,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    train_classes: Sequence[str] | None = None,
) -> Tree:
    """Every file of ``root`` (either layout of ``scan_image_folder``, ``train_classes`` as
    there) with its split and class.

    Splits are those training would use; when the loader would refuse the tree (an empty
    class, say), a best-effort split is made so that the other checks still run.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"data.root: folder '{root}' does not exist; point it at an image tree")
    tree = Tree(root, [], [])
    given = (root / "train").is_dir()
    folders = {s: root / s for s in SPLITS if (root / s).is_dir()} if given else {None: root}
    by_folder = {s: _walk_classes(f, s, tree) for s, f in folders.items()}
    names = sorted(
        {c for found in by_folder.values() for c in found} | {e.class_name for e in tree.empty}
    )
    if not names:
        raise DataError(f"data.root: '{root}' has no class folders; expected <root>/<class>/*.png")
    tree.class_names = names
    try:
        scan = scan_image_folder(root, val_fraction, test_fraction, split_seed, train_classes)
        tree.images = entries_of(scan)
        return tree
    except DataError as err:
        if not tree.empty:  # an empty class is reported by the walk itself
            tree.layout_errors.append(str(err))
    if given:
        tree.images = [
            Entry(p, str(s), c)
            for s, found in by_folder.items()
            for c, ps in found.items()
            for p in ps
        ]
        return tree
    try:  # the split training would make of the classes that have images
        split = _stratified_split(
            by_folder[None], {"val": val_fraction, "test": test_fraction}, split_seed, root
        )
        tree.images = [
            Entry(p, s, c) for s, found in split.items() for c, ps in found.items() for p in ps
        ]
    except DataError:
        tree.images = [Entry(p, "train", c) for c, ps in by_folder[None].items() for p in ps]
    return tree


def entries_of(scan: FolderSplits) -> list[Entry]:
    """The samples of a scan as entries (what the data module will actually load)."""
    return [
        Entry(s.path, split, scan.class_names[s.label])
        for split, samples in scan.splits.items()
        for s in samples
    ]


# ----------------------------------------------------------------------------- reading files
def _workers(setting: int | str, n: int) -> int:
    """auto: every CPU up to 4 from 2,000 files on (the checks run before training, when
    nothing else does; 2 processes measured 1.8x one on 2 cores, README "Data contract")."""
    if setting == "auto":
        cpus = multiprocessing.cpu_count() or 1
        return min(4, cpus) if n >= 2000 else 1
    return max(1, int(setting))


def inspect_all(
    paths: Sequence[Path], workers: int | str = "auto", stats: bool = True, perceptual: bool = False
) -> list[FileInfo]:
    """``inspect_file`` for every path, in order; in ``workers`` processes when that pays."""
    fn = partial(inspect_file, stats=stats, perceptual=perceptual)
    n = _workers(workers, len(paths))
    if n <= 1:
        return [fn(p) for p in paths]
    with multiprocessing.get_context("spawn" if _threads_started() else None).Pool(n) as pool:
        return pool.map(fn, paths, chunksize=max(16, len(paths) // (n * 8)))


def _threads_started() -> bool:
    """Fork after threads (a loaded torch) can deadlock; spawn is safe but slower to start."""
    import threading

    return threading.active_count() > 1


# ----------------------------------------------------------------------------- the checks
def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


class _Findings(list):
    """Findings with the policy's severity; checks the policy turns off are dropped."""

    def __init__(self, policy: Policy, root: Path) -> None:
        super().__init__()
        self.policy, self.root = policy, root

    def add(self, check: str, reason: str, path: Path | None = None) -> None:
        level = self.policy.level(check)
        if level != "off":
            self.append(Finding(check, level, reason, _rel(path, self.root) if path else None))


def _file_checks(out: _Findings, items: list[tuple[Entry, FileInfo]]) -> None:
    for entry, info in items:
        if info.error:
            out.add("unreadable", info.error, entry.path)
            continue
        expected = EXPECTED_FORMAT.get(entry.path.suffix.lower())
        if info.format and expected and info.format != expected:
            out.add(
                "type_mismatch",
                f"named {entry.path.suffix} but the content is {info.format} (read by content; "
                "rename it)",
                entry.path,
            )
        effect = MODE_EFFECT.get(info.mode or "", "converted to RGB by Pillow")
        if effect:
            out.add("mode", f"mode {info.mode}, the loader makes it RGB: {effect}", entry.path)


def _size_checks(out: _Findings, items: list[tuple[Entry, FileInfo]], policy: Policy) -> dict:
    ok = [(e, i) for e, i in items if not i.error]
    if not ok:
        return {}
    w = np.array([i.width for _, i in ok], dtype=np.float64)
    h = np.array([i.height for _, i in ok], dtype=np.float64)
    area, aspect = w * h, w / h
    med_area, med_aspect = float(np.median(area)), float(np.median(aspect))
    for (entry, info), a, r in zip(ok, area, aspect, strict=True):
        if max(a / med_area, med_area / a) > policy.outlier_area_ratio:
            out.add(
                "size_outlier",
                f"{info.width}x{info.height} has {a / med_area:.2g}x the median pixel count",
                entry.path,
            )
        elif max(r / med_aspect, med_aspect / r) > policy.outlier_aspect_ratio:
            out.add(
                "size_outlier",
                f"{info.width}x{info.height}: aspect ratio {r:.2f}, median {med_aspect:.2f}",
                entry.path,
            )
    sides = np.concatenate([w, h])
    spread = float(sides.max() / sides.min())
    sizes = Counter(f"{i.width}x{i.height}" for _, i in ok)
    if spread > policy.max_size_spread:
        out.add(
            "size_spread",
            f"image sides range from {int(sides.min())} to {int(sides.max())} px ({spread:.1f}x, "
            f"{len(sizes)} distinct sizes); all are resized to the model's input size",
        )
    return {
        "width": [int(w.min()), int(w.max())],
        "height": [int(h.min()), int(h.max())],
        "aspect": [round(float(aspect.min()), 3), round(float(aspect.max()), 3)],
        "distinct": len(sizes),
        "most_common": dict(sizes.most_common(5)),
    }


def _duplicate_checks(out: _Findings, items: list[tuple[Entry, FileInfo]], root: Path) -> int:
    groups: dict[str, list[Entry]] = defaultdict(list)
    for entry, info in items:
        if info.nbytes:
            groups[info.sha256].append(entry)
    count = 0
    for group in groups.values():
        if len(group) < 2:
            continue
        count += 1
        first, rest = group[0], group[1:]
        others = ", ".join(f"{_rel(e.path, root)} ({e.split})" for e in rest[:3])
        more = f" and {len(rest) - 3} more" if len(rest) > 3 else ""
        labels = (
            " with different classes (label conflict)"
            if len({e.class_name for e in group}) > 1
            else ""
        )
        if len({e.split for e in group}) > 1:
            out.add(
                "leakage",
                f"same content in {first.split} and {others}{more}{labels}: a test image seen in "
                "training",
                first.path,
            )
        else:
            out.add("duplicate", f"same content as {others}{more}{labels}", first.path)
    return count


def near_duplicate_pairs(hashes: np.ndarray, max_bits: int) -> list[tuple[int, int, int]]:
    """Index pairs (i < j) whose hashes ((n, k) uint64) differ in at most ``max_bits`` bits."""
    pairs = []
    for i in range(len(hashes) - 1):
        dist = np.bitwise_count(hashes[i + 1 :] ^ hashes[i]).sum(axis=1)
        for j in np.flatnonzero(dist <= max_bits):
            pairs.append((i, i + 1 + int(j), int(dist[j])))
    return pairs


def _near_duplicate_checks(
    out: _Findings, items: list[tuple[Entry, FileInfo]], max_bits: int, root: Path
) -> int:
    usable = [(e, i) for e, i in items if i.phash is not None]
    if len(usable) < 2:
        return 0
    hashes = np.frombuffer(b"".join(i.phash for _, i in usable), dtype=np.uint64)
    hashes = hashes.reshape(len(usable), -1)
    pairs = [
        (a, b, d)
        for a, b, d in near_duplicate_pairs(hashes, max_bits)
        if usable[a][1].sha256 != usable[b][1].sha256  # exact copies are reported as such
    ]
    for a, b, d in pairs:
        ea, eb = usable[a][0], usable[b][0]
        if ea.split != eb.split:  # a re-encoded or resized copy of an image of another split
            out.add(
                "leakage",
                f"near copy of {_rel(eb.path, root)} ({eb.split}) in {ea.split} (perceptual "
                f"hashes {d} bits apart): an image of one split seen in another",
                ea.path,
            )
        else:
            out.add(
                "near_duplicate",
                f"looks like {_rel(eb.path, root)} ({eb.split}) (perceptual hashes {d} bits apart)",
                ea.path,
            )
    return len(pairs)


def _class_checks(
    out: _Findings, tree: Tree, counts: dict[str, dict[str, int]], policy: Policy
) -> float:
    for entry in tree.empty:
        out.add(
            "empty_class",
            f"class folder '{entry.class_name}' holds no images ({', '.join(IMAGE_EXTENSIONS)})",
            entry.path,
        )
    for message in tree.layout_errors:
        out.add("layout", message)
    for entry in tree.stray:
        out.add(
            "stray_file",
            f"'{entry.path.suffix or entry.path.name}' is not an image extension: the loader ignores it",
            entry.path,
        )
    train = [n for n in counts.get("train", {}).values()]
    nonzero = [n for n in train if n > 0]
    ratio = float(max(nonzero) / min(nonzero)) if nonzero else 0.0
    if ratio > policy.max_imbalance:
        largest = max(counts["train"], key=counts["train"].get)
        smallest = min((c for c, n in counts["train"].items() if n), key=counts["train"].get)
        out.add(
            "imbalance",
            f"train has {counts['train'][largest]} '{largest}' but {counts['train'][smallest]} "
            f"'{smallest}' ({ratio:.1f}x, above {policy.max_imbalance:g}): training samples the "
            "classes equally (data.sampler=auto, or balanced); judge by balanced accuracy and "
            "the pass/fail figures, not accuracy",
        )
    return ratio


def analyse(
    tree: Tree, policy: Policy | None = None, perceptual: bool = True, stats: bool = True
) -> ValidationReport:
    """Read every image of ``tree`` once and run every check of ``policy`` on the result."""
    policy = policy or Policy()
    start = time.perf_counter()
    perceptual = perceptual and policy.near_duplicate_bits is not None
    # near copies within a split are near_duplicate findings, across splits leakage
    perceptual = perceptual and (
        policy.level("near_duplicate") != "off" or policy.level("leakage") != "off"
    )
    infos = inspect_all([e.path for e in tree.images], policy.workers, stats, perceptual)
    items = list(zip(tree.images, infos, strict=True))
    out = _Findings(policy, tree.root)
    counts = {
        s: dict.fromkeys(tree.class_names, 0) for s in dict.fromkeys(e.split for e in tree.images)
    }
    for entry in tree.images:
        counts[entry.split][entry.class_name] += 1
    imbalance = _class_checks(out, tree, counts, policy)
    _file_checks(out, items)
    sizes = _size_checks(out, items, policy)
    exact = _duplicate_checks(out, items, tree.root)
    near = (
        _near_duplicate_checks(out, items, policy.near_duplicate_bits, tree.root)
        if perceptual
        else None
    )
    seconds = time.perf_counter() - start
    summary = {
        "images": len(items),
        "readable": sum(1 for _, i in items if not i.error),
        "class_names": tree.class_names,
        "counts": counts,
        "imbalance_ratio": round(imbalance, 3),
        "modes": dict(Counter(i.mode for _, i in items if i.mode)),
        "formats": dict(Counter(i.format for _, i in items if i.format)),
        "sizes": sizes,
        "duplicate_groups": exact,
        "near_duplicate_pairs": near,
        "stray_files": len(tree.stray),
        "fail": sum(f.severity == "fail" for f in out),
        "warn": sum(f.severity == "warn" for f in out),
        "seconds": round(seconds, 3),
        "images_per_second": round(len(items) / seconds, 1) if seconds > 0 else None,
    }
    return ValidationReport(str(tree.root), list(out), summary, items)


def validate_dataset(
    root: str | Path,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    split_seed: int = 0,
    policy: Policy | None = None,
    perceptual: bool = True,
    train_classes: Sequence[str] | None = None,
) -> ValidationReport:
    """Scan the image tree at ``root`` and report every finding (see the module docstring).

    Args:
        root: ``root/<class>/*`` or ``root/{train,val,test}/<class>/*``.
        val_fraction, test_fraction, split_seed, train_classes: the split training would make
            (data config).
        policy: what fails and the thresholds (default: ``Policy()``).
        perceptual: compute perceptual hashes for near-duplicates (about a third of the time).

    Raises:
        DataError: ``root`` is missing or has no class folders (nothing to check).
    """
    tree = walk_tree(root, val_fraction, test_fraction, split_seed, train_classes)
    return analyse(tree, policy, perceptual)
