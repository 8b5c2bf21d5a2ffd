"""Every `calib train` command in docs/training.md and docs/scaling.md is one the current code accepts.

Each command found in a ```bash block (continuation lines joined; commented examples included) is
run through the CLI in-process with `--dry-run`: the options parse, validate and build a TRL config.
Files a recipe names for another machine (a spec, a model directory) need not exist here; the
accelerate config files and examples the docs name must exist in the repository.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "training.md", ROOT / "docs" / "scaling.md"]


def _commands() -> list[tuple[str, str]]:
    found = []
    for doc in DOCS:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.DOTALL):
            text = re.sub(r"\\\n\s*(#\s*)?", " ", block)  # join continuation lines
            for line in text.splitlines():
                line = line.lstrip("# ").strip()
                if "calib train" in line:
                    found.append((doc.name, line))
    return found


COMMANDS = _commands()


def test_docs_have_train_commands():
    assert len(COMMANDS) >= 5, COMMANDS
    assert any("--use-vllm" in c for _, c in COMMANDS)


@pytest.mark.parametrize("doc,line", COMMANDS, ids=[f"{d}:{i}" for i, (d, _) in enumerate(COMMANDS)])
def test_train_command_parses(doc: str, line: str):
    from calib.cli import app

    words = shlex.split(line)
    if "--config_file" in words:  # accelerate launch --config_file FILE ...
        cfg = words[words.index("--config_file") + 1]
        assert (ROOT / cfg).is_file(), f"{doc}: {cfg} does not exist"
    args = words[words.index("calib") + 1 :]
    assert args[0] == "train"
    if "--config" in args:
        assert (ROOT / args[args.index("--config") + 1]).is_file()
    res = CliRunner().invoke(app, [*args, "--dry-run", "--json"], catch_exceptions=False)
    assert res.exit_code == 0, f"{doc}: `{line}` was refused: {res.output}"
    plan = json.loads(res.output.strip().splitlines()[-1])
    assert plan["group_size"] >= 2


def test_config_file_and_flag_precedence(tmp_path: Path):
    from calib.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text("spec: s.yaml\nmodel: tiny\noutput-dir: out\nmax_turns: 12\ntemperature: 0.9\n"
                   "trl: {vllm_gpu_memory_utilization: 0.3}\n")
    res = CliRunner().invoke(app, ["train", "--config", str(cfg), "--max-turns", "3", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output.strip().splitlines()[-1])
    assert plan["max_turns"] == 3 and plan["temperature"] == 0.9  # the flag wins; the file fills the rest
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: s.yaml\nmodel: tiny\noutput-dir: out\nmax-turn: 3\n")
    res = CliRunner().invoke(app, ["train", "--config", str(bad), "--dry-run"])
    assert res.exit_code != 0 and "unknown option 'max-turn'" in res.output
    res = CliRunner().invoke(app, ["train", "--model", "tiny", "--dry-run"])
    assert res.exit_code != 0 and "--spec" in res.output and "Traceback" not in res.output


def test_unloadable_hub_model_is_one_line(monkeypatch):
    from calib.errors import UsageError
    from calib.models import load_pretrained

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError) as e:
        load_pretrained("calib-test-org/no-such-model-xyz")
    msg = str(e.value)
    assert "\n" not in msg and "HF_HUB_OFFLINE=1" in msg and "no-such-model-xyz" in msg
    with pytest.raises(UsageError, match="no such directory"):
        load_pretrained("/nonexistent/model/dir")


def test_hub_model_id_loads_from_the_local_hub_cache(tmp_path: Path, tiny_model_dir):
    """`--model org/name` goes through from_pretrained and its cache (offline here: the cache is laid
    out by the test with the tiny model's files, as the hub client would have left them)."""
    import os
    import subprocess
    import sys

    tiny = tiny_model_dir
    rev = "0" * 40
    snap = tmp_path / "hub" / "models--calib-test--tiny-chat" / "snapshots" / rev
    snap.mkdir(parents=True)
    for f in tiny.iterdir():
        if f.is_file():
            (snap / f.name).symlink_to(f)
    (tmp_path / "hub" / "models--calib-test--tiny-chat" / "refs").mkdir()
    (tmp_path / "hub" / "models--calib-test--tiny-chat" / "refs" / "main").write_text(rev)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    code = ("from calib.models import load_pretrained; m, t = load_pretrained('calib-test/tiny-chat'); "
            "print(type(m).__name__, t.eos_token)")
    out = subprocess.run([sys.executable, "-c", code], check=False, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[0].endswith("ForCausalLM")
