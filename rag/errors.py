"""Errors a user can act on. The CLI prints their message without a traceback."""


class RagError(Exception):
    """Base class: the message says what went wrong and what to do."""


class BadInputError(RagError, ValueError):
    """Malformed input data, arguments or configuration."""


class ArtifactError(RagError):
    """A built artifact (passages, index, counts) is missing, truncated or does not match its inputs."""


class MissingDependencyError(RagError, ImportError):
    """An optional dependency is not installed; the message names the pip extra."""


def require(module: str, extra: str):
    """Import an optional heavy dependency lazily, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module!r} is not installed: pip install 'rag[{extra}]' (missing: {e.name})"
        ) from e
