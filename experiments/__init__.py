"""calib's experiments, on top of the library (``calib`` and ``trainer``; docs/architecture.md section 11):

- ``experiments.misalignment``: the seed paper's question on the synthetic testbed, every arm over seeds
  (``calib experiment misalignment``), with the tabular policy of ``trainer.tabular``;
- ``experiments.real_lm``: SmolLM2-135M on airline-mini, SFT then RL arms (``calib experiment real-lm``).

Nothing in the library imports this package; the CLI wires it, and ``scripts/update_results.sh``
regenerates docs/results.md from it.
"""
