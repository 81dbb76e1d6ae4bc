"""logger=wandb: an offline run (WANDB_MODE=offline, no network) read back from its .wandb file."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import hydra
import pytest

from trainer.errors import ConfigError
from trainer.utils import wandb_logger
from trainer.utils.entry import user_error_message

BLOCK = 32 * 1024  # the .wandb file is a LevelDB-style log: 32 KiB blocks of 7-byte-headed chunks
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list[Any]:
    """The protobuf records of an offline run's ``.wandb`` file (wandb 0.31 has no Python
    reader of its own: W&B's ``Record`` messages, framed as LevelDB's log format)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7  # ":W&B", magic 0xBEE1, version
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:  # zeros: the rest of the block is unused
            pos += BLOCK - pos % BLOCK
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def _value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    return getattr(item, item.WhichOneof("value"))


def history(records: list[Any]) -> dict[str, list[Any]]:
    """Every value logged under each key, in order (an image's fields, nested, as one dict)."""
    out: dict[str, list[Any]] = {}
    for record in records:
        if record.WhichOneof("record_type") != "history":
            continue
        nested: dict[str, dict[str, Any]] = {}
        for item in record.history.item:
            key, *field = [item.key] if item.key else item.nested_key
            if field:
                nested.setdefault(key, {})["/".join(field)] = _value(item)
            else:
                out.setdefault(key, []).append(_value(item))
        for key, value in nested.items():
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.slow
def test_offline_run_holds_the_metrics_and_the_figures(tiny_cfg, monkeypatch) -> None:
    from trainer.tasks.train import train

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = tiny_cfg("logger=wandb", "+trainer.limit_train_batches=2", "trainer.log_every_n_steps=1")
    metrics = train(cfg)
    import wandb

    assert wandb.run is None  # finished by train(): a sweep's next job gets a run of its own
    wandb.teardown()  # waits until W&B's service has written the run's file
    run = Path(cfg.paths.output_dir)
    (run_file,) = (run / "wandb").glob("offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    logged = history(records)
    test_metrics = {k: v for k, v in metrics.items() if k.startswith("test/") and k in logged}
    assert {"test/acc", "test/loss"} <= set(test_metrics)
    for key, value in test_metrics.items():
        assert logged[key][-1] == pytest.approx(value, rel=1e-6), key
    assert len(logged["train/loss_step"]) == 2  # one per training step
    (run_record,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run_record.job_type == "train" and list(run_record.tags) == list(cfg.tags)
    # the report's figures, as images: the same bytes as <run>/figures/*.png
    figures = sorted((run / "figures").glob("*.png"))
    assert len(figures) == 3  # confusion matrix, ROC and PR, reliability
    for figure in figures:
        (image,) = logged[f"test/{figure.stem}"]
        assert image["_type"] == "images/separated" and image["count"] == 1
        stored = run_file.parent / "files" / image["filenames"][0]
        assert stored.read_bytes() == figure.read_bytes()


def test_bad_settings_are_one_line(tiny_cfg, tmp_path: Path, monkeypatch) -> None:
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no wandb settings: not logged in
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    cases = [
        ([], "not logged in|No API key"),
        (["logger.wandb.offline=true", "logger.wandb.log_model=true"], "cannot upload"),
    ]
    for overrides, needle in cases:
        cfg = tiny_cfg("logger=wandb", *overrides)
        with pytest.raises(Exception) as info:  # Hydra wraps it; the entry point prints one line
            hydra.utils.instantiate(cfg.logger.wandb)
        message = user_error_message(info.value)
        assert message and "logger" in message and len(message.splitlines()) == 1
        assert re.search(needle, message), message
    monkeypatch.setattr(wandb_logger, "wandb_available", lambda: False)
    with pytest.raises(ConfigError, match=r"pip install 'inspection-trainer\[wandb\]'"):
        wandb_logger.wandb_logger(save_dir=str(tmp_path))
