"""calib on verl (docs/verl.md): calib's advantage modes as verl advantage estimators, the token
layout that carries per-turn rewards through verl's ``token_level_rewards``, and the reward side
that fills it from a calib reward spec.

Needs ``pip install 'calib[verl]'`` (verl 0.9.x) for :mod:`trainer.verl.estimators`' registration and
:mod:`trainer.verl.reward`'s reward manager; :mod:`trainer.verl.layout` needs torch only.
"""
