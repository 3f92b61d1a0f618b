"""ANIL and BOIL: MAML whose inner loop adapts only one part of the model.

- **ANIL** (Raghu, Raghu, Bengio & Vinyals 2020, "Rapid learning or feature reuse?"): the inner loop
  adapts only the head (the output layer); the body is meta-learned in the outer loop only.  The
  inner loop's gradients then never flow back through the body's parameters, so adaptation is cheap.
- **BOIL** (Oh, Yoo, Kim & Yun 2021, "Body only update in inner loop"): the reverse: the head is
  frozen in the inner loop and only the body adapts; in the outer loop both the body and the head
  are meta-learned (the head's initialisation is a meta-parameter that no task updates).

Both are MAML (its inner optimizers, LSLR, MSL, per-step BN, ...) with a different set of adapted
names: ``part="head"`` (ANIL) or ``"body"`` (BOIL).  The head is the parameters under the module
named by ``head`` (a name prefix such as ``"classifier"``), by default the model's last
``nn.Linear`` with trainable parameters in module order (``Conv4.classifier``, an MLP's final
layer).  The usual ``no_adapt``/``adapt_norm`` filters apply first, so with ``part="body"``
batch-norm affines stay meta-learned only unless ``adapt_norm``.
"""
from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from .config import ANILConfig
from .maml import MAML
from .spec import LearnerSpec


def last_linear(model: nn.Module) -> str:
    """The name of ``model``'s last ``nn.Linear`` with a trainable parameter, in module order."""
    found = [name for name, m in model.named_modules()
             if isinstance(m, nn.Linear)
             and any(p.requires_grad for p in m.parameters(recurse=False))]
    if not found:
        raise ConfigError(
            f"{type(model).__name__} has no nn.Linear with trainable parameters to take as the "
            "head: "
            "name the head's module with head=... (e.g. head='classifier')")
    return found[-1]


def in_head(name: str, head: str) -> bool:
    """Whether parameter ``name`` belongs to module ``head`` ("": the model itself is the head, a
    lone Linear)."""
    return head == "" or name == head or name.startswith(head + ".")


class ANIL(MAML):
    """ANIL (``ANILConfig()``) or BOIL (``ANILConfig(part="body")``) over any ``nn.Module``.

    Usage: ``learner = ANIL(Conv4(1, 5), ANILConfig(inner_lr=0.4));
    learner.meta_loss(batch).loss.backward()``
    """

    config_class = ANILConfig
    config: ANILConfig

    def adapted_names(self) -> list[str]:
        head = self.config.head.strip(".") if self.config.head is not None else last_linear(
            self.model)
        params = [n for n, p in self.model.named_parameters() if p.requires_grad]
        if not any(in_head(n, head) for n in params):
            modules = list(dict.fromkeys(n.rsplit(".", 1)[0] for n in params if "." in n))
            raise ConfigError(
                f"head={head!r} matches no trainable parameter of {type(self.model).__name__}: "
                "give the "
                f"name of its output module (one of {', '.join(modules[-3:])}), or "
                "head=null for "
                "the last nn.Linear")
        self.head = head
        keep = self.config.part == "head"
        names = [n for n in super().adapted_names() if in_head(n, head) == keep]
        if not names:
            what = (f"the head {head!r}" if keep
                    else f"the body (everything outside the head {head!r})")
            raise ConfigError(
                f"{'ANIL' if keep else 'BOIL'}: {what} has no parameter left to adapt "
                "after no_adapt/adapt_norm: loosen no_adapt (or set adapt_norm) or "
                "choose another head")
        return names


SPECS = (LearnerSpec("anil", ANIL, forced={"part": "head"}),
         LearnerSpec("boil", ANIL, forced={"part": "body"}))
