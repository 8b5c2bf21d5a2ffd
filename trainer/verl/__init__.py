"""calib on verl (docs/verl.md): calib's advantage modes as verl advantage estimators
(:mod:`trainer.verl.estimators`), the token layout that carries per-turn rewards through verl's
``token_level_rewards`` (:mod:`trainer.verl.layout`), the reward side that computes a verl
trajectory's per-turn rewards from a calib reward spec (:mod:`trainer.verl.reward`), the agent loops
that write them during verl's rollout and play calib's domains (:mod:`trainer.verl.agent_loop`), the
task rows those loops read (:mod:`trainer.verl.data`), and the one registration hook
(:mod:`trainer.verl.plugin`).

:mod:`~trainer.verl.estimators`, :mod:`~trainer.verl.agent_loop` and :mod:`~trainer.verl.plugin`
need verl (``pip install 'calib[verl]'``, verl 0.9.x); the layout, the reward side and the data rows
need torch (and pyarrow) alone.
"""
