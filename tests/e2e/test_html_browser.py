"""End to end, in a real browser: a run's report.html opened in headless Chromium.

Chromium renders the page of a real run; a probe script, put in front of the
page's own, records script errors, hovers over a bar and sorts the table, and
``--dump-dom`` hands back the DOM it left. Debian's ``chromium`` package is
enough (``.ci/run`` installs it in CI): no driver, no extra Python dependency.
Without Chromium the test is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import uuid

import pytest

from tests.conftest import GitRepo
from tests.unit.test_html_report import Page


pytestmark = pytest.mark.e2e

#: Where Debian, Ubuntu and the usual installs put the browser.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Flags for a headless browser that touches no network and no profile of the user's.
HEADLESS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

#: Runs before the page's own script: records errors, then on load hovers over the
#: first bar and sorts the module table by duration, leaving what it saw on <body>.
PROBE = """<script>
(function(){
var errors=[];
window.addEventListener('error',function(e){errors.push(String(e.message||e));});
window.addEventListener('load',function(){
  try{
    var bar=document.querySelector('.bar'),r=bar.getBoundingClientRect();
    document.body.setAttribute('data-probe-bar-width',String(r.width));
    bar.dispatchEvent(new MouseEvent('mousemove',{bubbles:true,
      clientX:r.left+r.width/2,clientY:r.top+r.height/2}));
    var tip=document.getElementById('tip');
    document.body.setAttribute('data-probe-tip',tip.hidden?'(hidden)':tip.textContent);
    document.querySelector('#modules th:nth-child(7)').click();
    var order=[].map.call(document.querySelectorAll('#modules tbody tr'),
      function(tr){return tr.cells[6].getAttribute('data-v');});
    document.body.setAttribute('data-probe-sorted',order.join(' '));
    document.body.setAttribute('data-probe-pwned',String(window.pwned||'no'));
  }catch(e){errors.push('probe: '+e);}
  document.body.setAttribute('data-probe-errors',JSON.stringify(errors));
});
})();
</script>"""


@pytest.fixture
def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found is not None:
            return found
    if os.environ.get("CI"):
        pytest.fail("CI is set but Chromium is not installed: .ci/run installs Debian's chromium")
    pytest.skip("headless Chromium is not installed (apt-get install chromium); CI runs this test")


def run_browser(browser: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / f"chromium-profile-{uuid.uuid4().hex[:8]}"
    return subprocess.run(
        [browser, *HEADLESS, f"--user-data-dir={profile}", "--window-size=1280,1000", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.timeout(240)
def test_the_report_renders_in_chromium_with_a_lane_per_worker_and_a_bar_per_module(
    pytester: pytest.Pytester, git_repo: GitRepo, chromium: str, tmp_path: Path
) -> None:
    pytester.makepyfile(
        test_slow="import time\ndef test_a(): time.sleep(0.3)\ndef test_b(): pass\n",
        test_broken=(
            "def test_fails():\n"
            "    assert 0, '</pre><script>window.pwned = 2</script>'\n"
            "def test_passes(): pass\n"
        ),
        test_quick=(
            "import pytest\n"
            "@pytest.mark.parametrize('x', [1], ids=['<img src=x onerror=window.pwned=1>'])\n"
            "def test_q(x): pass\n"
        ),
    )
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess(
        "--parallel-modules=2", "--module-report-dir=reports", "-p", "no:randomly", timeout=90
    )
    result.assert_outcomes(passed=4, failed=1)
    report = json.loads((pytester.path / "reports" / "report.json").read_text())
    html = (pytester.path / "reports" / "report.html").read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(html.replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")

    dumped = run_browser(chromium, tmp_path, "--dump-dom", probed.as_uri())
    assert dumped.returncode == 0, dumped.stderr[-3000:]
    dom = Page(dumped.stdout)
    (body,) = dom.having("body")
    assert json.loads(body["data-probe-errors"]) == []
    assert body["data-probe-pwned"] == "no"

    workers = sorted(report["timeline"]["workers"])
    lanes = [row["data-lane"] for row in dom.having("div", "row") if "data-lane" in row]
    assert lanes == workers == ["w1", "w2"]
    bars = dom.having("i", "bar")
    assert sorted(bar["data-m"] for bar in bars) == [
        "test_broken.py",
        "test_quick.py",
        "test_slow.py",
    ]
    assert float(body["data-probe-bar-width"]) > 0
    # Hovering shows the module, its worker, tests, outcome and duration.
    first = bars[0]
    module = next(m for m in report["modules"] if m["module"] == first["data-m"])
    tip = body["data-probe-tip"].splitlines()
    assert tip[0] == module["module"]
    assert tip[1] == f"worker {module['worker']}"
    assert tip[2] in ("2 tests", "1 test")
    assert tip[3] == module["outcome"].upper()
    assert tip[4] == first["data-d"]
    # Sorting by duration orders the rows by it.
    durations = [float(value) for value in body["data-probe-sorted"].split()]
    assert durations == sorted(durations) and len(durations) == 3

    screenshot = tmp_path / "report.png"
    shot = run_browser(chromium, tmp_path, f"--screenshot={screenshot}", probed.as_uri())
    assert shot.returncode == 0, shot.stderr[-3000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
