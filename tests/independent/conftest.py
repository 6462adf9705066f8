"""tests/independent: the auditor's own verifier (verifier.py, standard library and
`cryptography` only, written from docs/audit.md) and the tests that hold the engine to it.
With pytest's importlib mode the folder is not on sys.path: put it there for `verifier`."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
