"""``python -m fewshot ...``: the ``fewshot`` command (also what ``torchrun -m fewshot`` runs on
each rank)."""
from .cli import entry

entry()
