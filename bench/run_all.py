"""``make bench``: run every ``bench/*.py`` and print one table of figures (docs/architecture.md section 10).

Each script ends with one JSON line per figure:
``{"bench": ..., "figure": ..., "value": ..., "goal": ..., "met": ..., "details": {...}}``.
Extra arguments (e.g. ``--quick``) are passed to every script.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    extra = sys.argv[1:]
    rows, failed = [], []
    for script in sorted(HERE.glob("*.py")):
        if script.name == Path(__file__).name or script.name.startswith("_"):
            continue
        print(f"== {script.name} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, str(script), *extra], check=False, capture_output=True, text=True)
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr[-3000:])
            failed.append(script.name)
            continue
        for line in proc.stdout.splitlines():
            line = line.strip()
            if line.startswith("{") and '"bench"' in line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        print(f"   ({time.perf_counter() - t0:.0f} s)")
    print()
    print(f"{'bench':<12}{'figure':<28}{'value':>12}  {'goal':<22}{'met':<5}")
    for r in rows:
        v = r.get("value")
        vs = f"{v:,.3g}" if isinstance(v, (int, float)) else str(v)
        print(f"{r.get('bench', '?'):<12}{r.get('figure', '?'):<28}{vs:>12}  {r.get('goal', '')!s:<22}"
              f"{'yes' if r.get('met') else 'NO':<5}")
    for name in failed:
        print(f"{name}: FAILED")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
