"""Error types shared by every layer (so that a low layer can raise what a high layer catches)."""


class AnnotationError(ValueError):
    """Raised when the annotations table cannot be used; the message names the column, slide or patient."""


class ConfigError(ValueError):
    """Raised for a config that cannot run; the message names the key, the value and what is allowed."""


class UnsafeFileError(ValueError):
    """Raised instead of loading a checkpoint or weights file that could run code; nothing from it was run or built.

    The message names the file and what in it was refused (a pickled object beyond tensors and plain data, or
    a ``_target_`` / outcome kind the loader does not allow), and how to allow it when the file is trusted.
    """


class TrialPrunedError(Exception):
    """The study's pruner stopped this trial (``src.hpsearch.pruning``); the sweeper records it as *pruned*."""
