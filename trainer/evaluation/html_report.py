"""``report.html``: the evaluation as one page for people who do not read JSON.

Written beside metrics.json by ``eval.py`` and at the end of training (``report_html: true`` in
configs/evaluation/default.yaml). One self-contained file that reads on a phone: CSS and pictures
inline (PNG data URIs), nothing fetched from the network (its Content-Security-Policy forbids
it), no script. Every text that comes from data or config is escaped. In this order:

    verdict         gate passed / failed / none, defect recall and false alarms in counts
    figures         confusion matrix, ROC and PR curves, reliability diagram (write_report's)
    per class       precision, recall, F1, support, AUROC
    worst mistakes  the most confident errors of the split with their Grad-CAM
    history         the key metric over time for this data fingerprint (the run history)
    lineage         commit, data fingerprint, config digest, parent checkpoint, command

    write_html(report, content, meta, out_dir, model, datamodule, history_path, split)
"""

from __future__ import annotations

import base64
import io
import math
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from torch.utils.data import ConcatDataset

from trainer.data.image_folder import SPLITS
from trainer.evaluation.predictions import split_loader
from trainer.evaluation.report import Report
from trainer.history.store import RunHistory, config_digest
from trainer.utils.atomic import atomic_write
from trainer.utils.clock import now_utc

__all__ = ["history_runs", "key_metric", "op_sentence", "render", "write_html"]

MISTAKES = 8  # Grad-CAMs on the page: the cost of a few images

CSS = """
body{font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1b1f24;
 background:#fff;margin:0 auto;max-width:60rem;padding:1rem}
h1{font-size:1.35rem;margin:.2rem 0 .8rem}
h2{font-size:1.1rem;margin:2rem 0 .6rem;border-bottom:1px solid #d0d7de}
p,dd,td,code,figcaption{overflow-wrap:anywhere}
img{display:block;max-width:100%;height:auto}
figure{margin:0 0 1.2rem}
figcaption{font-size:.85rem;color:#57606a}
.verdict{padding:.7rem 1rem;border-radius:.4rem;border-left:.4rem solid}
.verdict p{margin:.3rem 0}
.passed{background:#e9f6ec;border-color:#1a7f37}
.failed{background:#fdeceb;border-color:#cf222e}
.none{background:#f3f4f6;border-color:#6e7781}
.scroll{overflow-x:auto}
table{border-collapse:collapse}
th,td{padding:.25rem .6rem;border-bottom:1px solid #d8dee4;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
.tiles{display:flex;flex-wrap:wrap;gap:.8rem}
dl{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.2rem 1rem}
dt{font-weight:600}
dd{margin:0}
@media (max-width:32rem){dl{grid-template-columns:minmax(0,1fr)}dd{margin-bottom:.4rem}}
"""
# default-src 'none': the browser itself refuses anything but the inline style and data: images
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def e(value: Any) -> str:
    """Text from data or config, safe inside HTML elements and attributes."""
    return escape(str(value), quote=True)


def _png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _img(data: bytes, alt: str) -> str:
    return f'<img src="{_png(data)}" alt="{e(alt)}">'


def _pct(k: int, n: int) -> str:
    return f" ({100 * k / n:.1f}%)" if n else ""


def op_sentence(caught: int, defective: int, flagged: int, good: int) -> str:
    """The operating point in counts, e.g. "Catches 97 of 100 defective images (97.0%); flags
    3 of 1900 good images (0.2%)."."""
    return (
        f"Catches {caught} of {defective} defective images{_pct(caught, defective)}; "
        f"flags {flagged} of {good} good images{_pct(flagged, good)}."
    )


def _op_counts(report: Report) -> tuple[int, int, int, int]:
    """(caught, defective, flagged, good) of the split at the operating point, as ``rates_at``
    decides: defect when the defect score (``1 - p(good)``, or an anomaly score) ``>= threshold``."""
    op, ev = report.operating_point, report.evaluation
    good = report.class_names.index(op["good_class"])
    flagged = ev.scores >= op["threshold"]
    defect = ev.target != good
    return (
        int(flagged[defect].sum()),
        int(defect.sum()),
        int(flagged[~defect].sum()),
        int((~defect).sum()),
    )


def _bound(check: Mapping[str, Any]) -> str:
    op = ">=" if check["kind"] == "min" else "<="
    return f"{check['metric']} = {check['value']:.4f} (needs {op} {check['bound']:g})"


def _verdict(report: Report, content: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    gate = content.get("gate")
    if not gate:
        kind, head = "none", "No gate: no bound was set (gate.min / gate.max)."
        lines = []
    elif gate["passed"]:
        kind, head = "passed", "Gate passed."
        lines = [_bound(c) for c in gate["checks"]]
    else:
        kind, head = "failed", "Gate FAILED."
        lines = [_bound(c) for c in gate["checks"] if not c["passed"]]
    split = report.split
    n = int(report.evaluation.confusion.sum())
    right = int(report.evaluation.confusion.trace())
    parts = [f"<p><strong>{e(head)}</strong></p>", *(f"<p>{e(line)}</p>" for line in lines)]
    op = report.operating_point
    if op:
        parts.append(f"<p><strong>{e(op_sentence(*_op_counts(report)))}</strong></p>")
        chosen = "at training, on its" if op.get("source") == "checkpoint" else "on this data's"
        aim = (
            f"to flag at most {op['target_false_reject']:g} of its good images"
            if op.get("rule") == "target_false_reject"
            else f"for a defect recall of {op['target_recall']:g}"
        )
        parts.append(
            f"<p>On the {e(split)} split, at the operating point: defect when "
            f"{e(op['score'])} &ge; {op['threshold']:.4g} (chosen {chosen} val split {aim}).</p>"
        )
    else:
        parts.append("<p>No pass/fail operating point (no good class, or val lacks one).</p>")
    parts.append(f"<p>Right on {right} of {n} {e(split)} images{_pct(right, n)}.</p>")
    lineage = meta.get("lineage") or {}
    facts = {
        "model": meta.get("backbone", "?"),
        "checkpoint": content.get("checkpoint") or "?",
        "evaluated": f"{now_utc()} on {report.data.get('root', '?')}",
        "trained": lineage.get("created_utc") or "?",
    }
    return (
        f'<section class="verdict {kind}">{"".join(parts)}</section>\n'
        f"<dl>{''.join(f'<dt>{e(k)}</dt><dd>{e(v)}</dd>' for k, v in facts.items())}</dl>"
    )


FIGURES = {
    "confusion_matrix": "Confusion matrix: rows are the true class, columns what the model said.",
    "roc_pr": "ROC and precision-recall curves, one per class and pass/fail (dashed).",
    "reliability": "Reliability: how often the model is right at each confidence.",
    "score_histogram": "Anomaly scores of good and defective images, and the threshold.",
}


def _figures(report: Report) -> str:
    out = []
    for name, caption in FIGURES.items():
        path = report.figures.get(name)
        if path is not None and Path(path).is_file():
            img = _img(Path(path).read_bytes(), caption)
            out.append(f"<figure>{img}<figcaption>{e(caption)}</figcaption></figure>")
    return "\n".join(out)


def _num(value: Any) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.3f}"


def _per_kind(report: Report) -> str:
    """An anomaly model's table: how well its score separates each defect kind from good."""
    s, split, names = report.metrics, report.split, report.class_names
    counts = [int((report.evaluation.target == i).sum()) for i in range(len(names))]
    rows = ["<tr><th>class</th><th>images</th><th>AUROC against good</th></tr>"]
    for name, count in zip(names, counts, strict=True):
        auroc = _num(s.get(f"{split}/auroc_{name}"))
        rows.append(f"<tr><td>{e(name)}</td><td>{count}</td><td>{auroc}</td></tr>")
    return f'<div class="scroll"><table>{"".join(rows)}</table></div>'


def _per_class(report: Report) -> str:
    if report.kind == "anomaly":
        return _per_kind(report)
    s, split = report.metrics, report.split
    support = report.evaluation.confusion.sum(dim=1).tolist()
    rows = [
        "<tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>support</th>"
        "<th>AUROC</th></tr>"
    ]
    for name, count in zip(report.class_names, support, strict=True):
        cells = [_num(s.get(f"{split}/{m}_{name}")) for m in ("precision", "recall", "f1")]
        auroc = _num(s.get(f"{split}/auroc_{name}"))
        rows.append(
            f"<tr><td>{e(name)}</td>{''.join(f'<td>{c}</td>' for c in cells)}"
            f"<td>{int(count)}</td><td>{auroc}</td></tr>"
        )
    return f'<div class="scroll"><table>{"".join(rows)}</table></div>'


def _mistakes(tiles: Sequence[tuple[str, bytes]]) -> str:
    if not tiles:
        return "<p>No mistakes: every image of the split was classified correctly.</p>"
    figures = "".join(
        f"<figure>{_img(png, caption)}<figcaption>{e(caption)}</figcaption></figure>"
        for caption, png in tiles
    )
    return (
        f"<p>The {len(tiles)} most confident wrong predictions; the heatmap shows where the "
        f'model looked for the class it (wrongly) said.</p><div class="tiles">{figures}</div>'
    )


def _history(runs: Sequence[Mapping[str, Any]] | str, metric: str, fingerprint: str) -> str:
    if isinstance(runs, str):  # why there is none
        return f"<p>{e(runs)}</p>"
    n = f"{len(runs)} run{'s' * (len(runs) != 1)}"
    intro = f"<p>{e(metric)} of every run on data {e(str(fingerprint)[:12])} ({n}).</p>"
    if len(runs) >= 2:
        values = [r["metrics"][metric] for r in runs]
        trend = f"<p>Latest {_num(values[-1])}; best before it {_num(max(values[:-1]))}.</p>"
        return intro + _img(_history_png(runs, metric), f"{metric} over time") + trend
    rows = "".join(
        f"<tr><td>{e(r['ended_utc'] or r['started_utc'])}</td><td>{e(r['task'])}</td>"
        f"<td>{_num(r['metrics'][metric])}</td></tr>"
        for r in runs
    )
    head = f"<tr><th>run end (UTC)</th><th>task</th><th>{e(metric)}</th></tr>"
    return intro + f'<div class="scroll"><table>{head}{rows}</table></div>'


def _history_png(runs: Sequence[Mapping[str, Any]], metric: str) -> bytes:
    from datetime import datetime

    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    times = [datetime.fromisoformat(r["ended_utc"] or r["started_utc"]) for r in runs]
    ax.plot(times, [r["metrics"][metric] for r in runs], color="0.6", lw=1)
    for task, marker in (("train", "o"), ("eval", "s")):
        mine = [
            (t, r["metrics"][metric]) for t, r in zip(times, runs, strict=True) if r["task"] == task
        ]
        if mine:
            ax.plot(*zip(*mine, strict=True), marker, label=task, ls="none")
    ax.set(ylabel=metric, xlabel="run end (UTC)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def _lineage(report: Report, meta: Mapping[str, Any]) -> str:
    lineage = meta.get("lineage") or {}
    commit = lineage.get("git_commit") or "unknown (not a git checkout)"
    if lineage.get("git_dirty"):
        commit += " (uncommitted changes)"
    trained_on = (meta.get("data") or {}).get("fingerprint")
    parent = meta.get("parent_checkpoint")
    items = {
        "commit": commit,
        "trained on data": trained_on or "?",
        "evaluated on data": report.data.get("fingerprint") or "?",
        "config digest": config_digest(meta.get("config") or {}),
        "parent checkpoint": f"{parent.get('path')} (sha256 {str(parent.get('sha256'))[:12]})"
        if isinstance(parent, Mapping)
        else "none (trained from the backbone's weights)",
        "trained by": lineage.get("command") or "?",
        "this report by": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    return f"<dl>{''.join(f'<dt>{e(k)}</dt><dd>{e(v)}</dd>' for k, v in items.items())}</dl>"


def key_metric(report: Report) -> str:
    """The metric whose history the page plots: macro F1 (accuracy when there is none; an
    anomaly model's image AUROC)."""
    if report.kind == "anomaly":
        return f"{report.split}/auroc_pass_fail"
    f1 = f"{report.split}/f1"
    return f1 if f1 in report.metrics else f"{report.split}/acc"


def render(
    report: Report,
    content: Mapping[str, Any],
    meta: Mapping[str, Any],
    tiles: Sequence[tuple[str, bytes]],
    runs: Sequence[Mapping[str, Any]] | str,
) -> str:
    """The page's HTML.

    Args:
        report: the evaluation (``evaluate_model``) after ``write_report`` drew its figures.
        content: what metrics.json holds (``gate``, ``checkpoint``).
        meta: the checkpoint's metadata (backbone, lineage, data, config, parent).
        tiles: (caption, PNG) of each worst mistake, worst first.
        runs: the history rows of this data with the key metric, oldest first; or a sentence
            saying why there are none.
    """
    title = f"{meta.get('backbone', 'model')} on {report.split}: evaluation report"
    sections = [
        ("Results in pictures", _figures(report)),
        ("Per class", _per_class(report)),
        ("Worst mistakes", _mistakes(tiles)),
        ("History", _history(runs, key_metric(report), report.data.get("fingerprint"))),
        ("Lineage", _lineage(report, meta)),
    ]
    body = "\n".join(f"<section><h2>{e(h)}</h2>\n{html}</section>" for h, html in sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{e(title)}</title>\n<style>{CSS}</style></head>\n<body>\n"
        f"<h1>{e(title)}</h1>\n{_verdict(report, content, meta)}\n{body}\n</body></html>\n"
    )


def _split_images(datamodule: Any, split: str) -> ConcatDataset:
    """The split's images in the order of ``split_logits`` (all: train, val, test), with the
    ``samples`` (paths) of them all."""
    names = SPLITS if split == "all" else (split,)
    loaders = [split_loader(datamodule, s) for s in names]
    images = ConcatDataset([loader.dataset for loader in loaders if loader is not None])
    images.samples = [s for d in images.datasets for s in d.samples]
    return images


def _anomaly_tiles(
    report: Report, model: Any, datamodule: Any, split: str
) -> list[tuple[str, bytes]]:
    """An anomaly model's mistakes at the threshold, each with its anomaly map: the good images
    it flags with the highest scores and the defects it passes with the lowest."""
    import torch

    from trainer.explain.render import explained_tile

    op, ev, names = report.operating_point, report.evaluation, report.class_names
    if not op:
        return []
    good = names.index(op["good_class"])
    flagged, defect = ev.scores >= op["threshold"], ev.target != good
    false_alarms = torch.nonzero(flagged & ~defect).flatten()
    missed = torch.nonzero(~flagged & defect).flatten()
    order = [*false_alarms[ev.scores[false_alarms].argsort(descending=True)].tolist()]
    order += missed[ev.scores[missed].argsort()].tolist()
    images = _split_images(datamodule, split)
    out = []
    for index in order[:MISTAKES]:
        image, _ = images[index]
        with torch.no_grad():
            device = next(model.buffers()).device
            _, amap = model(model.normalize(image[None].to(device)))
        heat = amap[0, 0].cpu().numpy()
        heat = (heat - heat.min()) / max(float(heat.max() - heat.min()), 1e-12)
        where = "/".join(Path(images.samples[index].path).parts[-3:])
        caption = f"{where}: true {names[int(ev.target[index])]}, score {ev.scores[index]:.3g}"
        buf = io.BytesIO()
        explained_tile(image, heat, [caption]).save(buf, format="PNG")
        out.append((caption, buf.getvalue()))
    return out


def _tiles(report: Report, model: Any, datamodule: Any, split: str) -> list[tuple[str, bytes]]:
    from trainer.explain.mistakes import defect_boxes, mistake_tiles, worst_of

    if report.kind == "anomaly":
        return _anomaly_tiles(report, model, datamodule, split)

    ev, names = report.evaluation, report.class_names
    images = _split_images(datamodule, split)
    mistakes = worst_of(ev.probs, ev.target, images, MISTAKES)
    pictures = mistake_tiles(model, mistakes, "auto", defect_boxes(model, images, mistakes))
    out = []
    for m, picture in zip(mistakes, pictures, strict=True):
        where = "/".join(Path(images.samples[m.index].path).parts[-3:])
        caption = f"{where}: true {names[m.label]}, said {names[m.predicted]} ({m.confidence:.2f})"
        buf = io.BytesIO()
        picture.save(buf, format="PNG")
        out.append((caption, buf.getvalue()))
    return out


def history_runs(
    history_path: str | Path | None, fingerprint: str | None, metric: str
) -> list[dict[str, Any]] | str:
    """The runs of the history on ``fingerprint`` that have ``metric``; or why there are none."""
    if not history_path:
        return "No run history: history.path is null."
    if not fingerprint:
        return "No history: the data has no fingerprint."
    path = Path(history_path).expanduser()
    if not path.is_file():
        return f"No run history yet at {path}."
    try:
        runs = RunHistory(path).runs(fingerprint=fingerprint)
    except sqlite3.DatabaseError as err:
        return f"The run history {path} cannot be read: {err}."
    runs = [r for r in runs if isinstance((r["metrics"] or {}).get(metric), (int, float))]
    return runs or f"No run on this data has {metric} yet."


def write_html(
    report: Report,
    content: Mapping[str, Any],
    meta: Mapping[str, Any],
    out_dir: Path,
    model: Any,
    datamodule: Any,
    history_path: str | Path | None,
    split: str,
) -> Path:
    """``out_dir/report.html`` of an evaluation whose ``write_report`` has run; its path.

    ``model`` (on its device) and ``datamodule`` give the worst mistakes' images and Grad-CAM;
    ``split`` is the one evaluated (``all`` too); ``history_path`` the run history (None: off).
    """
    tiles = _tiles(report, model, datamodule, split)
    runs = history_runs(history_path, report.data.get("fingerprint"), key_metric(report))
    return atomic_write(out_dir / "report.html", render(report, content, meta, tiles, runs))
