"""One error vocabulary for every stage.

Each error carries a one-line, user-facing message that names the thing that is wrong (a file, a
row, a field) and what was expected. The CLI maps the classes to exit codes once
(`EXIT_CODES`); the predictor will map them to HTTP codes once.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class: an expected failure with a clear message (never shown as a traceback)."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(ConveyorError):
    """The input (a source, a file, a CLI argument) cannot be used as given."""

    exit_code = 2


class ConfigError(ConveyorError):
    """The configuration file or a config value is invalid."""

    exit_code = 3


class SpecError(ConfigError):
    """A generated or user-given spec (search space, manifest, resource) is invalid."""


class StoreError(ConveyorError):
    """The object store is unreachable, refuses our credentials, or lacks an object."""

    exit_code = 4


class NotFoundError(StoreError):
    """A named object (dataset, version, model) does not exist."""

    exit_code = 5


class IntegrityError(ConveyorError):
    """Stored bytes do not match their recorded checksum."""

    exit_code = 6


class GateFailed(ConveyorError):
    """A quality gate refused a candidate."""

    exit_code = 7


class ClusterError(ConveyorError):
    """The Kubernetes API refused a request, or a resource did not become ready in time."""

    exit_code = 9


EXIT_CODES = {
    cls.__name__: cls.exit_code
    for cls in (ConveyorError, InputError, ConfigError, SpecError, StoreError, NotFoundError,
                IntegrityError, GateFailed, ClusterError)
}
