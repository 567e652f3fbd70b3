"""Exception types whose messages say what went wrong and what to do next; the CLI prints one ``error:`` line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """`` (did you mean a or b?)`` for the choices close to ``name``, else an empty string (for error messages)."""
    close = difflib.get_close_matches(name, list(choices), n=2)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


class SbdeployError(Exception):
    """Base of every error that is the user's to fix (bad input, missing backend...)."""

    exit_code = 2


class UnknownModelError(SbdeployError, ValueError):
    """A model name or option that the registry does not know."""


class CheckpointError(SbdeployError):
    """A checkpoint folder that is missing, corrupt, or does not match its config."""


class OnnxModelError(SbdeployError):
    """An ONNX file that cannot be read, checked, or run."""


class InputError(SbdeployError, ValueError):
    """An inference input of the wrong name, shape or dtype."""


class BackendUnavailableError(SbdeployError):
    """A backend (TensorRT, CUDA, pycuda...) that this machine cannot run."""


class EngineMismatchError(SbdeployError):
    """An engine built for another GPU or TensorRT version."""


class ConfigError(SbdeployError, ValueError):
    """An option value that is out of range or unknown (sampling set, size, batch...)."""


class EngineBuildError(SbdeployError):
    """TensorRT could not build an engine from a parsed network (no kernel, out of memory...)."""


class DataError(SbdeployError):
    """A data source that cannot be found, parsed or used with the model (SOURCE strings, folders)."""


class RunError(SbdeployError):
    """A backend failed to run a file (its graph, its inputs or the machine), reported as the run's failure."""


class ArtifactError(SbdeployError):
    """A model artifact (ONNX file, engine, engine sidecar) that is missing, unreadable or unusable here."""
