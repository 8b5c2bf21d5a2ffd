"""calib on verl (docs/verl.md): calib's advantage modes as verl advantage estimators
(:mod:`trainer.verl.estimators`), the token layout that carries per-turn rewards through verl's
``token_level_rewards`` (:mod:`trainer.verl.layout`), and the reward side that computes a verl
trajectory's per-turn rewards from a calib reward spec (:mod:`trainer.verl.reward`).

Only :func:`trainer.verl.estimators.register` needs verl (``pip install 'calib[verl]'``, verl 0.9.x);
the layout and the reward side need torch alone.
"""
