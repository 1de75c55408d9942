"""No module under tests/ imports a test module: shared helpers live in tests/support, fixtures in conftest.py.

A test module imported by another one is collected twice over, couples two suites (a unit test module loading
what an integration module imports, or the reverse), and breaks when either one moves.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent
TEST_PACKAGES = ("tests.unit", "tests.integration")


def module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def imported_modules(path: Path, root: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved; ``from m import x`` gives ``m.x`` too.

    Also the modules named in a ``pytest_plugins`` list and in ``importlib.import_module("...")`` calls.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path, root).split(".")[:-1]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names if alias.name != "*"]
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "pytest_plugins" for target in node.targets
        ):
            found += [
                (node.lineno, constant.value)
                for constant in ast.walk(node.value)
                if isinstance(constant, ast.Constant) and isinstance(constant.value, str)
            ]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return sorted(found, key=lambda item: item[0])


def imports_of_test_modules(root: Path) -> list[str]:
    """Every import of a module in a test package (tests.unit, tests.integration) by any module under root/tests."""
    problems = []
    for path in sorted((root / "tests").rglob("*.py")):
        for line, module in imported_modules(path, root):
            if module in TEST_PACKAGES or module.startswith(tuple(f"{p}." for p in TEST_PACKAGES)):
                problems.append(f"{path.relative_to(root)}:{line} imports {module}")
    return problems


def test_no_module_under_tests_imports_a_test_module() -> None:
    problems = imports_of_test_modules(ROOT)
    assert not problems, "move what is shared to tests/support:\n" + "\n".join(problems)


def test_the_check_finds_every_form_of_such_an_import(tmp_path: Path) -> None:
    (tmp_path / "tests" / "unit" / "serving").mkdir(parents=True)
    (tmp_path / "tests" / "integration").mkdir()
    (tmp_path / "tests" / "support").mkdir()
    (tmp_path / "tests" / "integration" / "test_a.py").write_text(
        "import tests.unit.serving.test_x\n"
        "from tests.unit.serving.test_x import helper\n"
        "from ..unit.serving import test_x\n"
        "from . import conftest\n"
        "pytest_plugins = ['tests.integration.conftest']\n"
        "from tests.support.host import free_port\n"  # fine
        "import tests\n"  # fine
    )
    (tmp_path / "tests" / "support" / "stack.py").write_text(
        "import importlib\nfrom tests.integration.conftest import Driftloop\nimportlib.import_module('tests.unit')\n"
    )
    (tmp_path / "tests" / "unit" / "serving" / "test_x.py").write_text("from .test_y import z\n")

    assert imports_of_test_modules(tmp_path) == [
        "tests/integration/test_a.py:1 imports tests.unit.serving.test_x",
        "tests/integration/test_a.py:2 imports tests.unit.serving.test_x",
        "tests/integration/test_a.py:2 imports tests.unit.serving.test_x.helper",
        "tests/integration/test_a.py:3 imports tests.unit.serving",
        "tests/integration/test_a.py:3 imports tests.unit.serving.test_x",
        "tests/integration/test_a.py:4 imports tests.integration",
        "tests/integration/test_a.py:4 imports tests.integration.conftest",
        "tests/integration/test_a.py:5 imports tests.integration.conftest",
        "tests/support/stack.py:2 imports tests.integration.conftest",
        "tests/support/stack.py:2 imports tests.integration.conftest.Driftloop",
        "tests/support/stack.py:3 imports tests.unit",
        "tests/unit/serving/test_x.py:1 imports tests.unit.serving.test_y",
        "tests/unit/serving/test_x.py:1 imports tests.unit.serving.test_y.z",
    ]
