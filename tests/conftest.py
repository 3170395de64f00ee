"""Test-wide set-up: make tests/ importable so tests can share the small data-making scripts kept there."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
