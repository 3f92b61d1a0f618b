"""``python -m fewshot``: the same console script as ``fewshot`` (for environments without the entry point on PATH)."""
import sys

from .cli import main

sys.exit(main())
