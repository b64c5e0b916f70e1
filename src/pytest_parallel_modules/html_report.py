"""PURE rendering of a merged report as one self-contained HTML page. Runs in the controller and in ``merge``.

:func:`render_html` returns the page ``report.html`` holds: no network, no
external script or stylesheet, so it opens from a CI artifact or ``file://``.
It shows

- the summary, with the same figures as the terminal's
  (:func:`~pytest_parallel_modules.summary.summary_lines`);
- the timeline (:func:`~pytest_parallel_modules.timeline.layout_timeline`): a
  lane per worker, a bar per unit of work coloured by outcome, collection and
  start-up before the first bar, idle gaps, the tail, the critical lane and the
  lower bound; hovering or tapping a bar shows what it ran;
- the failures (tracebacks folded), the flaky tests and the modules that did not
  run, with why;
- a sortable table of the modules, each with a sparkline of its duration and
  outcome over the last runs the history has seen
  (:func:`~pytest_parallel_modules.trends.module_trend`).

The timeline and table are drawn here, as HTML and inline SVG, so the page
reads without JavaScript; the small script only adds tooltips and sorting.
Every string from the report goes through :func:`html.escape`; the script
reads them back with ``textContent``, never as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
import html
import math
from typing import Final
from typing import TYPE_CHECKING

from pytest_parallel_modules.reports import failed_modules
from pytest_parallel_modules.summary import format_counts
from pytest_parallel_modules.summary import format_duration
from pytest_parallel_modules.summary import order_modules
from pytest_parallel_modules.summary import summary_lines
from pytest_parallel_modules.timeline import layout_timeline
from pytest_parallel_modules.timeline import TimelineLayout
from pytest_parallel_modules.timeline_data import module_tests
from pytest_parallel_modules.trends import could_be_flaky
from pytest_parallel_modules.trends import flake_rate
from pytest_parallel_modules.trends import FlakeRate
from pytest_parallel_modules.trends import module_trend
from pytest_parallel_modules.trends import Trend


if TYPE_CHECKING:
    from pytest_parallel_modules.history import History
    from pytest_parallel_modules.reports import MergedReport
    from pytest_parallel_modules.reports import ModuleReport
    from pytest_parallel_modules.reports import ResultRecord


#: The page lists at most this many failures, each cut to its last lines (the JSON has all).
MAX_FAILURES: Final = 200
MAX_FAILURE_LINES: Final = 400
#: ... and at most this many tests with a flake rate.
MAX_FLAKY: Final = 50

_LABELS: Final = {
    "passed": "PASSED",
    "failed": "FAILED",
    "error": "ERROR",
    "crashed": "CRASHED",
    "timeout": "TIMEOUT",
    "interrupted": "INTERRUPTED",
    "not_run": "NOT RUN",
    "skipped": "SKIPPED",
    "xfailed": "XFAILED",
    "xpassed": "XPASSED",
    "flaky": "FLAKY",
}

#: Why a module has no full result, by its outcome.
_WHY: Final = {
    "crashed": "its worker died while running it; the test in flight failed",
    "timeout": "it ran longer than --module-timeout; the test running then failed",
    "interrupted": "it was stopped part-way (-x/--maxfail, --fail-fast-modules, Ctrl-C), "
    "or its worker did not collect some of its tests",
    "not_run": "it never started: the run stopped first, no worker was left to run it, "
    "or its worker collected none of its tests",
}

_CSS: Final = """
:root{--pass:#2e9d4f;--fail:#d6363b;--crash:#8e2a9e;--timeout:#e07b12;--stop:#a0a4aa;
--idle:repeating-linear-gradient(135deg,#f5d9a0 0 3px,#fff6e3 3px 6px);--fg:#1d2127;--muted:#5f6670;
--line:#d9dde3;--bg:#fff;--panel:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:16px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.headline{font-size:16px;margin:4px 0 12px}.bad{color:var(--fail)}.good{color:var(--pass)}
.muted{color:var(--muted)}ul.lines{margin:0;padding-left:18px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;margin:6px 0;font-size:12.5px}
.legend span::before{content:"";display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-2px;border-radius:2px;background:var(--c)}
.scroll{overflow-x:auto}
.tl{position:relative;min-width:560px}
.row{display:flex;align-items:center;height:26px}
.row>b{flex:0 0 76px;font-weight:500;font-size:12.5px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap;padding-right:6px}
.row.crit>b{font-weight:700;color:var(--fail)}
.track{position:relative;flex:1;height:20px;background:var(--panel);border-radius:2px}
.track>i{position:absolute;top:0;bottom:0;min-width:1px}
.track>i.bar{cursor:pointer;border-right:1px solid var(--bg)}
.track>i.bar:hover,.track>i.bar.sel{outline:2px solid var(--fg);z-index:2}
.crit>.track>i.bar{box-shadow:inset 0 -4px 0 rgba(0,0,0,.35)}
.o-passed{background:var(--pass)}.o-failed,.o-error{background:var(--fail)}.o-crashed{background:var(--crash)}
.o-timeout{background:var(--timeout)}.o-interrupted,.o-not_run{background:var(--stop)}
.track>i.up{background:repeating-linear-gradient(90deg,#9bb6d8 0 4px,#c8d8ec 4px 8px)}
.track>i.col{background:#6c8ebf}.track>i.gap{background:var(--idle)}
.axis{position:relative;height:18px;margin-left:76px;font-size:11px;color:var(--muted)}
.axis>span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.mark{position:absolute;top:0;bottom:18px;border-left:2px dashed var(--fg);pointer-events:none;z-index:3}
.mark>span{position:absolute;top:-2px;left:3px;font-size:11px;background:var(--bg);padding:0 2px;white-space:nowrap}
.marks{position:absolute;top:0;bottom:0;left:76px;right:0;pointer-events:none}
.tail{position:absolute;top:0;bottom:18px;background:rgba(120,120,140,.12);pointer-events:none}
#tip{position:fixed;z-index:10;max-width:min(420px,90vw);background:#1d2127;color:#fff;padding:6px 8px;border-radius:4px;
font-size:12.5px;white-space:pre-line;pointer-events:none;word-break:break-all}
table{border-collapse:collapse;width:100%}th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{position:sticky;top:0;background:var(--bg);cursor:pointer;white-space:nowrap;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.n,th.n,#modules td:nth-child(n+3):nth-child(-n+7){text-align:right;font-variant-numeric:tabular-nums}
td.m,#modules td:nth-child(2){overflow-wrap:anywhere}
.st{font-weight:600;font-size:12px}.st.o-passed,.st.o-failed,.st.o-error,.st.o-crashed,.st.o-timeout,.st.o-interrupted,.st.o-not_run{background:none}
.st.o-passed{color:var(--pass)}.st.o-failed,.st.o-error{color:var(--fail)}.st.o-crashed{color:var(--crash)}
.st.o-timeout{color:var(--timeout)}.st.o-interrupted,.st.o-not_run{color:var(--muted)}
td svg{width:90px;height:24px;display:block}td svg polyline{fill:none;stroke:#6c8ebf;stroke-width:1.5}
td svg path{stroke-linecap:round;stroke-width:4;fill:none}td svg .p{stroke:var(--pass)}td svg .f{stroke:var(--fail)}
td svg .s{stroke:var(--stop)}td svg path.sl{stroke:var(--timeout);stroke-width:8}
details{margin:4px 0;border:1px solid var(--line);border-radius:4px;padding:4px 8px}
summary{cursor:pointer;word-break:break-all}pre{overflow-x:auto;background:var(--panel);padding:8px;margin:6px 0;white-space:pre}
@media (max-width:700px){main{padding:10px}.row>b{flex-basis:56px}.axis,.marks{margin-left:0}.axis{margin-left:56px}.marks{left:56px}
.hide-s,#modules tr>:nth-child(4),#modules tr>:nth-child(6),#modules tr>:nth-child(8){display:none}
th,td{padding:3px 4px}}
@media (prefers-color-scheme:dark){:root{--fg:#e6e8eb;--muted:#a3a9b1;--line:#3a3f47;--bg:#16191d;--panel:#23272e}
#tip{background:#e6e8eb;color:#16191d}}
"""

_SCRIPT: Final = """
(function(){
var tip=document.getElementById('tip'),sel=null;
function hide(){tip.hidden=true;if(sel){sel.classList.remove('sel');sel=null;}}
function show(bar,x,y){if(sel&&sel!==bar){sel.classList.remove('sel');}sel=bar;bar.classList.add('sel');
var t=bar.getAttribute('data-t'),o=/o-(\\w+)/.exec(bar.className);
tip.textContent=[bar.getAttribute('data-m'),'worker '+bar.parentNode.parentNode.getAttribute('data-lane'),
t===null?'tests: ?':t+(t==='1'?' test':' tests'),o?o[1].replace('_',' ').toUpperCase():'',bar.getAttribute('data-d')].join('\\n');
tip.hidden=false;
var w=tip.offsetWidth,h=tip.offsetHeight,vw=document.documentElement.clientWidth;
tip.style.left=Math.max(4,Math.min(x+12,vw-w-4))+'px';tip.style.top=(y+16+h>window.innerHeight?y-h-12:y+16)+'px';}
var tl=document.querySelector('.tl');
if(tl){tl.addEventListener('mousemove',function(e){var b=e.target.closest('.bar');if(b){show(b,e.clientX,e.clientY);}else if(sel){hide();}});
tl.addEventListener('mouseleave',hide);
tl.addEventListener('click',function(e){var b=e.target.closest('.bar');if(b){show(b,e.clientX,e.clientY);e.stopPropagation();}});}
document.addEventListener('click',hide);window.addEventListener('scroll',hide,true);
document.querySelectorAll('table.sortable').forEach(function(table){
var heads=table.tHead.rows[0].cells;
Array.prototype.forEach.call(heads,function(th,col){th.addEventListener('click',function(){
var asc=th.getAttribute('aria-sort')!=='ascending',body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
var num=th.classList.contains('n');
rows.sort(function(a,b){var x=a.cells[col].getAttribute('data-v'),y=b.cells[col].getAttribute('data-v');
if(x===null){x=a.cells[col].textContent;}if(y===null){y=b.cells[col].textContent;}
var r=num?parseFloat(x)-parseFloat(y):(x<y?-1:x>y?1:0);return asc?r:-r;});
Array.prototype.forEach.call(heads,function(h){h.removeAttribute('aria-sort');});
th.setAttribute('aria-sort',asc?'ascending':'descending');
var frag=document.createDocumentFragment();rows.forEach(function(r){frag.appendChild(r);});body.appendChild(frag);});});});
})();
"""


def _e(text: object) -> str:
    """Escape ``text`` for HTML text and for attribute values between double quotes."""
    return html.escape(str(text), quote=True)


def _percent(seconds: float, scale: float) -> str:
    return f"{seconds / scale * 100:.3f}%" if scale > 0 else "0%"


def _span(start: float, end: float, scale: float) -> str:
    return f"left:{_percent(start, scale)};width:{_percent(max(end - start, 0.0), scale)}"


def _tick_step(scale: float) -> float:
    """A round step that puts at most ten ticks on ``scale`` seconds."""
    for step in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900):
        if scale / step <= 10:
            return float(step)
    return float(math.ceil(scale / 10 / 3600) * 3600)


def _tick_label(seconds: float, step: float) -> str:
    if step >= 60:
        minutes, secs = divmod(round(seconds), 60)
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    decimals = 0 if step >= 1 else (1 if step >= 0.1 else 2)
    return f"{seconds:.{decimals}f}s"


def _legend() -> str:
    items = (
        ("passed", "var(--pass)"),
        ("failed / error", "var(--fail)"),
        ("crashed", "var(--crash)"),
        ("timeout", "var(--timeout)"),
        ("interrupted / not run", "var(--stop)"),
        ("collection", "#6c8ebf"),
        ("worker start-up", "#9bb6d8"),
        ("idle", "#f5d9a0"),
    )
    return (
        '<div class="legend">'
        + "".join(f'<span style="--c:{color}">{_e(label)}</span>' for label, color in items)
        + "</div>"
    )


def render_timeline(layout: TimelineLayout) -> str:
    """PURE: the timeline section's HTML (lanes, bars, gaps, marks, axis)."""
    if not layout.bars and not layout.lanes:
        return '<p class="muted">No module ran.</p>'
    scale = max(layout.end_s, layout.lower_bound_end_s or 0.0, 0.001)
    parts = [_legend(), '<div class="scroll"><div class="tl">']
    if layout.collected_s is not None:
        parts.append(
            '<div class="row ctl"><b title="controller">controller</b><div class="track">'
            f'<i class="col" style="{_span(0.0, layout.collected_s, scale)}" '
            f'title="collection: {_e(format_duration(layout.collected_s))}"></i></div></div>'
        )
    for index, lane in enumerate(layout.lanes):
        cells: list[str] = []
        if lane.spawned_s is not None and lane.ready_s is not None:
            cells.append(
                f'<i class="up" style="{_span(lane.spawned_s, lane.ready_s, scale)}" '
                f'title="start-up: {_e(format_duration(lane.ready_s - lane.spawned_s))}"></i>'
            )
        for gap in layout.gaps:
            if gap.lane == index:
                cells.append(
                    f'<i class="gap" style="{_span(gap.start_s, gap.end_s, scale)}" '
                    f'title="idle: {_e(format_duration(gap.duration_s))}"></i>'
                )
        for bar in layout.bars:
            if bar.lane != index:
                continue
            # The tooltip (module, worker, tests, outcome, duration) is put together by the
            # script from these attributes, the lane's name and the class: a 2,000-module
            # page stays small.
            tests = "" if bar.tests is None else f' data-t="{bar.tests}"'
            cells.append(
                f'<i class="bar o-{_e(bar.outcome)}" style="{_span(bar.start_s, bar.end_s, scale)}" '
                f'data-m="{_e(bar.module)}"{tests} data-d="{_e(format_duration(bar.duration_s))}"></i>'
            )
        row_class = "row crit" if lane.critical else "row"
        title = (
            f"{lane.name}: busy {format_duration(lane.busy_s)}, idle {format_duration(lane.idle_s)}"
        )
        parts.append(
            f'<div class="{row_class}" data-lane="{_e(lane.name)}"><b title="{_e(title)}">'
            f'{_e(lane.name)}</b><div class="track">{"".join(cells)}</div></div>'
        )
    step = _tick_step(scale)
    ticks = []
    value = 0.0
    while value <= scale + 1e-9:
        ticks.append(
            f'<span style="left:{_percent(value, scale)}">{_tick_label(value, step)}</span>'
        )
        value += step
    parts.append(f'<div class="axis">{"".join(ticks)}</div>')
    # Marks span the tracks only, so they sit inside a box shifted past the lane labels.
    marks: list[str] = []
    if layout.last_end_s is not None and layout.end_s - layout.last_end_s > 0.001:
        marks.append(
            f'<div class="tail" style="{_span(layout.last_end_s, layout.end_s, scale)}" '
            f'title="tail: {_e(format_duration(layout.end_s - layout.last_end_s))} after the last '
            'unit (workers ending)"></div>'
        )
    if layout.lower_bound_end_s is not None:
        marks.append(
            f'<div class="mark" style="left:{_percent(layout.lower_bound_end_s, scale)}" '
            f"title=\"lower bound: the first unit's start + LB = "
            f'{_e(format_duration(layout.lower_bound_s))}"><span>LB</span></div>'
        )
    parts.append('<div class="marks">' + "".join(marks) + "</div>")
    parts.append("</div></div>")
    parts.append(_critical_text(layout))
    return "".join(parts)


def _critical_text(layout: TimelineLayout) -> str:
    if layout.critical_lane is None or layout.last_end_s is None:
        return ""
    lane = layout.lanes[layout.critical_lane]
    bars = layout.critical_bars
    longest = layout.longest_critical_bar
    startup = (
        ""
        if lane.spawned_s is None or lane.ready_s is None
        else f", after a start-up of {format_duration(lane.ready_s - lane.spawned_s)}"
    )
    held = (
        ""
        if longest is None
        else f"; it was held longest by <code>{_e(longest.module)}</code> "
        f"({_e(format_duration(longest.duration_s))})"
    )
    lower = (
        ""
        if layout.lower_bound_end_s is None
        else " The dashed line is the lower bound: the first unit's start plus LB = max(longest "
        f"unit, sum of units / workers) = {_e(format_duration(layout.lower_bound_s))}, of the "
        "units as drawn; no scheduler handing them out could have ended sooner."
    )
    return (
        f'<p class="crit-text">Critical path: <b>{_e(lane.name)}</b> ended last, at '
        f"{_e(format_duration(layout.last_end_s))}, running {len(bars)} unit"
        f"{'' if len(bars) == 1 else 's'} in {_e(format_duration(lane.busy_s))}{startup}{held}."
        f"{lower}</p>"
    )


#: A sparkline's size, in the units of its coordinates (integers keep the markup short).
_SPARK_WIDTH: Final = 90
_SPARK_HEIGHT: Final = 24
_SPARK_PAD: Final = 4


def sparkline(trend: Trend) -> str:
    """PURE: an inline SVG of a trend: duration as a line, outcome as dots, slowdowns ringed.

    Its words are :func:`trend_text`.

    Dots are drawn as zero-length path segments with round caps, one path per kind of
    outcome: a few bytes a point, which matters in a table of 2,000 modules.
    """
    points = trend.points
    if not points:
        return ""
    top = max(point.duration_s for point in points) or 1.0
    step = (_SPARK_WIDTH - 2 * _SPARK_PAD) // max(len(points) - 1, 1)
    span = _SPARK_HEIGHT - 2 * _SPARK_PAD
    coordinates = [
        (
            _SPARK_PAD + index * step,
            round(_SPARK_HEIGHT - _SPARK_PAD - point.duration_s / top * span),
        )
        for index, point in enumerate(points)
    ]
    line = " ".join(f"{x},{y}" for x, y in coordinates)
    dots: dict[str, list[str]] = {"p": [], "f": [], "s": []}
    slower = []
    for (x, y), point in zip(coordinates, points, strict=True):
        kind = (
            "f"
            if point.outcome in ("failed", "error")
            else "s"
            if point.outcome == "skipped"
            else "p"
        )
        dots[kind].append(f"M{x} {y}h0")
        if point.slower:
            slower.append(f"M{x} {y}h0")
    # A slowdown is a wide orange dot drawn under the outcome's dot: a ring around it.
    shapes = f'<path class="sl" d="{"".join(slower)}"/>' if slower else ""
    shapes += "".join(f'<path class="{kind}" d="{"".join(d)}"/>' for kind, d in dots.items() if d)
    return (
        f'<svg viewBox="0 0 {_SPARK_WIDTH} {_SPARK_HEIGHT}">'
        f'<polyline points="{line}"/>{shapes}</svg>'
    )


def trend_text(trend: Trend) -> str:
    """PURE: a trend in words, for the sparkline's tooltip (``runs 3-12: 0.41s ...``).

    Kept in the table cell's ``title`` rather than in an SVG ``<title>`` element:
    2,000 fewer elements make a 2,000-module page render a quarter faster.
    """
    points = trend.points
    if not points:
        return ""
    failing = [point.run for point in points if point.outcome in ("failed", "error")]
    return (
        f"runs {points[0].run}-{points[-1].run}: "
        + " ".join(format_duration(point.duration_s) for point in points)
        + (f"; failed in run {', '.join(map(str, failing))}" if failing else "")
        + "".join(f"; much slower in run {point.run}" for point in trend.slowdowns)
    )


def _cut(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= MAX_FAILURE_LINES:
        return text
    cut = len(lines) - MAX_FAILURE_LINES
    return "\n".join(
        [f"... ({cut} lines cut; the JSON report has them all)", *lines[-MAX_FAILURE_LINES:]]
    )


def _failures(ordered: Sequence[ModuleReport]) -> str:
    failing: list[tuple[ModuleReport, ResultRecord]] = [
        (module, result)
        for module in ordered
        for result in module["tests"]
        if result["outcome"] in ("failed", "error")
    ]
    if not failing:
        return '<p class="muted">None.</p>'
    parts = []
    for module, result in failing[:MAX_FAILURES]:
        label = result["nodeid"] + (f" {result['subtest']}" if result["subtest"] else "")
        where = f" at {result['when']}" if result["when"] else ""
        worker = f" on {module['worker']}" if module["worker"] else ""
        message = f": {_e(result['message'])}" if result["message"] else ""
        text = result["longrepr"] or result["message"] or "(no details)"
        parts.append(
            f'<details><summary><code>{_e(label)}</code> <span class="st o-{_e(result["outcome"])}">'
            f"{_e(result['outcome'])}</span>{_e(where + worker)}{message}</summary>"
            f"<pre>{_e(_cut(text))}</pre></details>"
        )
    if len(failing) > MAX_FAILURES:
        parts.append(
            f'<p class="muted">... and {len(failing) - MAX_FAILURES} more; see the JSON report.</p>'
        )
    return "".join(parts)


def _flaky(merged: MergedReport, history: History | None) -> str:
    retried = sorted(nodeid for module in merged["modules"] for nodeid in module.get("flaky", []))
    rates: list[FlakeRate] = []
    if history is not None:
        seen: set[str] = set()
        for module in merged["modules"]:
            # Plain passes too: a test that passes now after failing before is one of them.
            for nodeid, _, _, _ in module_tests(module):
                record = history.tests.get(nodeid)
                if record is None or nodeid in seen or not could_be_flaky(record):
                    continue
                seen.add(nodeid)
                rate = flake_rate(nodeid, record)
                if rate.changes:
                    rates.append(rate)
        rates.sort(key=lambda rate: (-rate.rate, -rate.changes, rate.nodeid))
    parts: list[str] = []
    if retried:
        parts.append("<p>Failed, then passed on a retry in this run:</p><ul>")
        parts.extend(f"<li><code>{_e(nodeid)}</code></li>" for nodeid in retried)
        parts.append("</ul>")
    if rates:
        parts.append(
            "<p>Outcome changed between runs while the module file stayed the same "
            "(flake rate = changes / comparisons over the last runs the history has seen):</p>"
            '<div class="scroll"><table><thead><tr><th>Test</th><th class="n">Flake rate</th>'
            '<th class="n">Changes</th><th class="hide-s">Last outcomes, newest first</th></tr>'
            "</thead><tbody>"
        )
        for rate in rates[:MAX_FLAKY]:
            outcomes = " ".join(_LABELS.get(outcome, outcome)[0] for outcome in rate.outcomes)
            parts.append(
                f'<tr><td class="m"><code>{_e(rate.nodeid)}</code></td>'
                f'<td class="n">{rate.rate:.0%}</td><td class="n">{rate.changes}/{rate.comparisons}</td>'
                f'<td class="hide-s mono">{_e(outcomes)}</td></tr>'
            )
        parts.append("</tbody></table></div>")
        if len(rates) > MAX_FLAKY:
            parts.append(f'<p class="muted">... and {len(rates) - MAX_FLAKY} more.</p>')
    return "".join(parts) or '<p class="muted">None.</p>'


def _not_run(ordered: Sequence[ModuleReport]) -> str:
    rows = [module for module in ordered if module["outcome"] in _WHY]
    if not rows:
        return '<p class="muted">None: every module ran to its end.</p>'
    items = []
    for module in rows:
        counts = module["counts"]
        detail = (
            f" ({counts['not_run']} of {counts['tests']} tests not run)"
            if counts["not_run"]
            else ""
        )
        items.append(
            f'<li><code>{_e(module["module"])}</code> <span class="st o-{_e(module["outcome"])}">'
            f"{_e(_LABELS[module['outcome']])}</span>{_e(detail)}: {_e(_WHY[module['outcome']])}</li>"
        )
    return "<ul>" + "".join(items) + "</ul>"


def _module_table(ordered: Sequence[ModuleReport], history: History | None) -> str:
    # Numeric cells are right-aligned and the narrow-screen columns hidden by position
    # (CSS nth-child), not by a class on every cell: a 2,000-row table stays small.
    head = (
        '<div class="scroll"><table class="sortable" id="modules"><thead><tr>'
        '<th>Status</th><th>Module</th><th class="n">Tests</th><th class="n">Passed</th>'
        '<th class="n">Failed</th><th class="n">Skipped</th><th class="n">Duration</th>'
        "<th>Worker</th><th>Trend</th></tr></thead><tbody>"
    )
    rows = []
    for rank, module in enumerate(ordered):
        counts = module["counts"]
        outcome = module["outcome"]
        record = None if history is None else history.modules.get(module["module"])
        trend = None if record is None else module_trend(record)
        # The trend column sorts modules that got much slower first (descending).
        slow = 1 if trend is not None and trend.slowdowns else 0
        rows.append(
            f'<tr><td class="st o-{_e(outcome)}" data-v="{rank}">{_e(_LABELS[outcome])}</td>'
            f"<td>{_e(module['module'])}</td><td>{counts['tests']}</td><td>{counts['passed']}</td>"
            f"<td>{counts['failed'] + counts['errors']}</td><td>{counts['skipped']}</td>"
            f'<td data-v="{module["duration_s"]!r}">{_e(format_duration(module["duration_s"]))}</td>'
            f"<td>{_e(module['worker'] or '-')}</td>"
            + (
                '<td data-v="0"></td></tr>'
                if trend is None
                else f'<td data-v="{slow}" title="{_e(trend_text(trend))}">{sparkline(trend)}</td></tr>'
            )
        )
    return head + "".join(rows) + "</tbody></table></div>"


def render_html(
    merged: MergedReport,
    *,
    history: History | None = None,
    rerun_command: str | None = None,
) -> str:
    """PURE: the whole self-contained HTML page of ``merged``.

    Called where the merged report is written (a run's report directory, ``merge``).

    :param history: the duration history after this run, for trends and flake rates;
        ``None`` leaves them out.
    :param rerun_command: the command that reruns the failed modules, as the terminal
        summary shows it.
    """
    ordered = order_modules(merged["modules"])
    problems = failed_modules(merged)
    totals = merged["totals"]
    layout = layout_timeline(merged)
    status = "failed" if problems else "passed"
    headline = (
        f'<p class="headline"><b class="{"bad" if problems else "good"}">{_e(status.upper())}</b> '
        f"{_e(format_counts(totals))} in {len(ordered)} module{'' if len(ordered) == 1 else 's'}, "
        f"{_e(format_duration(merged['wall_s']))} wall time with {merged['workers']} worker"
        f"{'' if merged['workers'] == 1 else 's'}</p>"
    )
    lines = "".join(
        f"<li>{_e(line)}</li>" for line in summary_lines(merged, rerun_command=rerun_command)
    )
    measured = (
        ""
        if layout.measured
        else '<p class="muted">This report has no timeline of its own (an older release wrote '
        "it): bars come from each module's start and end; collection, start-up and tests are not known.</p>"
    )
    trends_note = (
        ""
        if history is not None
        else '<p class="muted">No duration history was given: no trends.</p>'
    )
    title = f"{status}: {format_counts(totals)} - pytest-parallel-modules"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="generator" content="pytest-parallel-modules">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>pytest-parallel-modules report</h1>"
        f'<p class="muted">{_e(merged["created"])} &middot; rootdir <code>{_e(merged["rootdir"])}</code>'
        + (
            f" &middot; snapshot <code>{_e(merged['snapshot'][:12])}</code>"
            if merged["snapshot"]
            else ""
        )
        + f"</p>{headline}"
        f'<section id="summary"><h2>Summary</h2><ul class="lines">{lines}</ul></section>'
        f'<section id="timeline"><h2>Timeline</h2>{measured}{render_timeline(layout)}</section>'
        f'<section id="failures"><h2>Failures</h2>{_failures(ordered)}</section>'
        f'<section id="flaky"><h2>Flaky tests</h2>{_flaky(merged, history)}</section>'
        f'<section id="not-run"><h2>Modules that did not run to their end</h2>{_not_run(ordered)}</section>'
        f'<section id="modules-section"><h2>Modules</h2>{trends_note}'
        f"{_module_table(ordered, history)}</section>"
        f'</main><div id="tip" hidden></div><script>{_SCRIPT}</script></body></html>\n'
    )
