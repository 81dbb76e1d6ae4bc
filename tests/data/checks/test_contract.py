"""The data contract: written by training, read back, and new data judged against it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.data.checks.test_validation import run_cli
from trainer.data.checks.contract import (
    CONTRACT_FILE,
    build_contract,
    check_before_training,
    load_contract,
    write_contract,
)
from trainer.data.checks.drift import check_batch, check_dataset_against
from trainer.data.checks.validation import analyse, walk_tree
from trainer.data.datamodule import ImageFolderDataModule
from trainer.data.pcb import PCBSpec, generate_dataset
from trainer.errors import ConfigError, DataError

SEEDS = (1, 2, 3, 4, 5)


def boards(root: Path, seed: int, n: int = 40) -> Path:
    spec = PCBSpec(image_size=64, num_train=n, num_val=0, num_test=0, seed=seed)
    return generate_dataset(root / f"seed{seed}-{n}", spec, progress=False)


def images(root: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted(root.rglob("*.png"))]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("boards")


@pytest.fixture(scope="module")
def contract(cache: Path) -> dict:
    reference = boards(cache, seed=0, n=160)
    return build_contract(analyse(walk_tree(reference, 0, 0), perceptual=False), "fp")


@pytest.fixture(scope="module")
def fresh(cache: Path) -> dict[int, list[Image.Image]]:
    return {seed: images(boards(cache, seed)) for seed in SEEDS}


def scaled(batch: list[Image.Image], factors: tuple[float, float, float]) -> list[Image.Image]:
    out = []
    for img in batch:
        arr = np.asarray(img, dtype=np.float32) * np.asarray(factors, dtype=np.float32)
        out.append(Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)))
    return out


def test_contract_describes_the_training_split(contract: dict) -> None:
    assert contract["class_names"] == [
        "good",
        "misplaced_component",
        "missing_component",
        "solder_bridge",
    ]
    assert contract["counts"]["train"]["good"] == 64
    assert contract["image"] == {
        "modes": {"RGB": 160},
        "formats": {"PNG": 160},
        "loader_mode": "RGB",
        "channels": 3,
        "width": [64, 64],
        "height": [64, 64],
    }
    mean, std = contract["pixel_stats"]["mean"], contract["pixel_stats"]["std"]
    assert len(mean) == len(std) == 3 and mean[1] > mean[0]  # green solder mask
    assert all(0 < s < 128 for s in std)
    assert len(contract["reference"]["values"]) == 6
    assert len(contract["reference"]["values"][0]) == 160


def test_fresh_boards_from_other_seeds_fit(contract: dict, fresh: dict) -> None:
    """The false-alarm rate over five seeds: none of them may be called drift."""
    reports = {seed: check_batch(contract, batch) for seed, batch in fresh.items()}
    alarms = [seed for seed, r in reports.items() if not r.fits]
    assert alarms == [], {s: reports[s].summary() for s in alarms}
    assert all(len(r.tests) == 6 for r in reports.values())


@pytest.mark.parametrize(
    "factors, what",
    [((1.25, 1.25, 1.25), "brighter"), ((0.75, 0.75, 0.75), "darker"), ((1.2, 1.0, 0.8), "cast")],
)
def test_brightness_and_colour_shifts_are_flagged(
    contract: dict, fresh: dict, factors: tuple, what: str
) -> None:
    for seed in SEEDS[:3]:
        report = check_batch(contract, scaled(fresh[seed], factors))
        assert report.verdict == "retrain", (what, seed, report.tests)
        assert "pixel statistics shifted" in report.summary()


def test_resolution_mode_and_arrays(contract: dict, fresh: dict) -> None:
    batch = fresh[1]
    resized = check_batch(contract, [img.resize((96, 96)) for img in batch])
    assert not resized.fits and "96x96" in resized.summary() and "64x64" in resized.summary()
    gray = check_batch(contract, [img.convert("L") for img in batch])
    assert not gray.fits and "'L'" in gray.summary()
    as_arrays = check_batch(contract, [np.asarray(img) for img in batch])
    assert as_arrays.fits and as_arrays.tests == check_batch(contract, batch).tests
    few = check_batch(contract, batch[:3])
    assert few.fits and few.tests == [] and "too few" in few.warnings[0]
    with pytest.raises(ValueError, match="shape"):
        check_batch(contract, [np.zeros((4, 4, 2), np.uint8)])


def test_dataset_with_a_new_class_needs_retraining(
    contract: dict, cache: Path, tmp_path: Path
) -> None:
    new = tmp_path / "new"
    for i, img in enumerate(images(boards(cache, 1))[:24]):
        (new / ("good" if i % 2 else "scratched")).mkdir(parents=True, exist_ok=True)
        img.save(new / ("good" if i % 2 else "scratched") / f"{i}.png")
    report = check_dataset_against(contract, new)
    assert report.verdict == "retrain"
    assert "classes the model does not know: ['scratched']" in report.summary()
    assert any("without new images" in w for w in report.warnings)


def test_contract_from_run_folder_json_and_checkpoint(contract: dict, tmp_path: Path) -> None:
    run = tmp_path / "run"
    path = write_contract(contract, run)
    (run / "checkpoints").mkdir()
    assert load_contract(run) == load_contract(path) == contract
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "trainer_metadata": {"data_contract": contract}}, ckpt)
    assert load_contract(ckpt) == contract
    torch.save({"state_dict": {}, "trainer_metadata": {"class_names": ["a"]}}, ckpt)
    with pytest.raises(DataError, match="holds no data contract"):
        load_contract(ckpt)
    with pytest.raises(DataError, match=f"holds no {CONTRACT_FILE}"):
        load_contract(tmp_path / "run" / "checkpoints")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(DataError, match="not a JSON contract"):
        load_contract(tmp_path / "x.json")


def test_cli_against_says_fits_or_retrain(contract: dict, cache: Path, tmp_path: Path) -> None:
    path = write_contract(contract, tmp_path / "run")
    same = run_cli(f"against={tmp_path / 'run'}", f"data.root={boards(cache, 2)}", tmp=tmp_path)
    assert same.returncode == 0, same.stdout[-2000:] + same.stderr[-2000:]
    assert "fits" in same.stdout and "classes without new images" not in same.stdout
    shifted = tmp_path / "shifted" / "good"
    shifted.mkdir(parents=True)
    for i, img in enumerate(scaled(images(boards(cache, 2)), (1.3, 1.3, 1.3))):
        img.save(shifted / f"{i}.png")
    report = tmp_path / "drift.json"
    other = run_cli(
        f"against={path}", f"data.root={shifted.parent}", f"report={report}", tmp=tmp_path
    )
    assert other.returncode == 1 and "Traceback" not in other.stdout + other.stderr
    assert "retrain" in other.stdout
    assert json.loads(report.read_text())["verdict"] == "retrain"


def _leaky_tree(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name in ("good", "bad"):
            (root / split / name).mkdir(parents=True)
            for i in range(4):
                pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    leaked = (root / "train/good/0.png").read_bytes()
    (root / "test/good/leaked.png").write_bytes(leaked)
    return root


def test_before_training_strict_stops_warn_logs_off_skips(tmp_path: Path, caplog) -> None:
    dm = ImageFolderDataModule(_leaky_tree(tmp_path / "leaky"), val_fraction=0.25)
    with pytest.raises(DataError, match=r"data.validate=strict: 1 problem.*train/good/0.png"):
        check_before_training(dm, "strict", "fp")
    contract = check_before_training(dm, "warn", "fp")
    assert contract["fingerprint"] == "fp" and contract["validation"]["fail"] == 1
    assert "leakage" in caplog.text
    assert check_before_training(dm, "off", "fp") is None
    with pytest.raises(ConfigError, match="data.validate: 'sometimes'"):
        check_before_training(dm, "sometimes", "fp")


def test_training_writes_the_contract_into_run_folder_and_checkpoint(tiny_cfg) -> None:
    from trainer.checkpoint.read import checkpoint_metadata
    from trainer.tasks.train import train

    cfg = tiny_cfg("test=false", "~logger")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    written = json.loads((run / CONTRACT_FILE).read_text())
    assert written["validation"]["mode"] == "warn"  # data=pcb's default
    assert written["counts"]["train"] == {
        "good": 19,
        "misplaced_component": 10,
        "missing_component": 10,
        "solder_bridge": 9,
    }
    ckpt = sorted((run / "checkpoints").glob("*.ckpt"))[0]
    meta = checkpoint_metadata(ckpt)
    assert meta["data_contract"] == written
    assert written["fingerprint"] == meta["data"]["fingerprint"]


def test_strict_folder_training_stops_before_the_model(tiny_cfg, tmp_path: Path) -> None:
    root = _leaky_tree(tmp_path / "leaky")
    from trainer.tasks.train import train

    cfg = tiny_cfg("data=folder", f"data.root={root}", "data.val_fraction=0.25")
    with pytest.raises(DataError, match="data.validate=strict"):
        train(cfg)
    assert not (Path(cfg.paths.output_dir) / CONTRACT_FILE).exists()
