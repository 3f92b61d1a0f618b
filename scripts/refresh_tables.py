"""Rewrite the generated results tables (README, docs/results.md, docs/bilevel.md's distilled
training sets) from the shipped manifests.

Usage: ``python scripts/refresh_tables.py`` (after ``fewshot pretrained publish``;
tests/test_readme.py checks both)
"""
from __future__ import annotations

import re
from pathlib import Path

from fewshot.pretrained import distilled_table
from fewshot.reporting import results_table
from tests.test_readme import shipped_models, shipped_of_kind

ROOT = Path(__file__).resolve().parent.parent


def refresh(path: Path, marker: str, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    table = table.strip()
    new = re.sub(rf"(<!-- {marker}:start -->\n).*?(<!-- {marker}:end -->)",
                 lambda m: m.group(1) + table + "\n" + m.group(2), text, flags=re.S)
    path.write_text(new, encoding="utf-8")


if __name__ == "__main__":
    refresh(ROOT / "README.md", "results", results_table(shipped_models()))
    refresh(ROOT / "docs" / "results.md", "results-full", results_table(shipped_models(),
                                                                        full=True))
    refresh(ROOT / "docs" / "bilevel.md", "distilled",
            distilled_table(shipped_of_kind("distilled-data")))
