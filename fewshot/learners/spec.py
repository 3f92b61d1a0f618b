"""A registry entry: the name a learner is built by, its class, and what the name implies.

One name per method and per variant, declared once, beside the method (``SPECS`` in its module):
``fomaml`` is MAML with ``first_order`` forced on, ``mamlpp`` is MAML with MAML++'s defaults.

Usage: ``LearnerSpec("fomaml", MAML, forced={"first_order": True}).config(inner_lr=0.5)``
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import GradientLearner


@dataclass(frozen=True)
class LearnerSpec:
    """``name`` builds ``cls`` (a ``GradientLearner`` subclass, whose ``config_class`` is its
    config).

    - ``defaults``: settings the name starts from (MAML++'s switches), which any override may
      change;
    - ``forced``: settings the name means (first order for ``fomaml``), applied over a given config
      instance too, and the starting point of a dict of overrides.
    """

    name: str
    cls: type[GradientLearner]
    defaults: Mapping[str, Any] = field(default_factory=dict)
    forced: Mapping[str, Any] = field(default_factory=dict)

    @property
    def config_class(self) -> type:
        return self.cls.config_class

    def config(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The name's config with ``overrides`` applied (an unknown key is one ConfigError naming
        the valid ones)."""
        overrides = dict(overrides or {})
        known = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown {self.name} config key(s) {', '.join(unknown)}: "
                              f"valid keys are {', '.join(sorted(known))}")
        return self.config_class(**{**self.defaults, **self.forced, **overrides})

    def with_forced(self, config: Any) -> Any:
        """``config`` (an instance) with the name's forced settings."""
        return dataclasses.replace(config, **self.forced) if self.forced else config
