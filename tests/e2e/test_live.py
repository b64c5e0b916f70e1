"""End to end: the live progress display on a real (pseudo-)terminal, and its absence elsewhere.

The terminal tests run pytest on a pseudo-terminal and feed everything it wrote
into :class:`Screen`, a small VT100 emulation, to see the screen a user would be
left with: no remains of the display, no line drawn over another, and pytest's
own lines in their usual order.
"""

from __future__ import annotations

from collections.abc import Mapping
import fcntl
import fnmatch
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

from tests.conftest import GitRepo


pytestmark = pytest.mark.e2e

COLUMNS = 100
LINES = 30
LIVE_PLUGIN_NAME = "pytest_parallel_modules-live"
#: What the display draws and nothing else prints: a worker line, the bar, the ETA.
LIVE_REMAINS = re.compile(r"^w\d+  |━|ETA ")
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"

_TOKEN = re.compile(
    r"\x1b\[(?P<params>[0-9;?]*)(?P<final>[@-~])"  # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (pytest's terminal progress), ignored
    r"|\x1b[()][0-9A-Za-z]|\x1b[=>78]"  # charset and keypad modes, ignored
    r"|(?P<control>[\r\n\b\t\x07])"
    r"|(?P<text>[^\x1b\r\n\b\t\x07]+)"
)


class Screen:
    """Enough of a VT100 for what pytest and rich write: text with auto-wrap,
    CR/LF, cursor moves, erase in line/display, scrolling into a history."""

    def __init__(self, columns: int, lines: int) -> None:
        self.columns = columns
        self.lines = lines
        self.history: list[str] = []
        self.rows = [[" "] * columns for _ in range(lines)]
        self.row = 0
        self.col = 0
        # xterm's "pending wrap": after the last column, the next character wraps.
        self.wrap_next = False

    def feed(self, text: str) -> None:
        position = 0
        while position < len(text):
            match = _TOKEN.match(text, position)
            if match is None:
                raise AssertionError(
                    f"unknown escape sequence at {text[position : position + 20]!r}"
                )
            position = match.end()
            if match.group("text") is not None:
                for char in match.group("text"):
                    self._put(char)
            elif match.group("control") is not None:
                self._control(match.group("control"))
            elif match.group("final") is not None:
                self._csi(match.group("params"), match.group("final"))

    def _put(self, char: str) -> None:
        if self.wrap_next:
            self.col = 0
            self._line_feed()
        self.rows[self.row][self.col] = char
        if self.col == self.columns - 1:
            self.wrap_next = True
        else:
            self.col += 1

    def _line_feed(self) -> None:
        self.wrap_next = False
        if self.row == self.lines - 1:
            self.history.append("".join(self.rows.pop(0)).rstrip())
            self.rows.append([" "] * self.columns)
        else:
            self.row += 1

    def _control(self, char: str) -> None:
        if char == "\r":
            self.col = 0
            self.wrap_next = False
        elif char == "\n":
            self._line_feed()
        elif char == "\b":
            self.col = max(0, self.col - 1)
            self.wrap_next = False
        elif char == "\t":
            self.col = min(self.columns - 1, (self.col // 8 + 1) * 8)

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?") or final == "m":
            return  # private modes (cursor visibility) and colours move nothing
        numbers = [int(part) if part else 0 for part in params.split(";")] if params else []
        count = max(1, numbers[0]) if numbers else 1
        self.wrap_next = False
        if final == "A":
            self.row = max(0, self.row - count)
        elif final == "B":
            self.row = min(self.lines - 1, self.row + count)
        elif final == "C":
            self.col = min(self.columns - 1, self.col + count)
        elif final == "D":
            self.col = max(0, self.col - count)
        elif final == "G":
            self.col = min(self.columns - 1, count - 1)
        elif final in "Hf":
            row, col = [*numbers, 1, 1][:2]
            self.row = min(self.lines - 1, max(1, row) - 1)
            self.col = min(self.columns - 1, max(1, col) - 1)
        elif final == "K":
            mode = numbers[0] if numbers else 0
            line = self.rows[self.row]
            start, end = {0: (self.col, self.columns), 1: (0, self.col + 1)}.get(
                mode, (0, self.columns)
            )
            line[start:end] = [" "] * (end - start)
        elif final == "J":
            mode = numbers[0] if numbers else 0
            if mode == 0:
                self.rows[self.row][self.col :] = [" "] * (self.columns - self.col)
                for row in range(self.row + 1, self.lines):
                    self.rows[row] = [" "] * self.columns
            else:
                self.rows = [[" "] * self.columns for _ in range(self.lines)]
        else:
            raise AssertionError(f"unexpected control sequence CSI {params}{final}")

    def transcript(self) -> list[str]:
        """Every line ever scrolled off plus the screen, without trailing blank lines."""
        lines = self.history + ["".join(row).rstrip() for row in self.rows]
        while lines and not lines[-1]:
            lines.pop()
        return lines


def test_screen_emulation_basics() -> None:
    screen = Screen(10, 3)
    screen.feed("abc\r\ndef\x1b[1A\r\x1b[2Kxy\x1b[1B\r\n")
    screen.feed("0123456789wrapped\r\nlast")
    assert screen.transcript() == ["xy", "def", "0123456789", "wrapped", "last"]


def run_in_pty(
    args: list[str],
    cwd: os.PathLike[str],
    env: Mapping[str, str | None] | None = None,
    timeout: float = 60,
    interrupt_on: str | None = None,
    columns: int = COLUMNS,
    chunks: list[tuple[float, bytes]] | None = None,
) -> tuple[int, str]:
    """Run ``args`` on a pseudo-terminal of ``columns`` x LINES; return its exit code and output.

    :param interrupt_on: press Ctrl-C (SIGINT to the process group, as a terminal
        does) once the output holds this text.
    :param chunks: if given, filled with ``(seconds since the start, bytes)`` of each
        read, so a test can look at the screen as it was at a given moment
        (:func:`frame_at`).
    """
    environ = dict(os.environ)
    for name in ("CI", "BUILD_NUMBER", "NO_COLOR", "PY_COLORS", "FORCE_COLOR", "PYTEST_ADDOPTS"):
        environ.pop(name, None)
    environ.update(TERM="xterm-256color", COLUMNS=str(columns), LINES=str(LINES))
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    controller_fd, terminal_fd = pty.openpty()
    termios_size = struct.pack("HHHH", LINES, columns, 0, 0)
    fcntl.ioctl(terminal_fd, termios.TIOCSWINSZ, termios_size)
    process = subprocess.Popen(
        args,
        cwd=cwd,
        env=environ,
        stdin=terminal_fd,
        stdout=terminal_fd,
        stderr=terminal_fd,
        close_fds=True,
        start_new_session=True,
    )
    os.close(terminal_fd)
    output = bytearray()
    began = time.monotonic()
    deadline = began + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"pytest on a terminal ran over {timeout}s:\n{output.decode()}"
                )
            ready, _, _ = select.select([controller_fd], [], [], left)
            if not ready:
                continue
            try:
                chunk = os.read(controller_fd, 65536)
            except OSError:  # EIO: every process holding the terminal exited
                break
            if not chunk:
                break
            output += chunk
            if chunks is not None:
                chunks.append((time.monotonic() - began, chunk))
            if interrupt_on is not None and interrupt_on.encode() in output:
                interrupt_on = None
                os.killpg(process.pid, signal.SIGINT)
        returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller_fd)
    return returncode, output.decode("utf-8", errors="replace")


def screen_of(output: str, columns: int = COLUMNS) -> list[str]:
    screen = Screen(columns, LINES)
    screen.feed(output)
    return screen.transcript()


#: What ends each frame of the display: the cursor back up to the line above it.
_FRAME_END = re.compile(r"\x1b\[\d+A\r")


def frame_at(chunks: list[tuple[float, bytes]], at: float, columns: int) -> list[str]:
    """The screen (its visible lines) as the last whole frame drawn before ``at`` left it."""
    text = b"".join(chunk for when, chunk in chunks if when <= at).decode("utf-8", "replace")
    ends = [match.end() for match in _FRAME_END.finditer(text)]
    assert ends, f"no frame was drawn in the first {at:.1f}s"
    screen = Screen(columns, LINES)
    screen.feed(text[: ends[-1]])
    return ["".join(row).rstrip() for row in screen.rows]


def first_time(chunks: list[tuple[float, bytes]], text: str) -> float:
    """When the output first held ``text`` (seconds since the start)."""
    seen = b""
    for when, chunk in chunks:
        seen += chunk
        if text.encode() in seen:
            return when
    raise AssertionError(f"{text!r} never appeared")


def pytest_args(*args: str) -> list[str]:
    # -p no:randomly: the order of the header lines and of modules stays put when
    # pytest-randomly happens to be installed.
    return [sys.executable, "-m", "pytest", "-p", "no:randomly", *args]


def write_suite(pytester: pytest.Pytester) -> None:
    """Three modules of three tests, one failing; a little slow, so the display redraws."""
    for name, failing in (("test_a", False), ("test_b", True), ("test_c", False)):
        pytester.makepyfile(
            **{
                name: f"""
                import time
                import pytest

                @pytest.mark.parametrize("n", range(3))
                def test_n(n):
                    time.sleep(0.15)
                    assert not ({failing} and n == 1)
                """
            }
        )


def collection_index(lines: list[str]) -> int:
    return next(index for index, line in enumerate(lines) if line.startswith("collected "))


def test_live_display_draws_then_leaves_a_clean_screen(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    write_suite(pytester)
    git_repo.commit_all("suite")
    returncode, output = run_in_pty(pytest_args("--parallel-modules=2"), pytester.path)
    lines = screen_of(output)
    text = "\n".join(lines)
    assert returncode == pytest.ExitCode.TESTS_FAILED, text

    # The display was drawn: a worker line, the overall line (ANSI codes removed).
    plain = re.sub(r"\x1b\[[0-9;?]*[@-~]", "", output)
    assert re.search(r"^w[12]  test_[abc]\.py +\d/3 ", plain, re.MULTILINE), plain
    assert re.search(r"\d/9 tests  \d/3 modules", plain), plain
    # The cursor it hid is shown again.
    assert output.count(HIDE_CURSOR) >= 1
    assert output.count(HIDE_CURSOR) == output.count(SHOW_CURSOR)

    # The screen it leaves: nothing of the display, no per-test dots, no module lines.
    assert not [line for line in lines if LIVE_REMAINS.search(line)], text
    assert not [line for line in lines if re.match(r"\[\d/3\] ", line)], text
    # Between "collected" and the failures: our two collection lines, the line that
    # said test_b.py failed (written as it failed, never redrawn), then the run's
    # record with pytest's [100%] at the end, each whole, nothing drawn over them.
    start = collection_index(lines)
    assert lines[start] == "collected 9 items", text
    failures = lines.index(next(line for line in lines if " FAILURES " in line))
    between = lines[start + 1 : failures]
    assert between[-2] == " FAIL  test_b.py::test_n[1]", text
    # (A long line wraps on the emulated terminal as it would on a real one.)
    assert fnmatch.fnmatch(
        "".join(between[:-2]),
        "parallel-modules: each worker in its own git worktree*"
        "parallel-modules: 3 modules on 2 of 2 workers*",
    ), text
    record = between[-1]
    assert fnmatch.fnmatch(
        record, "parallel-modules: 3/3 modules, 9/9 tests, 1 failed in *s *[[]100%[]]"
    ), record
    assert len(record) == COLUMNS - 1, record
    # Failures and summaries are printed as usual after the display is gone.
    assert "parallel-modules summary" in text
    assert re.fullmatch(r"=+ 1 failed, 8 passed in [\d.]+s =+", lines[-1]), text


def test_report_during_the_run_is_written_above_the_display(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """A module a worker cannot collect makes the controller report it mid-run, when
    the module is handed out; the terminal reporter's line lands where the display
    was, unbroken."""
    write_suite(pytester)
    # Five tests: planned first, so it is a worker's first module, handed out while the
    # display is up. The pause (in the worker's own collection, which starts while the
    # controller collects) puts the report past the terminal reporter's 0.5s limit
    # between two "collecting" lines, so the line is written every time.
    pytester.makepyfile(
        test_crash="""
        import os
        import time
        import pytest

        if os.environ.get("PYTEST_PARALLEL_MODULES_WORKER"):
            time.sleep(1.0)
            raise ImportError("only the workers lack this module's dependency")

        @pytest.mark.parametrize("n", range(5))
        def test_never(n):
            pass
        """
    )
    git_repo.commit_all("suite")
    returncode, output = run_in_pty(pytest_args("--parallel-modules=2"), pytester.path)
    lines = screen_of(output)
    text = "\n".join(lines)
    assert returncode == pytest.ExitCode.TESTS_FAILED, text
    assert "INTERNALERROR" not in text
    assert not [line for line in lines if LIVE_REMAINS.search(line)], text
    start = collection_index(lines)
    errors = next(index for index, line in enumerate(lines) if " ERRORS " in line)
    between = lines[start + 1 : errors]
    # The reporter's own line about the error, whole, the failed module's line, then
    # the run's record.
    assert between[-3] == "collecting 14 items / 1 error", text
    assert between[-2] == " FAIL  test_b.py::test_n[1]", text
    assert fnmatch.fnmatch(
        between[-1], "parallel-modules: 4/4 modules, 9/14 tests, 1 failed in *s *[[] 64%[]]"
    ), text
    assert re.search(r"worker w\d did not collect 5 test\(s\) of test_crash.py", text), text
    assert "only the workers lack this module's dependency" in text
    assert re.fullmatch(r"=+ 1 failed, 8 passed, 1 error in [\d.]+s =+", lines[-1]), text


def test_lines_written_during_the_run_stay_whole_above_the_display(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    """A plugin (or the controller) writing a status line mid-run: it lands on the line
    the cursor waits on above the display and the next frame is drawn below it."""
    write_suite(pytester)
    pytester.makeconftest(
        """
        def pytest_parallel_modules_module_finished(config, report):
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            reporter.write_line("a plugin says: " + report["module"] + " is done")
            # A second line in the same hook: before the fix, this one landed on a
            # line of the display and kept that line's tail.
            reporter.write_line("and again: " + report["module"])
        """
    )
    git_repo.commit_all("suite")
    returncode, output = run_in_pty(pytest_args("--parallel-modules=2"), pytester.path)
    lines = screen_of(output)
    text = "\n".join(lines)
    assert returncode == pytest.ExitCode.TESTS_FAILED, text
    assert not [line for line in lines if LIVE_REMAINS.search(line)], text
    start = collection_index(lines)
    failures = lines.index(next(line for line in lines if " FAILURES " in line))
    said = [line for line in lines[start:failures] if "a plugin says" in line]
    assert sorted(said) == [f"a plugin says: test_{name}.py is done" for name in "abc"], text
    again = [line for line in lines[start:failures] if "and again" in line]
    assert sorted(again) == [f"and again: test_{name}.py" for name in "abc"], text
    assert fnmatch.fnmatch(lines[failures - 1], "parallel-modules: 3/3 modules, 9/9 tests*"), text


def test_ctrl_c_leaves_a_clean_screen_and_the_cursor_shown(
    pytester: pytest.Pytester, git_repo: GitRepo
) -> None:
    pytester.makepyfile(
        test_a="import time\n\ndef test_long():\n    time.sleep(30)\n",
        test_b="def test_quick():\n    pass\n",
    )
    git_repo.commit_all("suite")
    started = time.monotonic()
    returncode, output = run_in_pty(
        pytest_args("--parallel-modules=2"), pytester.path, interrupt_on="test_a.py"
    )
    lines = screen_of(output)
    text = "\n".join(lines)
    assert time.monotonic() - started < 25, text
    assert returncode == pytest.ExitCode.INTERRUPTED, text
    assert output.count(HIDE_CURSOR) == output.count(SHOW_CURSOR) >= 1
    assert not [line for line in lines if LIVE_REMAINS.search(line)], text
    assert any(line.startswith("parallel-modules: ") and " modules, " in line for line in lines)
    assert "KeyboardInterrupt" in text


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("-p", f"no:{LIVE_PLUGIN_NAME}"), {}),
        (("-q",), {}),
        (("-v",), {}),
        (("--color=no",), {}),
        ((), {"NO_COLOR": "1"}),
        ((), {"CI": "true"}),
    ],
    ids=["switched-off", "quiet", "verbose", "color-no", "NO_COLOR", "CI"],
)
def test_no_live_display_on_a_terminal_when_not_wanted(
    pytester: pytest.Pytester,
    git_repo: GitRepo,
    args: tuple[str, ...],
    env: dict[str, str],
) -> None:
    pytester.makepyfile(test_a="def test_one(): pass", test_b="def test_two(): pass")
    git_repo.commit_all("suite")
    returncode, output = run_in_pty(pytest_args("--parallel-modules=2", *args), pytester.path, env)
    lines = screen_of(output)
    text = "\n".join(lines)
    assert returncode == pytest.ExitCode.OK, text
    assert HIDE_CURSOR not in output
    assert not [line for line in lines if LIVE_REMAINS.search(line)], text
    module_lines = [line for line in lines if re.match(r"\[\d/2\] PASSED test_[ab]\.py ", line)]
    if "-q" in args:
        # As quiet as a plain -q run: no line per module.
        assert not module_lines, text
    else:
        # The one-line-per-module output stays.
        assert module_lines, text
    if "-v" in args:
        assert any(re.match(r"\[w\d\] .*PASSED test_a\.py::test_one", line) for line in lines)


def test_no_live_display_without_a_terminal(pytester: pytest.Pytester, git_repo: GitRepo) -> None:
    pytester.makepyfile(test_a="def test_one(): pass", test_b="def test_two(): pass")
    git_repo.commit_all("suite")
    result = pytester.runpytest_subprocess("--parallel-modules=2", "--color=yes", timeout=60)
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    assert HIDE_CURSOR not in output
    assert "ETA " not in output
    result.stdout.fnmatch_lines_random(
        [
            "[[]?/2[]] PASSED test_a.py .  1 passed in *",
            "[[]?/2[]] PASSED test_b.py .  1 passed in *",
        ]
    )
    result.stdout.no_fnmatch_line("parallel-modules: 2/2 modules*")


@pytest.mark.parametrize("columns", [80, 160])
def test_the_display_ticks_names_the_running_test_and_keeps_failed_modules(
    pytester: pytest.Pytester, git_repo: GitRepo, columns: int
) -> None:
    """During a 3 s test with nothing else to report, frames a second apart differ (the
    clocks run); the line that says a module failed stays on the screen to the end."""
    pytester.makepyfile(
        # Fewest tests: planned last, so the long test runs alone once the others are done.
        test_a="import time\n\ndef test_long():\n    time.sleep(3)\n",
        test_b="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_n(n):
            assert n != 1
        """,
        test_c="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_n(n):
            pass
        """,
    )
    git_repo.commit_all("suite")
    chunks: list[tuple[float, bytes]] = []
    returncode, output = run_in_pty(
        pytest_args("--parallel-modules=2"), pytester.path, columns=columns, chunks=chunks
    )
    lines = screen_of(output, columns)
    text = "\n".join(lines)
    assert returncode == pytest.ExitCode.TESTS_FAILED, text

    began = first_time(chunks, "test_long")
    first = frame_at(chunks, began + 0.8, columns)
    second = frame_at(chunks, began + 1.8, columns)
    shown = "\n".join(first) + "\n----\n" + "\n".join(second)
    assert first != second, shown

    def running(frame: list[str]) -> tuple[str, float]:
        (line,) = [line for line in frame if "test_long" in line]
        return line, float(line.rsplit(None, 1)[-1].rstrip("s"))

    line, before = running(first)
    _, after = running(second)
    # The worker line names the running test and how long it has run: a second more.
    assert 0.6 <= after - before <= 1.4, shown
    # The width is used without gaps: the name, then its counts.
    assert re.match(r"w\d  test_a\.py  0/1  [\d.]+s  test_long  [\d.]+s$", line), shown
    for frame in (first, second):
        display = frame[next(i for i, row in enumerate(frame) if re.match(r"w\d  ", row)) :]
        # One column short of the edge, never wrapped.
        assert all(len(row) < columns for row in display), shown
        # The failed module's line stays, above the display.
        assert " FAIL  test_b.py::test_n[1]" in frame, shown
    overall = [row for row in second if "━" in row or "─" in row]
    if columns >= 160:
        # Everything on one line, the bar taking what the words leave.
        assert len(overall) == 1 and len(overall[0]) == columns - 1, shown
        assert re.search(
            r"\d+%  5 passed  1 failed  6/7 tests  2/3 modules  [\d.]+s  ETA", overall[0]
        )
    else:
        # The words go below the bar.
        index = second.index(overall[0])
        assert second[index + 1] == "5 passed  1 failed  6/7 tests  2/3 modules", shown
    # Still there at the end, above the run's record.
    record = next(
        index for index, row in enumerate(lines) if row.startswith("parallel-modules: 3/3")
    )
    assert lines[record - 1] == " FAIL  test_b.py::test_n[1]", text
