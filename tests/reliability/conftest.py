"""The reliability suite's fixtures live in ``reliability_support`` (importable by the test modules)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from reliability_support import s3, stack, venice

__all__ = ["s3", "stack", "venice"]
