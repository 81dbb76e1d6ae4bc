"""Writing a board set to disk: ``root/<split>/<class>/<split>_<index:05d>.png`` and
``root/metadata.json`` (spec, digest, classes, each image's split, label and defect box).

The folder is written whole or not at all (rendered into a temporary sibling, then renamed), so
an interrupted run never leaves a half set that looks complete, and a folder it did not write is
never touched. Every image derives from ``(seed, split, index)`` and the labels from
``(seed, split)``, so the files are identical byte for byte however many workers render them.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from trainer.data.image_folder import SPLITS
from trainer.data.pcb.render import render_board
from trainer.data.pcb.spec import CLASSES, GENERATOR_VERSION, PCBSpec, class_counts
from trainer.utils.atomic import temp_folder_beside


def _labels(spec: PCBSpec, split_id: int, n: int) -> list[str]:
    labels = [c for c, k in class_counts(n, spec.good_fraction).items() for _ in range(k)]
    order = np.random.default_rng([spec.seed, 1000 + split_id]).permutation(n)
    return [labels[i] for i in order]


def _render_job(job: tuple[int, int, int, str, int, str, str]) -> dict:
    seed, split_id, index, label, size, folder, product = job
    img, box = render_board(np.random.default_rng([seed, split_id, index]), label, size, product)
    rel = f"{SPLITS[split_id]}/{label}/{SPLITS[split_id]}_{index:05d}.png"
    img.save(Path(folder) / rel, optimize=False)
    return {
        "path": rel,
        "split": SPLITS[split_id],
        "label": label,
        "bbox": list(box) if box else None,
    }


def _is_complete(root: Path, digest: str) -> bool:
    try:
        meta = json.loads((root / "metadata.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("digest") == digest and all(
        (root / m["path"]).is_file() for m in meta["images"]
    )


def generate_dataset(
    root: str | Path, spec: PCBSpec, progress: bool = True, workers: int | None = None
) -> Path:
    """Render the dataset of `spec` into `root` (atomically), or reuse it if already there.

    Layout: root/<split>/<class>/<split>_<index:05d>.png and root/metadata.json.
    Never overwrites or deletes anything it did not create: a non-empty `root` that is not this
    exact dataset raises FileExistsError. `workers` (default: up to 2 CPUs) renders in parallel;
    the output does not depend on it.
    """
    root = Path(root)
    workers = min(2, os.cpu_count() or 1) if workers is None else workers
    digest = spec.digest()
    if root.exists():
        if _is_complete(root, digest):
            return root
        if not root.is_dir() or any(root.iterdir()):
            raise FileExistsError(
                f"{root} exists and is not the PCB dataset {digest}; pick another folder"
            )
    tmp = temp_folder_beside(root, f"tmp-{digest}")
    try:
        jobs = []
        for split_id, split in enumerate(SPLITS):
            n = getattr(spec, f"num_{split}")
            for c in CLASSES:
                (tmp / split / c).mkdir(parents=True)
            for index, label in enumerate(_labels(spec, split_id, n)):
                jobs.append(
                    (spec.seed, split_id, index, label, spec.image_size, str(tmp), spec.product)
                )
        images = []
        with contextlib.ExitStack() as stack:
            results = map(_render_job, jobs)
            if workers > 1 and len(jobs) >= 256:  # pool start-up only pays off for real sizes
                pool = stack.enter_context(multiprocessing.get_context().Pool(workers))
                results = pool.imap(_render_job, jobs, chunksize=32)  # ordered: deterministic
            if progress:
                from rich.progress import Progress

                bar = stack.enter_context(Progress())
                task = bar.add_task(f"PCB images -> {root}", total=len(jobs))
            for item in results:
                images.append(item)
                if progress:
                    bar.advance(task)
        meta = {
            "generator_version": GENERATOR_VERSION,
            "spec": asdict(spec),
            "digest": digest,
            "classes": list(CLASSES),
            "images": images,
        }
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=1))
        if root.exists():
            root.rmdir()  # empty folder checked above; rmdir fails loudly if that changed
        os.rename(tmp, root)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and _is_complete(root, digest):
            return root  # a concurrent run finished the same dataset first
        raise
    return root
