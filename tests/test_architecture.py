"""docs/architecture.md: its import map is the one scripts/import_map.py derives from the code."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_map", ROOT / "scripts" / "import_map.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("import_map", module)
    spec.loader.exec_module(module)
    return module


import_map = _load_script()


def test_the_documented_import_map_is_the_derived_one() -> None:
    found = import_map.diff(ROOT / "docs" / "architecture.md")
    assert not found, f"run: python scripts/import_map.py --write docs/architecture.md\n{found}"


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_what_counts_as_an_import(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "config/__init__.py": "",
            "config/settings.py": "import os\n",
            "bridge/__init__.py": "from bridge.version import __version__\n",
            "bridge/version.py": "",
            "bridge/store.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from bridge.worker import Worker
                else:
                    from bridge import version
                """,
            "bridge/worker.py": """\
                def run():
                    from bridge.store import Store
                """,
            "bridge/http/__init__.py": "from . import hooks\n",
            "bridge/http/hooks.py": "from ..providers import PROVIDERS\nimport config.settings\n",
            "bridge/providers/__init__.py": "from bridge.providers.json import JsonProvider\n",
            "bridge/providers/json.py": "from bridge.providers import base\nfrom bridge.store import Store\n",
            "bridge/providers/base.py": "",
        },
    )
    assert import_map.import_map(tmp_path) == {
        "bridge": {"bridge.version"},
        "bridge.version": set(),
        "bridge.store": {"bridge.version"},  # not bridge.worker: that import runs only under a type checker
        "bridge.worker": {"bridge.store"},  # imports inside functions count
        "bridge.http": {"bridge.http.hooks"},
        "bridge.http.hooks": {"bridge.providers", "config.settings"},
        "bridge.providers": {"bridge.store"},  # one module for the package; imports within it drop out
        "config": set(),
        "config.settings": set(),
    }


def test_check_and_write_work_on_the_block_between_the_markers(tmp_path: Path) -> None:
    _tree(tmp_path, {"bridge/__init__.py": "", "bridge/a.py": "from bridge import b\n", "bridge/b.py": ""})
    (tmp_path / "config").mkdir()
    doc = tmp_path / "doc.md"
    doc.write_text(f"# Title\n\n{import_map.START}\nstale\n{import_map.END}\n\nafter\n")
    assert "+bridge.a -> bridge.b" in import_map.diff(doc, tmp_path)
    assert import_map.write(doc, tmp_path)
    assert import_map.diff(doc, tmp_path) == ""
    assert doc.read_text().startswith("# Title\n") and doc.read_text().endswith("\n\nafter\n")
    assert not import_map.write(doc, tmp_path)
