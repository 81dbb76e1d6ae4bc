"""score.py runs with only the bundle and onnxruntime, numpy and Pillow importable."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from tests.helpers.export_fixtures import ISOLATE, site_dirs, split_images

SCRIPT = (
    ISOLATE
    + """
import score
score.init()
answers = [score.run(sys.stdin.read())]
try:
    score.run({"images": [{"name": "junk", "data": "aGVsbG8="}]})
except score.InputError as err:
    answers.append(err.to_dict())
answers.append(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "trainer"}))
print(json.dumps(answers))
"""
)


def test_score_py_needs_neither_torch_nor_trainer(bundle: Path) -> None:
    files = split_images(bundle.parent)[:2]
    request = {
        "images": [
            {"name": f.name, "data": base64.b64encode(f.read_bytes()).decode()} for f in files
        ]
    }
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", SCRIPT, json.dumps([str(bundle), *site_dirs()])],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=bundle,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    answer, refusal, loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert [p["name"] for p in answer["predictions"]] == [f.name for f in files]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in answer["predictions"])
    assert refusal["error"]["code"] == "not_an_image"
    assert loaded == []
