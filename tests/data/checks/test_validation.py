"""The dataset checks: every bad case found and named, the policy, the CLI without tracebacks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.conftest import CONFIGS, ROOT
from tests.helpers.validation_fixtures import BAD_CASES, make_bad_tree
from trainer.data.checks.policy import DriftSettings, Policy
from trainer.data.checks.validation import near_duplicate_pairs, validate_dataset
from trainer.data.pcb import render_board
from trainer.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bad_tree(tmp_path_factory.mktemp("bad") / "tree")


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        str(p): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_every_bad_case_is_found_named_and_explained(bad_tree: Path) -> None:
    before = snapshot(bad_tree)
    report = validate_dataset(bad_tree)
    found = {(f.path, f.check): f.reason for f in report.findings}
    for path, (check, word) in BAD_CASES.items():
        assert (path, check) in found, (path, check, sorted(found))
        reason = found[(path, check)]
        assert word in reason and "\n" not in reason and len(reason) < 200, reason
    assert report.failed
    assert {f.check for f in report.findings if f.severity == "fail"} == {
        "unreadable",
        "leakage",
        "empty_class",
    }
    assert report.summary["modes"] == {"RGB": 21, "CMYK": 1, "I;16": 1, "RGBA": 1}
    assert report.summary["counts"]["test"]["good"] == 4
    assert snapshot(bad_tree) == before  # nothing modified, moved or deleted
    assert json.loads(json.dumps(report.to_dict()))["passed"] is False


def test_generated_boards_pass_without_near_duplicates(pcb_root: Path) -> None:
    report = validate_dataset(pcb_root)
    assert not report.failed
    assert report.findings == []  # distinct boards are not near-duplicates, nothing is stray
    assert report.summary["images"] == 80
    assert report.summary["sizes"]["width"] == [64, 64]
    assert report.summary["imbalance_ratio"] == pytest.approx(19 / 9, abs=1e-3)


def _write(path: Path, array: np.ndarray, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def test_duplicates_near_duplicates_imbalance_and_sizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    scene = np.asarray(render_board(rng, "good", 64)[0])
    for i in range(14):
        _write(tmp_path / "train/good" / f"{i}.png", rng.integers(0, 255, (64, 64, 3), np.uint8))
    _write(tmp_path / "train/good/scene.png", scene)
    _write(tmp_path / "train/bad/scene_copy.png", scene)  # same content, another class
    smaller = np.asarray(Image.fromarray(scene).resize((48, 48)))
    _write(tmp_path / "train/good/scene_small.jpg", smaller, quality=85)  # a near copy
    _write(tmp_path / "train/good/wide.png", rng.integers(0, 255, (64, 200, 3), np.uint8))
    _write(tmp_path / "test/good/0.png", rng.integers(0, 255, (64, 64, 3), np.uint8))
    report = validate_dataset(tmp_path, val_fraction=0)  # all of train/ stays in train
    by = {(f.check, f.path): f for f in report.findings}
    assert "label conflict" in by["duplicate", "train/bad/scene_copy.png"].reason
    near = [f for f in report.findings if f.check == "near_duplicate"]
    assert near and all("scene_small.jpg" in f"{f.path} {f.reason}" for f in near)
    assert all(f.severity == "warn" for f in near)  # within one split: a warning
    assert by["imbalance", None].severity == "warn"  # 17 good vs 1 bad in train
    assert "200x64" in by["size_outlier", "train/good/wide.png"].reason
    assert by["size_outlier", "train/good/wide.png"].severity == "warn"
    assert by["size_spread", None].severity == "warn"
    assert not report.failed  # none of these fail by default


def test_a_re_encoded_test_image_in_train_is_leakage(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for label in ("good", "missing_component"):
            for i in range(n):
                board = np.asarray(render_board(rng, label, 64)[0])
                _write(tmp_path / split / label / f"{i}.png", board)
    seen = Image.open(tmp_path / "test/good/0.png")
    seen.save(tmp_path / "train/good/copy.jpg", quality=90)  # other bytes, the same board
    report = validate_dataset(tmp_path)
    (leak,) = [f for f in report.findings if f.check == "leakage"]
    assert leak.severity == "fail" and report.failed
    assert {leak.path, *leak.reason.split()} >= {"train/good/copy.jpg", "test/good/0.png"}, leak
    assert "\n" not in leak.reason and len(leak.reason) < 200
    assert not any(f.check == "near_duplicate" for f in report.findings)
    # the fast checks before training compare content hashes only: they cannot see it
    fast = validate_dataset(tmp_path, perceptual=False)
    assert not any(f.check == "leakage" for f in fast.findings) and not fast.failed


def test_cross_split_near_duplicates_need_only_the_leakage_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    for split in ("train", "test"):
        for label in ("good", "bad"):
            board = np.asarray(render_board(rng, "good", 64)[0])
            _write(tmp_path / split / label / "0.png", board)
    Image.open(tmp_path / "test/bad/0.png").save(tmp_path / "train/bad/1.jpg", quality=90)
    policy = Policy.from_config({"severity": {"near_duplicate": "off"}})
    report = validate_dataset(tmp_path, policy=policy)
    assert [f.check for f in report.findings if f.severity == "fail"] == ["leakage"]


def test_policy_decides_what_fails(bad_tree: Path) -> None:
    relaxed = Policy.from_config(
        {"severity": {"unreadable": "warn", "leakage": "off", "empty_class": "warn"}}
    )
    report = validate_dataset(bad_tree, policy=relaxed, perceptual=False)
    assert not report.failed
    assert not any(f.check == "leakage" for f in report.findings)
    assert report.summary["near_duplicate_pairs"] is None


@pytest.mark.parametrize(
    "cfg, match",
    [
        ({"severity": {"leakage": "maybe"}}, "validation.severity.leakage"),
        ({"severity": {"blurriness": "warn"}}, "validation.severity.blurriness"),
        ({"max_imbalanse": 3}, "unknown keys"),
        ({"drift": {"alpha": 2}}, "validation.drift.alpha"),
    ],
)
def test_bad_policy_is_a_config_error(cfg: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Policy.from_config(cfg)


def test_policy_defaults_equal_the_config_file() -> None:
    cfg = yaml.safe_load((CONFIGS / "validation" / "default.yaml").read_text())
    assert Policy.from_config(cfg) == Policy()
    assert Policy().drift == DriftSettings()


def test_missing_root_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        validate_dataset(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no class folders"):
        validate_dataset(tmp_path)


def test_near_duplicate_pairs_counts_bits() -> None:
    hashes = np.array([[0, 0], [0b111, 0], [0, 1 << 63], [~np.uint64(0), 0]], dtype=np.uint64)
    assert near_duplicate_pairs(hashes, 3) == [(0, 1, 3), (0, 2, 1)]
    assert near_duplicate_pairs(hashes, 4) == [(0, 1, 3), (0, 2, 1), (1, 2, 4)]


def run_cli(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "250"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        [sys.executable, "scripts/validate_data.py", *args, f"paths.log_dir={tmp / 'logs'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_reports_every_case_and_fails_without_traceback(bad_tree: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = run_cli("data=folder", f"data.root={bad_tree}", f"report={report}", tmp=tmp_path)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]
    assert "Traceback" not in out
    for path in BAD_CASES:
        assert path in result.stdout, path
    assert "FAILED" in result.stdout
    payload = json.loads(report.read_text())
    assert {f["path"] for f in payload["findings"]} >= set(BAD_CASES)


def test_cli_usage_errors_are_one_line(tmp_path: Path) -> None:
    result = run_cli("data=folder", f"data.root={tmp_path / 'nope'}", tmp=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "nope' does not exist" in result.stderr
    (tmp_path / "a").mkdir()
    result = run_cli(f"against={tmp_path / 'no.ckpt'}", f"data.root={tmp_path}", tmp=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "against: '" in result.stderr and "no.ckpt' does not exist" in result.stderr
    for bad, needle in [
        (["data=folder"], "data.root: required"),
        (["data=nope"], "Could not find 'data/nope'"),
        (["data.root=/x", "max_rowz=3"], "max_rowz"),  # a typo: 2, never "a finding fails" (1)
        (["--against", str(tmp_path)], "unrecognized arguments: --against"),
    ]:
        result = run_cli(*bad, tmp=tmp_path)
        assert result.returncode == 2, (bad, result.stdout[-2000:], result.stderr)
        assert needle in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_cli_passes_generated_boards(pcb_root: Path, tmp_path: Path) -> None:
    result = run_cli("data=folder", f"data.root={pcb_root}", "perceptual=false", tmp=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "PASSED" in result.stdout and "Traceback" not in result.stderr
    (report,) = (tmp_path / "logs" / "validate" / "runs").glob("*/validation_report.json")
    assert json.loads(report.read_text())["passed"] is True


def test_a_process_pool_gives_the_same_report(pcb_root: Path) -> None:
    one = validate_dataset(pcb_root, policy=Policy(workers=1))
    two = validate_dataset(pcb_root, policy=Policy(workers=2))
    assert [i for _, i in one.infos] == [i for _, i in two.infos]
    assert one.findings == two.findings
