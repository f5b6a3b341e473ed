"""report.html renders in a real browser: every figure loads and the console stays quiet.

Headless Chromium (Debian's ``chromium``) opens the report of a tiny run with a check script
added in front of the page; the script writes into the page title how many images there are,
how many did not load (naturalWidth 0) and how many errors were raised. The test installs
nothing: it skips, saying why, where ``chromium`` is absent (``.ci/run`` installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from mtlkit.config import parse_config
from mtlkit.workflows import train

pytestmark = [pytest.mark.real_figures, pytest.mark.usefixtures("one_torch_thread")]

CHECK = """<script>
window.__errors = [];
window.addEventListener("error", (event) => window.__errors.push(String(event.message)), true);
const consoleError = console.error;
console.error = (...parts) => { window.__errors.push(parts.join(" ")); consoleError(...parts); };
window.addEventListener("load", () => {
  const images = [...document.images];
  const broken = images.filter((image) => !(image.complete && image.naturalWidth > 0));
  document.title = `CHECK images=${images.length} broken=${broken.length} ` +
    `errors=${window.__errors.length}`;
});
</script>"""


def test_the_report_of_a_run_renders_in_chromium(tmp_path, offline_data, tiny_config):
    browser = shutil.which("chromium")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    config = parse_config(
        tiny_config(balancer={"name": "upgrad"}, train={"log_task_cosine_every": 1})
    )
    run = train(config, tmp_path / "run").run_dir
    page = (run / "report.html").read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page  # self-contained: nothing fetched
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("<head>", "<head>\n" + CHECK, 1), encoding="utf-8")
    screenshot = tmp_path / "report.png"
    completed = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,2000",
            f"--screenshot={screenshot}",
            "--dump-dom",
            checked.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    title = re.search(r"<title>(CHECK [^<]*)</title>", completed.stdout)
    assert title is not None, completed.stderr[-2000:]
    # learning curves, gradient cosines, and one confusion heat map per task
    assert title.group(1) == "CHECK images=4 broken=0 errors=0"
    console = [line for line in completed.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    assert screenshot.stat().st_size > 10_000  # a rendered page, not a blank one
