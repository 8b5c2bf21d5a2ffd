"""Every command answers --help, and docs/cli.md (generated) lists every command."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from calib.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _paths() -> list[list[str]]:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from gen_cli_docs import command_paths

    return command_paths()


@pytest.mark.parametrize("path", _paths(), ids=lambda p: " ".join(p) or "calib")
def test_help(path: list[str]):
    res = CliRunner().invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in res.output


def test_cli_reference_lists_every_command():
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [" ".join(["calib", *p]) for p in _paths() if f"## `{' '.join(['calib', *p])}`" not in text]
    assert not missing, f"docs/cli.md is stale (run python scripts/gen_cli_docs.py): missing {missing}"


def test_calib_help_does_not_import_torch():
    """`calib --help` and the store/analysis commands must start fast: no torch/transformers/trl at import."""
    import subprocess
    import sys

    code = ("import sys, calib.cli; heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]; "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"importing the CLI pulled in {out}"


def test_calib_package_has_no_heavy_module_level_imports():
    """docs/architecture.md section 11: nothing in calib/ imports torch, transformers, trl or peft at module level."""
    import re

    pattern = re.compile(r"^(import|from) (torch|transformers|trl|peft)\b|^from trainer\.grpo", re.MULTILINE)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "calib").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders
