"""``python -m fewshot ...``: the ``fewshot`` command (also what ``torchrun -m fewshot`` runs on each rank)."""
import sys

from .cli import main

sys.exit(main())
