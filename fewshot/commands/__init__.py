"""Subcommands of the ``fewshot`` console script, one module each (see ``fewshot.cli``)."""
