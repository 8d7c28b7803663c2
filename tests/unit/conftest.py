"""Unit layer: pure functions, config, atomic writes, metrics JSON, interrupts, the SNDS toolkit,
code sets, guards, statistics and the architecture rules.

Nothing here builds a project: a test needs at most `tmp_path` and a few hand-written rows, so the
layer runs in seconds (`python -m pytest tests/unit` or `-m unit`). The shared fixtures of every
layer (the small project, signal hygiene) are in tests/conftest.py.
"""
