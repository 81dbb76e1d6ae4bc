"""Headless Chromium for tests that check what a page shows, not only what its HTML says.

``.ci/run`` installs Chromium when it is missing, so in CI (``CI`` set) a missing browser fails
the test; on a laptop without one it is skipped (``apt-get install -y chromium``).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
]
PHONE = (390, 844)  # CSS pixels of a common phone

# The page in a phone-sized frame (srcdoc: same origin, so the probe can read it; its own
# Content-Security-Policy still rules inside). Once loaded: every image decoded or not, the page's
# width against the frame's, what it fetched, its text; written into the DOM for --dump-dom.
WRAPPER = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" style="border:0;width:{width}px;height:{height}px" srcdoc="{page}"></iframe>
<script>
document.getElementById("page").addEventListener("load", (event) => {{
  const win = event.target.contentWindow, doc = win.document;
  const images = [...doc.images];
  const facts = {{
    images: images.length,
    decoded: images.filter((i) => i.complete && i.naturalWidth > 0).length,
    scroll_width: doc.documentElement.scrollWidth,
    inner_width: win.innerWidth,
    fetched: win.performance.getEntriesByType("resource").map((r) => r.name),
    text: doc.body.innerText,
    headings: [...doc.querySelectorAll("h2")].map((h) => h.textContent),
  }};
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(facts);
  document.body.append(out);
}});
</script></body></html>"""


def chromium() -> str:
    """The browser's path; skip without one, except in CI."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install -y chromium)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def run_chromium(page: Path, tmp: Path, *args: str, size: tuple[int, int] = PHONE) -> str:
    """Open ``page`` in a fresh headless profile under ``tmp``; Chromium's stdout."""
    profile = tmp / "chromium-profile"
    profile.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            chromium(),
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={size[0]},{size[1]}",
            *args,
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def page_facts(page: Path, tmp: Path, size: tuple[int, int] = PHONE) -> dict[str, Any]:
    """What ``page`` shows in Chromium inside a frame of ``size`` CSS pixels (see ``WRAPPER``)."""
    wrapper = tmp / f"framed_{page.name}"
    text = html.escape(page.read_text(), quote=True)
    wrapper.write_text(WRAPPER.format(width=size[0], height=size[1], page=text))
    dom = run_chromium(wrapper, tmp, "--dump-dom", size=(size[0] + 200, size[1] + 100))
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))
