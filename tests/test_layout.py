"""Imports flow app -> worker -> engine, never back; the engine imports neither gradio nor huey. Nor through a
string: a module path handed to importlib or to a subprocess (`python -m app.cli`) counts as an import."""

from __future__ import annotations

import ast
import re

import pytest

from tests.conftest import ROOT

FORBIDDEN = {"engine": {"gradio", "huey", "worker", "app"}, "worker": {"gradio", "app"}}


MODULE_PATH = re.compile(r"[A-Za-z_]\w*(\.\w+)*")  # a whole string such as "app.cli"
RUN_MODULE = re.compile(r"-m\s+([A-Za-z_]\w*)")  # "python -m app.cli ..." inside a command string


def _imports(path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value.strip()
            if MODULE_PATH.fullmatch(text):
                names.add(text.split(".")[0])
            names |= {m.group(1) for m in RUN_MODULE.finditer(text)}
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    for path in (ROOT / package).rglob("*.py"):
        bad = _imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_imports_through_strings_are_caught(tmp_path) -> None:
    spawn = tmp_path / "spawn.py"
    spawn.write_text('import sys\ncommand = [sys.executable, "-m", "app.cli", "worker"]\n'
                     'shell = "python -m app.cli x"\n')
    assert {"app", "sys"} <= _imports(spawn)
