"""One error vocabulary for every stage.

Each error carries a one-line, user-facing message that names the thing that is wrong (a file, a
row, a field) and what was expected. Every class says here, once, the exit code the CLI and the
entry points exit with and the HTTP status the predictor answers with; every error class of the
project is defined in this module.
"""

from __future__ import annotations


class ConveyorError(Exception):
    """Base class: an expected failure with a clear message (never shown as a traceback)."""

    exit_code = 1
    http_status = 500

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(ConveyorError):
    """The input (a source, a file, a CLI argument, a request) cannot be used as given."""

    exit_code = 2
    http_status = 400


class ConfigError(ConveyorError):
    """The configuration file or a config value is invalid."""

    exit_code = 3


class SpecError(ConfigError):
    """A generated or user-given spec (search space, manifest, resource) is invalid."""


class AdmissionError(SpecError):
    """A custom resource that an upstream admission webhook (ported rules) would deny."""


class StoreError(ConveyorError):
    """The object store is unreachable, refuses our credentials, or lacks an object."""

    exit_code = 4
    http_status = 503


class NotFoundError(StoreError):
    """A named object (dataset, version, model) does not exist."""

    exit_code = 5
    http_status = 404


class IntegrityError(ConveyorError):
    """Stored bytes do not match their recorded checksum."""

    exit_code = 6


class GateFailed(ConveyorError):
    """A quality gate refused a candidate."""

    exit_code = 7


class SearchFailed(ConveyorError):
    """A hyperparameter search ended without a usable best trial (Optuna or Katib)."""

    exit_code = 8


class ReleaseRefused(ConveyorError):
    """A promotion, approval or rejection was refused: the version was not blessed, never passed
    the environment before, was already decided, or its approval request expired."""

    exit_code = 10
    http_status = 409


class ClusterError(ConveyorError):
    """The Kubernetes API refused a request, or a resource did not become ready in time."""

    exit_code = 9
    http_status = 503

