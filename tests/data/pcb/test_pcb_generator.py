"""Tests for the procedural PCB dataset: determinism, class balance, boxes, safety, CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from trainer.data.image_folder import SPLITS
from trainer.data.pcb import (
    CLASSES,
    PRODUCTS,
    PCBSpec,
    class_counts,
    generate_dataset,
    generated_folder,
    render_board,
)
from trainer.data.pcb.render import _render

REPO = Path(__file__).resolve().parents[3]
TINY = PCBSpec(image_size=48, num_train=14, num_val=6, num_test=5, good_fraction=0.4, seed=3)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_dataset(tmp_path_factory.mktemp("pcb") / "ds", TINY, progress=False)


def test_deterministic_and_seed_sensitive(tiny: Path, tmp_path: Path) -> None:
    again = generate_dataset(tmp_path / "again", TINY, progress=False, workers=1)
    assert _files(again) == _files(tiny)
    other = generate_dataset(tmp_path / "other", replace(TINY, seed=4), False)
    assert _files(other) != _files(tiny)
    assert PCBSpec(seed=4).digest() != PCBSpec().digest() == PCBSpec().digest()


def test_parallel_rendering_matches_serial(tmp_path: Path) -> None:
    spec = PCBSpec(image_size=32, num_train=300, num_val=0, num_test=0, seed=1)
    serial = generate_dataset(tmp_path / "serial", spec, progress=False, workers=1)
    pooled = generate_dataset(tmp_path / "pooled", spec, progress=False, workers=2)
    assert _files(serial) == _files(pooled)


def test_exact_class_counts_per_split(tiny: Path) -> None:
    meta = json.loads((tiny / "metadata.json").read_text())
    assert meta["classes"] == list(CLASSES) and meta["digest"] == TINY.digest()
    counts = Counter((m["split"], m["label"]) for m in meta["images"])
    for split in SPLITS:
        expected = class_counts(getattr(TINY, f"num_{split}"), TINY.good_fraction)
        assert {c: counts[(split, c)] for c in CLASSES} == expected
        assert all(expected[c] > 0 for c in CLASSES)
        on_disk = {c: len(list((tiny / split / c).glob("*.png"))) for c in CLASSES}
        assert on_disk == expected


def test_metadata_paths_and_boxes(tiny: Path) -> None:
    from PIL import Image

    for m in json.loads((tiny / "metadata.json").read_text())["images"]:
        path = tiny / m["path"]
        assert path.is_file() and m["path"] == f"{m['split']}/{m['label']}/{path.name}"
        with Image.open(path) as img:
            assert img.size == (TINY.image_size, TINY.image_size) and img.mode == "RGB"
        if m["label"] == "good":
            assert m["bbox"] is None
        else:
            x0, y0, x1, y1 = m["bbox"]
            assert 0 <= x0 < x1 <= TINY.image_size and 0 <= y0 < y1 <= TINY.image_size


def test_imbalanced_fraction() -> None:
    counts = class_counts(1000, 0.95)
    assert counts["good"] == 950 and sum(counts.values()) == 1000
    assert sorted(counts[c] for c in CLASSES[1:]) == [16, 17, 17]


def test_reuse_and_refuse_foreign_folder(tiny: Path, tmp_path: Path) -> None:
    before = (tiny / "metadata.json").stat().st_mtime_ns
    assert generate_dataset(tiny, TINY, progress=False) == tiny
    assert (tiny / "metadata.json").stat().st_mtime_ns == before
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        generate_dataset(user, TINY, progress=False)
    assert _files(user) == {"notes.txt": b"precious"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp folder left behind
    with pytest.raises(FileExistsError):  # a dataset of another spec is not overwritten either
        generate_dataset(tiny, replace(TINY, seed=9), progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [{"image_size": 16}, {"num_val": -1}, {"good_fraction": 1.5}, {"good_fraction": -0.1}],
)
def test_bad_spec_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        PCBSpec(**kwargs)


@pytest.mark.parametrize(
    "name, n, gf, need",
    [
        ("num_test", 0, 0.4, 5),
        ("num_val", 2, 0.4, 5),
        ("num_train", 3, 0.4, 5),
        ("num_test", 50, 0.95, 51),  # the heavily imbalanced line: 48 good, one of each defect
    ],
)
def test_splits_too_small_for_every_class_are_refused_up_front(
    name: str, n: int, gf: float, need: int, tmp_path: Path
) -> None:
    from trainer.data.datamodule import PCBDataModule
    from trainer.errors import ConfigError

    small = {name: n}
    generator = {"num_train": 60, "num_val": 60, "num_test": 60, "good_fraction": gf, **small}
    with pytest.raises(ConfigError) as err:
        PCBDataModule(root=tmp_path, generator=generator)
    message = str(err.value)
    assert message.startswith(f"data.generator.{name}={n}:") and "\n" not in message
    assert f"at least {need}" in message and f"data.generator.{name}={need}" in message
    assert not any(tmp_path.iterdir()), "refused before anything was generated"
    counts = class_counts(need, gf)
    assert min(counts.values()) == 1 and min(class_counts(need - 1, gf).values()) == 0
    PCBDataModule(root=tmp_path, generator={**generator, name: need})  # the minimum is enough


@pytest.mark.parametrize("gf", [0.0, 1.0])
def test_a_good_fraction_that_empties_a_class_is_refused(gf: float, tmp_path: Path) -> None:
    from trainer.data.datamodule import PCBDataModule
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^data\.generator\.good_fraction=") as err:
        PCBDataModule(root=tmp_path, generator={"good_fraction": gf})
    assert "\n" not in str(err.value)


def _make(*overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    script = str(REPO / "scripts/make_pcb_dataset.py")
    return subprocess.run(
        [sys.executable, script, *overrides], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_bad_argument_exits_2(tmp_path: Path) -> None:
    for bad, needle in [
        (["data.generator.good_fraction=2"], "good_fraction"),
        (["data.generator.num_tran=8"], "num_tran"),
        (["--num-train", "8"], "unrecognized arguments: --num-train"),
        (["workers=0"], "workers: '0'"),
    ]:
        proc = _make(f"out={tmp_path / 'd'}", *bad, cwd=tmp_path)
        assert proc.returncode == 2, (bad, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing generated, no run folder, no log file


def test_cli_generates_where_data_pcb_finds_it(tmp_path: Path) -> None:
    sizes = [f"data.generator.{k}={v}" for k, v in asdict(TINY).items()]
    proc = _make(f"paths.data_dir={tmp_path / 'data'}", "progress=false", *sizes, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    root = generated_folder(tmp_path / "data" / "pcb", TINY)  # data=pcb's root: data_dir/pcb
    assert f"PCB dataset {TINY.digest()}" in proc.stdout
    meta = json.loads((root / "metadata.json").read_text())
    assert meta["digest"] == TINY.digest() and len(meta["images"]) == 25
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    again = _make(f"out={root}", *sizes, cwd=tmp_path)  # the same set: reused, not refused
    assert again.returncode == 0, again.stderr
    other = [s.replace("seed=3", "seed=4") for s in sizes]  # TINY's seed is 3
    taken = _make(f"out={root}", *other, cwd=tmp_path)  # another set: never written into this one
    assert taken.returncode == 2 and "is not the PCB dataset" in taken.stderr


@pytest.mark.parametrize("product", sorted(PRODUCTS))
@pytest.mark.parametrize("label", CLASSES[1:])
def test_defect_is_visible_inside_its_box(label: str, product: str) -> None:
    for index in range(6):
        seed = [11, CLASSES.index(label), index]
        img, box = _render(np.random.default_rng(seed), label, 128, product=product)
        clean, _ = _render(
            np.random.default_rng(seed), label, 128, with_defect=False, product=product
        )
        again = render_board(np.random.default_rng(seed), label, 128, product)[0]
        assert img.tobytes() == again.tobytes()
        diff = np.abs(np.asarray(img, float) - np.asarray(clean, float)).sum(-1)
        inside = np.zeros(diff.shape, bool)
        inside[box[1] : box[3], box[0] : box[2]] = True
        assert diff[inside].mean() > 15, (label, index, diff[inside].mean())
        assert diff[~inside].mean() < 1.0, (label, index, diff[~inside].mean())


# sha256 of these 8 boards and their boxes as the generator drew them before products existed
# (computed with that commit's code, 58c2361): product a must stay that board, so that every set
# made before keeps its images under its old name.
BEFORE_PRODUCTS = "2d6da330bd906f8c18ec4fa2170134e94cb8ac85aecd6571c08f15c91562a34b"


def test_product_a_is_the_board_of_before() -> None:
    digest = hashlib.sha256()
    for i, label in enumerate(CLASSES * 2):
        img, box = render_board(np.random.default_rng([0, 2, i]), label, 64)
        digest.update(img.tobytes())
        digest.update(repr(box).encode())
    assert digest.hexdigest() == BEFORE_PRODUCTS
    assert PCBSpec().digest() == "79e06ee18a" == PCBSpec(product="a").digest()


def test_products_are_other_boards_with_the_same_classes() -> None:
    boards = {
        product: np.asarray(render_board(np.random.default_rng([5, 0, 1]), "good", 64, product)[0])
        for product in PRODUCTS
    }
    means = {product: board.reshape(-1, 3).mean(0) for product, board in boards.items()}
    assert means["b"][2] > means["b"][1] and means["c"][0] > means["c"][1]  # blue, red masks
    assert means["a"][1] > means["a"][2]  # green
    assert len({PCBSpec(product=p).digest() for p in PRODUCTS}) == len(PRODUCTS)


def test_an_unknown_product_is_one_line(tmp_path) -> None:
    from trainer.data.datamodule import PCBDataModule
    from trainer.errors import ConfigError

    with pytest.raises(ConfigError, match="data.generator: product must be one of a, b, c"):
        PCBDataModule(generator={"product": "z"}, root=tmp_path)
