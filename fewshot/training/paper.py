"""Published results to compare against (from /work/shared/REFERENCES.md), keyed by preset name.

Usage: ``PAPER_RESULTS["omniglot-5w1s-maml"]`` -> ``"98.7 ± 0.4"``
"""
from __future__ import annotations

PAPER_RESULTS: dict[str, str] = {
    "omniglot-5w1s-maml": "98.7 ± 0.4",
    "omniglot-5w5s-maml": "99.9 ± 0.1",
    "omniglot-20w1s-maml": "95.8 ± 0.3",
    "omniglot-20w5s-maml": "98.9 ± 0.2",
    "mini-imagenet-5w1s-maml": "48.70 ± 1.84",
    "mini-imagenet-5w5s-maml": "63.11 ± 0.92",
    "mini-imagenet-5w1s-fomaml": "48.07 ± 1.75",
    "mini-imagenet-5w5s-fomaml": "63.15 ± 0.91",
    "omniglot-5w1s-mamlpp": "99.47",
    "omniglot-5w5s-mamlpp": "99.93",
    "omniglot-20w1s-mamlpp": "97.65",
    "omniglot-20w5s-mamlpp": "99.33",
    "mini-imagenet-5w1s-mamlpp": "52.15 ± 0.26 (std over 3 seeds)",
    "mini-imagenet-5w5s-mamlpp": "68.32 ± 0.44 (std over 3 seeds)",
    "sinusoid-maml": "MSE 0.67 / 0.38 / 0.35 after 1 / 5 / 10 steps",
}
