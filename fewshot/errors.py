"""Errors of the learning side, each with a one-line message that says what is wrong and how to fix
it."""


class FewshotError(ValueError):
    """Base class of every error the library raises on purpose."""


class ConfigError(FewshotError):
    """A configuration, preset or command-line value is wrong."""


class AdaptationError(FewshotError):
    """The inner loop produced a non-finite loss (the message names the step)."""


class CheckpointError(FewshotError):
    """A checkpoint or pretrained file is missing, corrupt, or from another learner/backbone."""


class FewshotWarning(UserWarning):
    """Base class of the library's warnings (the CLI prints each as one ``warning: ...`` line)."""


class AdaptationWarning(FewshotWarning):
    """Adaptation made the support loss worse (see ``fewshot.learners.checks.RISE_FACTOR``)."""
