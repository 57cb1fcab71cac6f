"""Errors a user can act on. Every door prints `str(error)` instead of a traceback."""


class RagError(Exception):
    """Base class: the message says what went wrong and what to do."""


class ConfigError(RagError):
    """The settings file, an environment variable or a flag holds an invalid value."""


class CorpusError(RagError):
    """The corpus folder is missing, empty or unreadable."""


class IndexStateError(RagError):
    """The index is missing, locked, corrupted or built with another embedding model."""


class BackendError(RagError):
    """An LLM or embedding backend is missing, unreachable or failing."""


class QuestionError(RagError):
    """The question cannot be asked as given (empty, say)."""


class ModelCrashed(BackendError):
    """The local model's process died (a native crash or a kill); it is restarted, the session goes on."""


def describe(exc: BaseException) -> str:
    """What a door shows for an error: our errors' own message, or what kind of unexpected one it was."""
    return str(exc) if isinstance(exc, RagError) else f"Unexpected error: {type(exc).__name__}: {exc}"
