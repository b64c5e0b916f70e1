"""End to end: workers collect what a plain run collects, with the same import-time effects.

Each suite here reproduces, in miniature, a real suite whose outcome a worker
that collected only the module it ran got wrong (see docs/how-it-works.md,
"Workers collect what a plain run collects"): docutils (a module using a
submodule that only another module's collection imported), pygments (a
conftest collecting ``*.py`` data files as non-Python items) and pyparsing (a
module whose import-time state another module's tests change).
"""

from __future__ import annotations

from collections.abc import Callable
import textwrap

import pytest

from tests.conftest import GitRepo
from tests.conftest import short_summary


pytestmark = pytest.mark.e2e

RunBoth = Callable[..., tuple[pytest.RunResult, pytest.RunResult]]


def assert_same_run(plain: pytest.RunResult, parallel: pytest.RunResult) -> None:
    assert short_summary(parallel) == short_summary(plain)
    assert parallel.ret == plain.ret
    assert "INTERNALERROR" not in parallel.stdout.str()


def test_a_module_may_use_what_another_modules_collection_imported(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    # docutils: test_publisher.py uses docutils.writers.null, which only
    # test_null.py imports; a plain run imported it while collecting.
    pytester.mkpydir("shapes")
    pytester.path.joinpath("shapes", "circle.py").write_text("AREA = 3.14\n")
    pytester.makepyfile(
        test_imports_circle="""
        import shapes.circle

        def test_circle():
            assert shapes.circle.AREA > 3
        """,
        test_uses_circle="""
        import shapes

        def test_uses_the_submodule_another_module_imported():
            assert shapes.circle.AREA == 3.14
        """,
    )
    git_repo.commit_all()
    plain, parallel = run_both("-rA", "-p", "no:randomly", workers=2)
    plain.assert_outcomes(passed=2)
    assert_same_run(plain, parallel)


def test_data_files_a_conftest_collects_are_not_imported_as_python(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    # pygments: the conftest collects tests/examplefiles/**/*.py as lexer input.
    # A worker that named such a file explicitly had pytest import it as Python.
    marker = pytester.path / "imported.txt"
    pytester.makeconftest(
        """
        import pytest

        class DataFile(pytest.File):
            def collect(self):
                yield DataItem.from_parent(self, name="lexes")

        class DataItem(pytest.Item):
            def runtest(self):
                assert self.path.read_text()

        def pytest_collect_file(file_path, parent):
            if file_path.parent.name == "examples" and file_path.suffix == ".py":
                return DataFile.from_parent(parent, path=file_path)
        """
    )
    examples = pytester.mkdir("examples")
    examples.joinpath("broken.py").write_text("this is not (python\n")
    examples.joinpath("undefined.py").write_text("print(undefined_name)\n")
    examples.joinpath("effect.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n")
    pytester.makepyfile(test_real="def test_real():\n    pass\n")
    git_repo.commit_all()
    plain, parallel = run_both("-rA", "-p", "no:randomly", workers=2)
    plain.assert_outcomes(passed=4)
    assert_same_run(plain, parallel)
    assert not marker.exists()


def test_a_module_imported_before_any_test_ran_as_in_a_plain_run(
    pytester: pytest.Pytester, git_repo: GitRepo, run_both: RunBoth
) -> None:
    # pyparsing: tests/test_examples.py changes pyparsing's global default
    # whitespace; examples/test_bibparse.py, imported after that, loops forever.
    # A plain run imported it during collection, before any test ran.
    pytester.makepyfile(settings="MODE = 'normal'\n")
    pytester.makepyfile(
        # The bigger file is planned first when nothing is known of either.
        test_changes_state=textwrap.dedent(
            """
            import settings

            def test_changes_global_state():
                settings.MODE = "changed"
            """
        )
        + "# padding, so that this module is planned first\n" * 40,
        test_reads_state_at_import="""
        import settings

        MODE_AT_IMPORT = settings.MODE

        def test_saw_the_state_of_collection_time():
            assert MODE_AT_IMPORT == "normal"
        """,
    )
    git_repo.commit_all()
    plain, parallel = run_both("-rA", "-p", "no:randomly", workers=1)
    plain.assert_outcomes(passed=2)
    assert_same_run(plain, parallel)
