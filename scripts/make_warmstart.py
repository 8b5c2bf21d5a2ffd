"""Build (or export) the shipped warm start, data/warmstart: the SFT stage of `calib experiment real-lm`.

The adapter in data/warmstart is what the experiment's demonstrations + SFT stages produce with their
defaults (oracle rollouts with mistakes on airline-mini's train split, the experiment's task kinds,
then `calib sft` of SmolLM2-135M, LoRA r 8). `make demo` and `calib experiment real-lm --quick` start
from it because an SFT run does not fit their few minutes.

Usage:
  python scripts/make_warmstart.py                       # run the two stages in reports/warmstart, export
  python scripts/make_warmstart.py --from reports/real-lm  # export the SFT stage of a finished experiment run

Export: the LoRA weights in float16 (half the bytes; they are cast back to the model's dtype on load)
and ``base_model_name_or_path: tiny``, so the adapter resolves on any machine with `make setup`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def export(adapter: Path, target: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(tmp / "adapter_model.safetensors"))
    cfg = json.loads((adapter / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "tiny"
    (tmp / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="src", type=Path, help="A real-lm --out directory whose sft/adapter to export.")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "warmstart", help="Work directory (no --from).")
    ap.add_argument("--target", type=Path, default=ROOT / "data" / "warmstart")
    args = ap.parse_args()
    src = args.src
    if src is None:
        from calib.store import Store
        from experiments.real_lm import RealLMConfig, demos, sft

        cfg = RealLMConfig()
        args.out.mkdir(parents=True, exist_ok=True)
        store = Store(args.out / "store")
        demos(cfg, store)
        sft(cfg, store, args.out / "sft")
        src = args.out
    path = export(src / "sft" / "adapter", args.target)
    size = sum(p.stat().st_size for p in path.iterdir()) / 1e6
    print(f"warm start exported to {path} ({size:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
