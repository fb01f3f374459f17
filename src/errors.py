"""Error types shared by every layer (so that a low layer can raise what a high layer catches)."""


class AnnotationError(ValueError):
    """Raised when the annotations table cannot be used; the message names the column, slide or patient."""


class ConfigError(ValueError):
    """Raised for a config that cannot run; the message names the key, the value and what is allowed."""
