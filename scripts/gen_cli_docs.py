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

## What the commands guarantee (details in store.md and importing.md)

- `calib store query` runs read-only statements only (`SELECT`, `SUMMARIZE`, `DESCRIBE`, `SHOW`,
  `PIVOT`/`UNPIVOT`, `EXPLAIN` of one of these; an `EXPLAIN ANALYZE` of a write is refused) on a DuckDB
  connection with external access off, no temp folder and its configuration locked: no file outside
  the store's own tables can be read or written from it. Names from dumps never reach SQL as text.
- `calib ingest` quarantines a record nested deeper than 256 levels or longer than
  `--max-record-bytes` (default 64 MiB) with its file and line, without holding it whole; refuses a
  path that is not a regular file or folder; checks every argument before it creates a store; exits 1
  when a file ended early (the records before the cut are committed).
- `calib store compact` merges small parts (and automatically past 16 of them), atomically and safely
  against concurrent readers, writers and a kill at any point.

## JSON output

Every `--json` output is exact, strict JSON (`calib/jsonutil.py`, tested in `tests/test_json_output.py`):

- a float is written in the shortest form that reads back to the same double (Python's `repr`):
  `1e-12`, `0.30000000000000004`, `0.3333333333333333`, `-0.0`, `2e-300`; nothing is rounded;
- NaN, `inf` and `-inf` are `null` (JSON has no such numbers), and so is SQL NULL;
- an integer keeps all its digits (a BIGINT above 2^53, e.g. 9007199254740993, too);
- a timestamp is an ISO 8601 string (`2024-01-02T03:04:05.123456`, nanoseconds kept), an interval an
  ISO 8601 duration (`P1DT0H0M0S`);
- a DECIMAL or HUGEINT keeps its digits (`SELECT 12345678901234567890.123::DECIMAL(38,3)`), in a
  column or inside a list or struct;
- DuckDB lists are arrays and structs/maps objects (map keys as text), with the same rules inside;
- anything else (UUID, BLOB) is its text.

`store query --json` prints one array of row objects, `store info --json` one indented object, and
the other commands one JSON value per line. For example, on a store made by `calib ingest`:

```bash
calib store query --json "SELECT 1e-12 AS t, 0.1::DOUBLE + 0.2::DOUBLE AS s, 'nan'::DOUBLE AS n, [1.5, 2e-300] AS l"
# [{"t": 1e-12, "s": 0.30000000000000004, "n": null, "l": [1.5, 2e-300]}]
```
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
