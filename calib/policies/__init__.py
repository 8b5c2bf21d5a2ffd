"""Policies: produce the next assistant message (``oracle``, ``openai``, ``hf``; the trainer adds its own).

``make_policy(name, **kw)`` builds one by name for the CLI; heavy imports happen only for ``hf``.
"""

from calib.policies.base import EpisodeContext, Policy

__all__ = ["EpisodeContext", "Policy"]
