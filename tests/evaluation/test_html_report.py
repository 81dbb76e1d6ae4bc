"""report.html: the verdict in words and counts, a self-contained page, escaped text, and what a
real browser (headless Chromium, phone-sized) shows of the pages eval.py and training write."""

from __future__ import annotations

import io
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.conftest import compose_cfg
from tests.helpers import browser
from tests.helpers.browser import page_facts
from tests.helpers.evaluation import Trained
from trainer.evaluation import gate as gates
from trainer.evaluation.html_report import history_runs, op_sentence, render
from trainer.evaluation.operating_point import rates_at
from trainer.evaluation.report import Report, write_report
from trainer.history.store import RunHistory
from trainer.metrics.summary import compute_metrics
from trainer.tasks.evaluate import evaluate

HOSTILE = "<script>alert(1)</script>"
# what the page may hold: no script, no link, no object, nothing that loads
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "section", "p", "strong"}
TAGS |= {"dl", "dt", "dd", "figure", "img", "figcaption", "div", "table", "tr", "th", "td"}


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(page)
    return parser.tags


def png(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 10), color).save(buf, format="PNG")
    return buf.getvalue()


def hand_made(
    tmp: Path, classes: list[str], gate: dict | None = None, figures: bool = False
) -> tuple[Report, dict]:
    """10 test images, 4 defective: at threshold 0.5 three defects and one good image are
    flagged. The report and what metrics.json holds (with the figures: ``write_report``)."""
    p_good = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.2, 0.1, 0.05, 0.6])
    target = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])  # flagged: good #5, defects #6-8
    probs = torch.stack([p_good, 1 - p_good], dim=1)
    report = Report(
        "test",
        compute_metrics(probs.log(), target, classes, "good", "test"),
        classes,
        {"root": f"/data/{HOSTILE}", "fingerprint": "f00d" * 4},
    )
    op = {"threshold": 0.5, "target_recall": 0.99, "val_recall": 1.0, "good_class": "good"}
    report.operating_point = {**op, "score": "1 - p(good)", "source": "val split"}
    report.op_test = rates_at(1 - p_good, target != 0, 0.5)
    checks = gates.evaluate_gate(gate, report.metrics) if gate else []
    content = {
        "checkpoint": f"/ckpt/{HOSTILE}.ckpt",
        "gate": gates.summary(checks) if checks else None,
    }
    if figures:  # a second apiece
        content = write_report(report, tmp, content)
    return report, content


META = {
    "backbone": "<b>resnet</b>",
    "lineage": {"git_commit": "abc123", "git_dirty": True, "command": f"train.py x={HOSTILE}"},
    "data": {"fingerprint": "f00d" * 4},
    "config": {"model": {"backbone": "resnet"}},
    "parent_checkpoint": {"path": f"/parent/{HOSTILE}.ckpt", "sha256": "9" * 64},
}


def test_the_verdict_sentence_counts() -> None:
    assert op_sentence(97, 100, 3, 1900) == (
        "Catches 97 of 100 defective images (97.0%); flags 3 of 1900 good images (0.2%)."
    )
    assert (
        op_sentence(0, 0, 2, 8)
        == "Catches 0 of 0 defective images; flags 2 of 8 good images (25.0%)."
    )


def test_verdict_gate_and_counts_of_a_hand_made_report(tmp_path: Path) -> None:
    failing = {"min": {"test/f1": 0.99}, "max": {"test/ece": 1.0}}
    report, content = hand_made(tmp_path / "a", ["good", "missing"], failing)
    page = render(report, content, META, [], "No run history yet.")
    assert "Catches 3 of 4 defective images (75.0%); flags 1 of 6 good images (16.7%)." in page
    assert "Gate FAILED." in page and "test/f1 = " in page and "(needs &gt;= 0.99)" in page
    assert "test/ece" not in page.split("</section>")[0]  # a bound that passed is not a failure
    assert "Right on 8 of 10 test images (80.0%)." in page  # #5 and #9 are called wrong
    assert page.index("Gate FAILED") < page.index("Results in pictures")
    order = ["Results in pictures", "Per class", "Worst mistakes", "History", "Lineage"]
    assert re.findall(r"<h2>(.*?)</h2>", page) == order
    assert "No mistakes: every image" in page and "No run history yet." in page

    report, content = hand_made(tmp_path / "b", ["good", "missing"], None)
    assert "No gate" in render(report, content, META, [], "none")
    report, content = hand_made(tmp_path / "c", ["good", "missing"], {"min": {"test/acc": 0.5}})
    page = render(report, content, META, [], "none")
    assert "Gate passed." in page and "test/acc = 0.8000 (needs &gt;= 0.5)" in page


def test_per_class_table_is_the_evaluations(tmp_path: Path) -> None:
    report, content = hand_made(tmp_path, ["good", "missing"])
    page = render(report, content, META, [], "none")
    table = page[page.index("<h2>Per class</h2>") :].split("</table>")[0]
    rows = re.findall(r"<tr><td>(.*?)</td>(.*?)</tr>", table)
    s = report.metrics
    for name, cells in rows:
        values = re.findall(r"<td>(.*?)</td>", cells)
        expected = [f"{s[f'test/{m}_{name}']:.3f}" for m in ("precision", "recall", "f1")]
        support = {"good": "6", "missing": "4"}[name]  # counted by hand
        assert values == [*expected, support, f"{s[f'test/auroc_{name}']:.3f}"], name


def test_hostile_text_is_escaped_and_nothing_loads(tmp_path: Path) -> None:
    gate = {"min": {f"test/f1_{HOSTILE}": 0.9}}
    report, content = hand_made(tmp_path, ["good", HOSTILE], gate, figures=True)
    runs = [
        {
            "started_utc": "2026-01-01T00:00:00+00:00",
            "ended_utc": None,
            "task": HOSTILE,
            "metrics": {"test/f1": 0.5},
        },
        {
            "started_utc": "2026-01-02T00:00:00+00:00",
            "ended_utc": None,
            "task": "eval",
            "metrics": {"test/f1": 0.7},
        },
    ]
    tiles = [(f"test/{HOSTILE}/1.png: true good", png((200, 0, 0)))]
    page = render(report, content, META, tiles, runs)
    assert "Latest 0.700; best before it 0.500." in page
    assert HOSTILE not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tags = tags_of(page)
    assert {t for t, _ in tags} <= TAGS, {t for t, _ in tags} - TAGS
    images = [a["src"] for t, a in tags if t == "img"]
    assert len(images) == 3 + 1 + 1  # figures, the one mistake, the history plot
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", page, re.I)
    assert not re.search(r"https?://|@import|url\(", page, re.I)
    viewport = [a for t, a in tags if t == "meta" and a.get("name") == "viewport"]
    assert viewport and "width=device-width" in viewport[0]["content"]


def test_history_rows_of_this_data(tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    assert "null" in history_runs(None, "f00d", "test/f1")
    assert "No run history yet" in history_runs(db, "f00d", "test/f1")
    history = RunHistory(db)
    for i, (fp, metrics) in enumerate(
        [
            ("f00d", {"test/f1": 0.5}),
            ("beef", {"test/f1": 0.9}),
            ("f00d", {"test/acc": 0.7}),
            ("f00d", {"test/f1": 0.6}),
        ]
    ):
        history.append(
            {
                "run_id": f"r{i}",
                "started_utc": f"2026-01-0{i + 1}",
                "task": "eval",
                "data_fingerprint": fp,
                "metrics": metrics,
            }
        )
    runs = history_runs(db, "f00d", "test/f1")
    assert [r["run_id"] for r in runs] == ["r0", "r3"]
    assert "No run on this data" in history_runs(db, "f00d", "test/auroc")
    (tmp_path / "junk.sqlite").write_text("not a database")
    assert "cannot be read" in history_runs(tmp_path / "junk.sqlite", "f00d", "test/f1")


def expected_sentence(metrics_json: dict) -> str:
    """The verdict's counts from metrics.json: rates times the class counts of its matrix."""
    matrix = metrics_json["confusion_matrix"]
    good = matrix["classes"].index("good")
    rows = [sum(r) for r in matrix["rows_true_columns_predicted"]]
    goods, defective = rows[good], sum(rows) - rows[good]
    m = metrics_json["metrics"]
    caught = round(m["test/defect_recall_at_op"] * defective)
    flagged = round(m["test/false_alarm_rate_at_op"] * goods)
    return op_sentence(caught, defective, flagged, goods)


def wrong_of(metrics_json: dict) -> int:
    matrix = metrics_json["confusion_matrix"]["rows_true_columns_predicted"]
    return sum(sum(r) for r in matrix) - sum(matrix[i][i] for i in range(len(matrix)))


def test_training_writes_the_page(trained: Trained, tmp_path: Path) -> None:
    page = (trained.run / "report.html").read_text()
    content = json.loads((trained.run / "metrics.json").read_text())
    assert expected_sentence(content) in page
    history = page[page.index("<h2>History</h2>") :]
    assert "of every run on data" in history and "(1 run)" in history and "<table>" in history
    facts = page_facts(trained.run / "report.html", tmp_path)
    assert facts["images"] == facts["decoded"] == 3 + min(8, wrong_of(content))
    assert facts["scroll_width"] <= facts["inner_width"] and facts["fetched"] == []


def test_eval_page_in_a_phone_browser(trained: Trained, tmp_path: Path) -> None:
    db = tmp_path / "history.sqlite"
    shutil.copy(trained.log_dir / "history.sqlite", db)  # the training run's row, not shared
    cfg = compose_cfg([f"ckpt_path={trained.best}", f"history.path={db}"], tmp_path, "eval")
    content = evaluate(cfg)
    page = tmp_path / "run" / "report.html"
    facts = page_facts(page, tmp_path)
    tiles = min(8, wrong_of(content))
    assert facts["images"] == 3 + tiles + 1  # figures, mistakes, history plot (train and eval)
    assert facts["decoded"] == facts["images"]
    assert facts["scroll_width"] <= facts["inner_width"] <= 400  # nothing wider than the phone
    assert facts["fetched"] == []
    assert expected_sentence(content) in facts["text"]
    assert facts["text"].index("Catches") < facts["text"].index("Results in pictures")
    assert facts["headings"] == [
        "Results in pictures",
        "Per class",
        "Worst mistakes",
        "History",
        "Lineage",
    ]
    assert str(trained.best) in facts["text"]

    off = compose_cfg(
        [f"ckpt_path={trained.best}", "report_html=false", "history.path=null"],
        tmp_path / "off",
        "eval",
    )
    evaluate(off)
    assert (tmp_path / "off" / "run" / "metrics.json").is_file()
    assert not (tmp_path / "off" / "run" / "report.html").exists()


def test_a_missing_browser_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium is not installed"):
        browser.chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception):
        browser.chromium()
