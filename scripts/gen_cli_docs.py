"""Regenerate docs/cli.md from every command's --help (so the reference never drifts from the code).

Usage: python scripts/gen_cli_docs.py   (tests/test_cli_docs.py checks the file is current)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HEADER = """# CLI reference

Generated from `--help` by `scripts/gen_cli_docs.py`; do not edit by hand. Every command that takes
`--store` defaults to `$CALIB_STORE`, else `./calib-store`. Errors print one red line and exit with
code 1 (2 for usage errors); set `CALIB_DEBUG=1` for a traceback.
"""


def command_paths() -> list[list[str]]:
    import typer

    from calib.cli import app

    root = typer.main.get_command(app)
    paths: list[list[str]] = [[]]

    def walk(cmd, prefix: list[str]) -> None:
        for name in sorted(getattr(cmd, "commands", {}) or {}):
            sub = cmd.commands[name]
            paths.append(prefix + [name])
            walk(sub, prefix + [name])

    walk(root, [])
    return paths


def render() -> str:
    from typer.testing import CliRunner

    from calib.cli import app

    os.environ["COLUMNS"] = "100"
    os.environ["TERM"] = "dumb"
    os.environ["NO_COLOR"] = "1"
    runner = CliRunner()
    parts = [HEADER]
    for path in command_paths():
        res = runner.invoke(app, [*path, "--help"], prog_name="calib", env={"COLUMNS": "100", "NO_COLOR": "1",
                                                                              "TERM": "dumb"})
        title = " ".join(["calib", *path])
        text = "\n".join(line.rstrip() for line in res.output.strip("\n").splitlines())
        parts.append(f"## `{title}`\n\n```text\n{text}\n```\n")
    return "\n".join(parts)


def main() -> None:
    out = ROOT / "docs" / "cli.md"
    out.write_text(render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
