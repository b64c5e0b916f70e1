"""The HTML report: self-contained, escaped, and showing what the issue asks for."""

from __future__ import annotations

from html.parser import HTMLParser
import re

from pytest_parallel_modules.history import History
from pytest_parallel_modules.history import MeasuredModule
from pytest_parallel_modules.history import MeasuredRun
from pytest_parallel_modules.history import MeasuredTest
from pytest_parallel_modules.history import merge_history
from pytest_parallel_modules.html_report import MAX_FAILURES
from pytest_parallel_modules.html_report import render_html
from pytest_parallel_modules.html_report import sparkline
from pytest_parallel_modules.html_report import trend_text
from pytest_parallel_modules.reports import MergedReport
from pytest_parallel_modules.summary import summary_lines
from pytest_parallel_modules.trends import trend_of
from tests.unit.test_timeline import module
from tests.unit.test_timeline import report
from tests.unit.test_timeline import result
from tests.unit.test_timeline import timeline
from tests.unit.test_timeline import two_lane_report
from tests.unit.test_timeline import unit
from tests.unit.test_trends import measured


class Page(HTMLParser):
    """The elements of a page, with their attributes and the text inside each tag type."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.text: dict[str, list[str]] = {}
        self._open: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {key: value or "" for key, value in attrs}))
        if tag not in ("meta", "br", "circle", "path", "polyline", "i"):
            self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            while self._open.pop() != tag:
                pass

    def handle_data(self, data: str) -> None:
        for tag in self._open:
            self.text.setdefault(tag, []).append(data)

    def having(self, tag: str, css_class: str | None = None) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs in self.elements
            if name == tag and (css_class is None or css_class in attrs.get("class", "").split())
        ]


HOSTILE_MODULE = 'tests/test_<script>alert("m")</script>.py'
HOSTILE_NODEID = HOSTILE_MODULE + "::test_x[<img src=x onerror=alert(1)>]"
HOSTILE_TRACEBACK = 'E   AssertionError: </pre><script>alert("t")</script>\n' + "line\n" * 3


def hostile_report() -> MergedReport:
    failing = result(HOSTILE_NODEID, "failed")
    failing["longrepr"] = HOSTILE_TRACEBACK
    failing["message"] = 'AssertionError: "quoted" & <b>bold</b>'
    merged = report(
        [
            module(HOSTILE_MODULE, [failing, result(HOSTILE_MODULE + "::ok")]),
            module("tests/test_plain.py", [result("tests/test_plain.py::t")], worker="w2"),
            module(
                "tests/test_never.py",
                [result("tests/test_never.py::t", "not_run")],
                worker=None,
                outcome="not_run",
            ),
        ]
    )
    merged["timeline"] = timeline(
        [
            unit(HOSTILE_MODULE, "w1", 1.0, 2.0, "failed", tests="0 500"),
            unit("tests/test_plain.py", "w2", 1.0, 1.5),
        ],
        {"w1": (0.1, 1.0, 2.5), "w2": (0.2, 1.0, 2.6)},
        end=2.7,
    )
    return merged


def test_everything_from_the_report_is_escaped() -> None:
    page = render_html(hostile_report(), rerun_command="pytest 'tests/test_<script>.py'")
    # One script: ours. Nothing from the report became markup.
    assert page.count("<script") == 1
    assert "<img" not in page and "<b>bold" not in page
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in page
    parsed = Page(page)
    assert len(parsed.having("script")) == 1
    bars = parsed.having("i", "bar")
    assert HOSTILE_MODULE in [bar["data-m"] for bar in bars]
    assert any(HOSTILE_TRACEBACK.strip() in text for text in parsed.text["pre"])


def test_the_page_is_self_contained() -> None:
    page = render_html(two_lane_report())
    for pattern in (r"\bsrc=", r"<link\b", r"@import", r"url\(", r"https?://"):
        assert not re.search(pattern, page), pattern


def test_one_lane_per_worker_one_bar_per_unit_and_the_critical_lane() -> None:
    parsed = Page(render_html(two_lane_report()))
    lanes = parsed.having("div", "row")
    named = [lane for lane in lanes if "data-lane" in lane]
    assert [lane["data-lane"] for lane in named] == ["w1", "w2"]
    assert ["crit" in lane["class"].split() for lane in named] == [False, True]
    bars = parsed.having("i", "bar")
    assert sorted(bar["data-m"] for bar in bars) == ["a.py", "b.py", "c.py"]
    b = next(bar for bar in bars if bar["data-m"] == "b.py")
    # What the tooltip shows, put together by the script (the browser test checks it).
    assert (b["data-t"], b["data-d"]) == ("1", "6.50s")
    assert "o-failed" in b["class"].split()
    assert len(parsed.having("i", "gap")) == 2
    assert len(parsed.having("i", "up")) == 2  # each worker's start-up
    assert len(parsed.having("i", "col")) == 1  # collection
    assert len(parsed.having("div", "mark")) == 1  # the lower bound
    assert len(parsed.having("div", "tail")) == 1
    assert "Critical path: w2 ended last" in "".join(parsed.text["p"])


def test_the_summary_has_the_terminals_figures() -> None:
    merged = hostile_report()
    parsed = Page(render_html(merged, rerun_command="pytest x"))
    items = [line for line in parsed.text["li"]]
    for line in summary_lines(merged, rerun_command="pytest x"):
        assert line in items


def test_failures_are_folded_and_capped() -> None:
    tests = []
    for index in range(MAX_FAILURES + 5):
        failing = result(f"a.py::t{index}", "failed")
        failing["longrepr"] = "\n".join(f"line {n}" for n in range(1000))
        tests.append(failing)
    merged = report([module("a.py", tests)])
    page = render_html(merged)
    parsed = Page(page)
    assert len(parsed.having("details")) == MAX_FAILURES
    assert "... and 5 more; see the JSON report." in page
    assert "(600 lines cut; the JSON report has them all)" in page
    assert "line 999" in page and "line 500\n" not in page


def test_modules_that_did_not_run_say_why() -> None:
    page = render_html(hostile_report())
    section = page[page.index('id="not-run"') : page.index('id="modules-section"')]
    assert "tests/test_never.py" in section
    assert "it never started" in section
    assert "tests/test_plain.py" not in section


def test_flaky_tests_from_this_run_and_from_the_history() -> None:
    merged = two_lane_report()
    merged["modules"][0]["flaky"] = ["a.py::t1"]
    history = History()
    for outcome in ("passed", "failed", "passed"):
        run = MeasuredRun(
            {
                "b.py::t": MeasuredTest(0.1, outcome, True),  # type: ignore[arg-type]  # any outcome
                # Passes plainly in this run: the report holds it among its "passed".
                "a.py::t2": MeasuredTest(0.1, outcome, True),  # type: ignore[arg-type]  # any outcome
            },
            {
                "b.py": MeasuredModule(0.2, 0.01, True, content_hash="c"),
                "a.py": MeasuredModule(0.2, 0.01, True, content_hash="c"),
            },
        )
        history = merge_history(history, run, now=1)
    assert "a.py::t2" not in [test["nodeid"] for test in merged["modules"][0]["tests"]]
    page = render_html(merged, history=history)
    section = page[page.index('id="flaky"') : page.index('id="not-run"')]
    assert "a.py::t1" in section
    assert "b.py::t" in section and "100%" in section and "2/2" in section
    assert "a.py::t2" in section


def test_the_module_table_sorts_and_shows_trends() -> None:
    merged = two_lane_report()
    history = History()
    for duration in (0.5, 0.5, 0.5, 2.0):
        run = MeasuredRun({}, {"a.py": MeasuredModule(duration, 0.01, True, content_hash="c")})
        history = merge_history(history, run, now=1)
    parsed = Page(render_html(merged, history=history))
    assert parsed.having("table", "sortable")
    rows = [attrs for tag, attrs in parsed.elements if tag == "svg"]
    assert len(rows) == 1  # a.py is the only module the history knows
    page = render_html(merged, history=history)
    assert "much slower in run 4" in page
    assert "No duration history was given" in render_html(merged)


def test_sparkline_draws_duration_outcome_and_slowdowns() -> None:
    svg = sparkline(trend_of(measured(1.0, 1.0, 1.0, 3.0)))
    page = Page(svg)
    (passed,) = page.having("path", "p")
    assert passed["d"].count("h0") == 4  # a dot per run
    (ring,) = page.having("path", "sl")  # the slowdown, ringed
    assert ring["d"] == "M85 4h0"
    points = page.having("polyline")[0]["points"].split()
    assert points == ["4,15", "31,15", "58,15", "85,4"]  # y: 20 - d / 3.0 * 16
    assert trend_text(trend_of(measured(1.0, 1.0, 1.0, 3.0))) == (
        "runs 1-4: 1.00s 1.00s 1.00s 3.00s; much slower in run 4"
    )
    failing = trend_of(measured(1.0, 1.0, outcome="failed"))
    assert Page(sparkline(failing)).having("path", "f")
    assert trend_text(failing) == "runs 1-2: 1.00s 1.00s; failed in run 1, 2"
    assert sparkline(trend_of([])) == trend_text(trend_of([])) == ""


def test_a_two_thousand_module_run_stays_small() -> None:
    modules = []
    units = []
    history = History()
    runs = []
    for index in range(2000):
        name = f"tests_{index // 50:02d}/test_m{index:04d}.py"
        modules.append(
            module(name, [result(f"{name}::test_trivial_{index}")], worker=f"w{index % 4 + 1}")
        )
        units.append(unit(name, f"w{index % 4 + 1}", index / 400, index / 400 + 0.01, tests="1"))
    for repeat in range(11):
        runs.append(
            MeasuredRun(
                {f"{m['module']}::t": MeasuredTest(0.01, "passed", True) for m in modules},
                {
                    m["module"]: MeasuredModule(0.05 + repeat / 100, 0.01, True, content_hash="c")
                    for m in modules
                },
            )
        )
    for run in runs:
        history = merge_history(history, run, now=1)
    merged = report(modules, workers=4)
    merged["timeline"] = timeline(units, {f"w{n}": (0.1, 1.0, 6.0) for n in range(1, 5)}, end=6.0)
    page = render_html(merged, history=history)
    assert len(page.encode()) < 2_000_000
    assert len(Page(page).having("i", "bar")) == 2000
