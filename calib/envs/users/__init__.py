"""User simulators: ``scripted`` (deterministic, from the task profile), ``llm``, ``hf``."""
