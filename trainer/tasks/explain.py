"""``explain(cfg)``: what ``scripts/explain.py`` does, with the config as a plain dict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.data.image_folder import SPLITS, FolderSplits, Sample, scan_image_folder
from trainer.errors import ConfigError, DataError
from trainer.utils.rich_utils import console


def _data(model: Any) -> FolderSplits:
    """The checkpoint's data, split as its run split it."""
    root = Path(model.run_metadata.get("data", {}).get("root", ""))
    if not root.is_dir():
        raise DataError(
            f"images: none given, and the checkpoint's data folder '{root}' is not there; "
            "pass images=FILE_OR_FOLDER"
        )
    data = (model.run_metadata.get("config") or {}).get("data") or {}
    return scan_image_folder(
        root,
        data.get("val_fraction", 0.15),
        data.get("test_fraction", 0.15),
        data.get("split_seed", 0),
        data.get("train_classes"),
    )


def default_samples(scan: FolderSplits, split: str, count: int) -> list[Sample]:
    """``count`` images of ``split``, one class after another (the first of each, then the next)."""
    by_class = [
        [s for s in scan.splits.get(split, []) if s.label == c]
        for c in range(len(scan.class_names))
    ]
    picked: list[Sample] = []
    for rank in range(max((len(b) for b in by_class), default=0)):
        picked += [b[rank] for b in by_class if rank < len(b)]
        if len(picked) >= count:
            break
    return picked[:count]


def explain(cfg: dict[str, Any]) -> dict[str, Any]:
    """Write the pictures (and the pointing game) for ``cfg`` (configs/explain.yaml); a summary.

    An anomaly model's checkpoint works too: its anomaly map takes Grad-CAM's place, in the
    pictures and in the pointing game; it has no worst mistakes of a classifier to show.
    """
    from trainer.checkpoint.read import load_model
    from trainer.data.dataset import ImageSamples, load_images
    from trainer.data.image_folder import image_files
    from trainer.explain.mistakes import write_worst_mistakes
    from trainer.explain.pointing_game import boxed_images, boxes_by_path, input_box, pointing_game
    from trainer.explain.render import grid
    from trainer.explain.report import explain_images

    if cfg["split"] not in SPLITS:
        raise ConfigError(f"split: '{cfg['split']}' is not one of {', '.join(SPLITS)}")
    model = load_model(cfg["ckpt_path"])
    anomaly = getattr(model, "kind", None) == "anomaly"
    out = Path(cfg["out_dir"]).expanduser()
    scan = None
    if cfg.get("images"):
        files = image_files(cfg["images"])
    else:
        scan = _data(model)
        files = [s.path for s in default_samples(scan, cfg["split"], int(cfg["num_images"]))]
        if not files:
            raise DataError(f"split: the checkpoint's data has no '{cfg['split']}' images")
    images = load_images(files, model.preprocessing)
    labels = [
        model.class_names.index(f.parent.name) if f.parent.name in model.class_names else None
        for f in files
    ]
    known: dict = {}
    for root in {f.resolve().parents[2] for f in files if len(f.resolve().parents) > 2}:
        known.update(boxes_by_path(root))
    boxes = [input_box(f, known.get(f.resolve()), model.preprocessing) for f in files]
    explained = explain_images(
        model,
        images,
        [f.name for f in files],
        labels,
        boxes,
        int(cfg["max_stages"]),
        int(cfg["channels"]),
        cfg["cam_layers"],
    )
    (out / "feature_maps").mkdir(parents=True, exist_ok=True)
    for i, (f, e) in enumerate(zip(files, explained, strict=True)):
        e.summary.save(out / f"{i:02d}_{f.stem}.png")
        e.features.save(out / "feature_maps" / f"{i:02d}_{f.stem}.png")
    picture = "anomaly_maps.png" if anomaly else "gradcam.png"
    grid([e.tile for e in explained], ncol=4).save(out / picture)
    result: dict[str, Any] = {"out_dir": str(out), "images": len(files)}

    mistakes = 0 if anomaly else int(cfg["worst_mistakes"])  # Grad-CAM of wrong classes
    if mistakes > 0 or cfg["pointing_game"]:
        scan = scan or _data(model)
    if mistakes > 0 and scan.splits.get(cfg["split"]):
        dataset = ImageSamples(
            scan.splits[cfg["split"]],
            model.preprocessing["resize"],
            interpolation=model.preprocessing["interpolation"],
        )
        rows = write_worst_mistakes(model, dataset, out, mistakes, cfg["cam_layers"])
        result["worst_mistakes"] = len(rows)
    if cfg["pointing_game"]:
        items = boxed_images(scan.root, cfg["split"])
        if not items:
            raise DataError(
                f"pointing_game: '{scan.root}' has no defect boxes in split '{cfg['split']}'"
            )
        game = pointing_game(model, items, float(cfg["pointing_game_margin"]), cfg["cam_layers"])
        (out / "pointing_game.json").write_text(json.dumps(game.as_dict(), indent=1))
        console.print(game.line(), highlight=False, soft_wrap=True)
        result["pointing_game"] = game.as_dict()
    console.print(f"Explanations of {len(files)} images: [bold]{out}[/bold]", soft_wrap=True)
    return result
