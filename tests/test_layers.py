"""The layers of docs/architecture.md (section 11), enforced: a module may import only modules of its own
layer or a lower one, nothing in calib/ outside calib/cli imports trainer or the experiments, and
nothing in calib/ imports torch, transformers or TRL at module level.

The graph comes from ``tests/test_import_cycles.py`` (every import statement, read with ``ast``).
Keep LAYERS in step with the table in docs/architecture.md; a test below checks that they agree.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import test_import_cycles as graph

ROOT = Path(__file__).resolve().parents[1]

# (layer rank, the packages or modules in it), lowest first: the table of docs/architecture.md.
LAYERS: list[tuple[int, tuple[str, ...]]] = [
    (0, ("calib", "calib.errors", "calib.jsonutil", "calib.jsonlimits", "calib.sqlutil", "calib.textutil", "calib.advantages",
         "calib.generation", "calib.models", "calib.http", "calib.tau2_catalogue", "calib.tau2_format")),
    (1, ("calib.tools", "calib.envs", "calib.records", "calib.batcher", "calib.hf_chat", "calib.policies",
         "calib.sample_episodes", "calib.testing")),
    (2, ("calib.store", "calib.ingest")),
    (3, ("calib.signals", "calib.spec")),
    (4, ("calib.analysis", "calib.rollout")),
    (5, ("calib.report",)),
    (6, ("trainer",)),
    (7, ("experiments", "calib.cli", "calib.__main__")),
]
HEAVY = ("torch", "transformers", "trl", "peft", "accelerate", "vllm")


def _layer_of(module: str) -> tuple[int, str]:
    """(rank, layer name) of a module: the longest layer name that is the module or a package above it."""
    best = None
    for rank, names in LAYERS:
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (rank, name)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and to docs/architecture.md")
    return best


def _graph() -> dict[str, set[str]]:
    graph.PACKAGES = ("calib", "trainer", "experiments")
    modules = graph._modules()
    return {name: graph._imports(name, path, modules) for name, path in modules.items()}


def test_every_import_goes_down_or_sideways():
    bad = []
    for mod, targets in sorted(_graph().items()):
        rank, layer = _layer_of(mod)
        for t in sorted(targets):
            t_rank, t_layer = _layer_of(t)
            if t_rank > rank:
                bad.append(f"{mod} ({layer}, layer {rank}) imports {t} ({t_layer}, layer {t_rank})")
    assert not bad, "imports that point up the layers of docs/architecture.md:\n" + "\n".join(bad)


def test_the_core_never_imports_the_trainer_or_the_experiments():
    bad = [f"{m} imports {t}" for m, ts in _graph().items() for t in ts
           if m.startswith("calib") and not m.startswith(("calib.cli", "calib.__main__"))
           and t.split(".")[0] in ("trainer", "experiments")]
    bad += [f"{m} imports {t}" for m, ts in _graph().items() for t in ts
            if m.startswith("trainer") and t.startswith("experiments")]
    assert not bad, bad


def test_no_heavy_import_at_module_level_in_calib():
    bad = []
    for path in sorted((ROOT / "calib").rglob("*.py")):
        for node in ast.parse(path.read_text()).body:  # module level only: function bodies may import
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names if n.split(".")[0] in HEAVY]
    assert not bad, bad


def test_the_document_states_the_same_layers():
    text = (ROOT / "docs" / "architecture.md").read_text()
    for rank, names in LAYERS:
        row = re.search(rf"^\| {rank} \| (.+?) \|", text, re.MULTILINE)
        assert row, f"docs/architecture.md has no row for layer {rank}"
        documented = set(re.findall(r"`([\w.]+)`", row.group(1)))
        assert documented == set(names), (rank, documented ^ set(names))


def test_design_references_resolve_inside_the_repo():
    """Code and docs cite docs/architecture.md by section number; every cited section exists, and no
    reference points at a design document outside the repository."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", text, re.MULTILINE)}
    cited, stale = [], []
    for folder in ("calib", "trainer", "experiments", "bench", "scripts", "tests", "docs"):
        for path in sorted((ROOT / folder).rglob("*")):
            if path.suffix not in (".py", ".md", ".sh") or path.name == "test_layers.py":
                continue
            body = path.read_text()
            stale += [f"{path.relative_to(ROOT)}" for _ in re.finditer(r"\bDESIGN\b", body)]
            cited += [(path.relative_to(ROOT), int(n)) for n in
                      re.findall(r"architecture\.md\s+section\s+(\d+)", body)]
    assert not stale, f"references to a DESIGN document outside the repository: {sorted(set(stale))}"
    assert cited, "no code cites docs/architecture.md"
    missing = [f"{p}: section {n}" for p, n in cited if n not in sections]
    assert not missing, missing
