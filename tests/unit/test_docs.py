"""The documentation site builds strictly, and its reference pages cover the code.

Guards, so the docs cannot drift from the code:

- ``mkdocs build --strict`` succeeds (broken links, anchors and snippets fail it);
- every option and ini key the plugin registers is documented in ``docs/options.md``,
  and every option the docs mention exists;
- every hook in ``hookspecs.py`` is documented in ``docs/hooks.md`` with its arguments;
- every ``python -m pytest_parallel_modules`` command is documented, and the docs
  name no command that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field
import inspect
import os
from pathlib import Path
import re
import subprocess
import sys
from typing import Any

import pytest

from pytest_parallel_modules import hookspecs
from pytest_parallel_modules.commands import COMMANDS
from pytest_parallel_modules.options import register_options


ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OPTIONS_PAGE = DOCS / "options.md"
HOOKS_PAGE = DOCS / "hooks.md"
HOOK_PREFIX = "pytest_parallel_modules_"

#: Options of this plugin as the docs spell them: ``--parallel-modules``, ``--module-*``,
#: ``--*-modules`` (but pytest's ``--doctest-modules``), ``--keep-failed-*``. Used to
#: find options the docs mention.
OUR_OPTION = re.compile(
    r"(?<![\w-])--(?:module-[a-z-]*[a-z]|keep-failed-[a-z-]*[a-z]"
    r"|(?!doctest-)[a-z][a-z-]*-modules)(?![\w-])"
)
#: A Markdown heading (``## ...`` to ``#### ...``).
HEADING = re.compile(r"^#{2,4} (?P<title>.*)$", re.MULTILINE)


# --------------------------------------------------------------------------- helpers


@dataclass
class Registered:
    """What the plugin registered with pytest's parser."""

    options: set[str] = field(default_factory=set)
    ini_keys: set[str] = field(default_factory=set)


class RecordingParser:
    """Stands in for :class:`pytest.Parser`: forwards to a real one and records every registration."""

    def __init__(self) -> None:
        self.parser = pytest.Parser(_ispytest=True)
        self.groups: list[Any] = []
        self.registered = Registered()

    def getgroup(self, *args: Any, **kwargs: Any) -> Any:
        group = self.parser.getgroup(*args, **kwargs)
        self.groups.append(group)
        return group

    def addoption(self, *names: str, **kwargs: Any) -> None:
        self.registered.options.update(name for name in names if name.startswith("--"))
        self.parser.addoption(*names, **kwargs)

    def addini(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.registered.ini_keys.add(name)
        self.parser.addini(name, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.parser, name)

    def collect(self) -> Registered:
        for group in self.groups:
            for argument in group.options:
                self.registered.options.update(
                    name for name in argument.names() if name.startswith("--")
                )
        return self.registered


def registered_in_process() -> Registered:
    """Run :func:`register_options` against a real parser and return what it added."""
    recorder = RecordingParser()
    register_options(recorder)  # type: ignore[arg-type]  # a recording stand-in for pytest.Parser
    return recorder.collect()


def pytest_help(cwd: Path, *args: str) -> str:
    """Return ``pytest --help`` run in ``cwd`` with only the plugins named in ``args``."""
    environment = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COLUMNS": "200"}
    environment.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *args, "--help"],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def parse_help(text: str) -> Registered:
    """Every long option and every ini key listed by ``pytest --help``."""
    options = set(re.findall(r"^  (?:-\w, )?(--[\w-]+)", text, re.MULTILINE))
    # Only the "[pytest] ini-options" section (pytest 8) or "[pytest] configuration
    # options" section (pytest 9) has lines of the form "  name (type):".
    ini_keys = set(re.findall(r"^  ([\w.-]+) \((?:\w+)\):", text, re.MULTILINE))
    return Registered(options=options, ini_keys=ini_keys)


def headings(page: Path) -> list[str]:
    return HEADING.findall(page.read_text(encoding="utf-8"))


def undocumented(registered: Registered) -> list[str]:
    """Options without a heading in options.md and ini keys it never mentions."""
    text = OPTIONS_PAGE.read_text(encoding="utf-8")
    titles = "\n".join(headings(OPTIONS_PAGE))
    missing = [
        f"option {option}: add a heading '### `{option}...` {{ #... }}' to docs/options.md"
        for option in sorted(registered.options)
        if not re.search(rf"`{re.escape(option)}[=`]", titles)
    ]
    missing += [
        f"ini key {key}: mention `{key}` in docs/options.md (table and section)"
        for key in sorted(registered.ini_keys)
        if f"`{key}`" not in text
    ]
    return missing


@pytest.fixture(scope="module")
def registered() -> Registered:
    return registered_in_process()


# --------------------------------------------------------------------------- the site


def test_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    site = tmp_path / "site"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(site),
        ],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (site / "index.html").is_file()
    # GitHub wants `a\|b` for a pipe in a table cell's code span; Python-Markdown shows
    # the backslash. The pages use <code>a&#124;b</code>, which both render as a|b.
    escaped_pipes = [
        str(page.relative_to(site))
        for page in site.rglob("*.html")
        if "\\|" in page.read_text(encoding="utf-8")
    ]
    assert escaped_pipes == []
    # The schema is served next to the pages, where its $id points.
    assert (site / "report.schema.json").is_file()


def test_every_page_is_in_the_nav() -> None:
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    assert [page for page in pages if f": {page}" not in config] == []


# --------------------------------------------------------------------------- options


def test_the_plugin_registers_options_and_ini_keys(registered: Registered) -> None:
    # A guard that sees nothing guards nothing.
    assert "--parallel-modules" in registered.options
    assert "parallel_modules" in registered.ini_keys


def test_every_option_and_ini_key_is_documented(registered: Registered) -> None:
    missing = undocumented(registered)
    assert not missing, "\n".join(["undocumented in docs/options.md:", *missing])


def test_pytest_help_lists_nothing_undocumented(tmp_path: Path) -> None:
    """Also catches options registered outside ``register_options`` (plugin.py, ...)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    without = parse_help(pytest_help(tmp_path))
    with_plugin = parse_help(pytest_help(tmp_path, "-p", "pytest_parallel_modules"))
    ours = Registered(
        options=with_plugin.options - without.options,
        ini_keys=with_plugin.ini_keys - without.ini_keys,
    )
    assert "--parallel-modules" in ours.options
    assert "parallel_modules" in ours.ini_keys
    missing = undocumented(ours)
    assert not missing, "\n".join(["undocumented in docs/options.md:", *missing])


def test_the_docs_mention_only_options_that_exist(registered: Registered) -> None:
    mentioned = {
        (page.name, option)
        for page in sorted(DOCS.glob("*.md"))
        for option in OUR_OPTION.findall(page.read_text(encoding="utf-8"))
    }
    assert sorted(item for item in mentioned if item[1] not in registered.options) == []


def test_options_page_headings_name_registered_options(registered: Registered) -> None:
    documented = {
        match.group(1)
        for title in headings(OPTIONS_PAGE)
        if (match := re.match(r"`(--[\w-]+)", title)) is not None
    }
    assert sorted(documented - registered.options) == []


# --------------------------------------------------------------------------- hooks


def hookspec_parameters() -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in vars(hookspecs).items()
        if name.startswith(HOOK_PREFIX) and inspect.isfunction(function)
    }


def documented_signatures() -> dict[str, list[list[str]]]:
    """Every ``def pytest_parallel_modules_...(...)`` in hooks.md: name -> parameter lists."""
    signatures: dict[str, list[list[str]]] = {}
    text = HOOKS_PAGE.read_text(encoding="utf-8")
    for name, parameters in re.findall(rf"def ({HOOK_PREFIX}\w+)\(([^)]*)\)", text):
        names = [part.split(":")[0].strip() for part in parameters.split(",") if part.strip()]
        signatures.setdefault(name, []).append(names)
    return signatures


def test_there_are_hooks_to_document() -> None:
    assert "pytest_parallel_modules_report" in hookspec_parameters()


def test_every_hook_is_documented_with_its_arguments() -> None:
    titles = "\n".join(headings(HOOKS_PAGE))
    signatures = documented_signatures()
    problems = []
    for name, parameters in sorted(hookspec_parameters().items()):
        if f"`{name}`" not in titles:
            problems.append(f"{name}: no '## `{name}`' heading in docs/hooks.md")
        if parameters not in signatures.get(name, []):
            problems.append(
                f"{name}: docs/hooks.md has no 'def {name}({', '.join(parameters)})' "
                f"(found {signatures.get(name, [])})"
            )
    assert problems == []


def test_hooks_page_documents_only_hooks_that_exist() -> None:
    specs = hookspec_parameters()
    text = HOOKS_PAGE.read_text(encoding="utf-8")
    mentioned = set(re.findall(rf"\b{HOOK_PREFIX}\w+", text))
    assert sorted(mentioned - set(specs)) == []


# --------------------------------------------------------------------------- commands


def test_every_command_is_documented() -> None:
    titles = "\n".join(headings(OPTIONS_PAGE))
    assert [name for name in sorted(COMMANDS) if f"`{name}`" not in titles] == []


def test_the_docs_name_only_commands_that_exist() -> None:
    named = {
        (page.name, command)
        for page in sorted(DOCS.glob("*.md"))
        for command in re.findall(
            r"python\s+-m\s+pytest_parallel_modules\s+([a-z][\w-]*)",
            page.read_text(encoding="utf-8"),
        )
    }
    assert sorted(item for item in named if item[1] not in COMMANDS) == []
