"""The runner interface every backend implements (in the manner of Polygraphy's runners).

A runner is a context manager that loads a session or engine; the base class checks every feed against
:meth:`Runner.input_specs`, so every backend refuses bad input with the same :class:`InputError`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sbdeploy.errors import InputError

Feed = dict[str, np.ndarray]
# One timed inference: runs to completion, returns device compute ms or None (see Runner.timed_call).
TimedCall = Callable[[], "float | None"]


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one input or output; ``None`` marks a dynamic dimension."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> str:
        dims = "x".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {dims} {np.dtype(self.dtype).name}"


class Runner(abc.ABC):
    """Base of all backends. Subclasses implement ``_activate``, ``_infer``, ``_deactivate``."""

    name: str = "runner"

    @property
    def idle_spin_s(self) -> float:
        """How long this runner's idle worker threads keep a core busy after a run (valid once active): a timer
        interleaving it with others lets that long pass before timing the next callable."""
        return 0.0

    def __init__(self) -> None:
        self.is_active = False
        self.notes: list[str] = []  # what a report should say about this run (e.g. a CUDA-graph fallback)

    def __enter__(self) -> Runner:
        self._activate()
        self.is_active = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.is_active = False
        self._deactivate()

    @abc.abstractmethod
    def input_specs(self) -> list[TensorSpec]:
        """The inputs this runner expects (valid once active)."""

    def check_feed(self, feed: Feed) -> None:
        """Raise InputError unless ``feed`` has exactly the expected names, ranks, dims and dtypes."""
        specs = {s.name: s for s in self.input_specs()}
        missing, extra = sorted(set(specs) - set(feed)), sorted(set(feed) - set(specs))
        if missing or extra:
            raise InputError(
                f"{self.name}: feed has inputs {sorted(feed)} but the model expects "
                f"{[s.describe() for s in specs.values()]}"
                + (f"; missing {missing}" if missing else "")
                + (f"; unexpected {extra}" if extra else "")
            )
        for name, spec in specs.items():
            array = feed[name]
            if not isinstance(array, np.ndarray):
                raise InputError(f"{self.name}: input {name!r} must be a numpy array, got {type(array).__name__}")
            if array.dtype != spec.dtype:
                raise InputError(
                    f"{self.name}: input {name!r} has dtype {array.dtype}, expected {np.dtype(spec.dtype).name} "
                    f"(convert with .astype(np.{np.dtype(spec.dtype).name}))"
                )
            if array.ndim != len(spec.shape) or any(d is not None and d != a for d, a in zip(spec.shape, array.shape)):
                raise InputError(
                    f"{self.name}: input {name!r} has shape {'x'.join(map(str, array.shape))}, expected {spec.describe()}"
                )

    def check_call(self, feed: Feed, call: str) -> None:
        """Raise unless the runner is active and ``feed`` fits; ``call`` names the caller."""
        if not self.is_active:
            raise RuntimeError(f"{self.name}: use the runner inside a `with` block before calling {call}()")
        self.check_feed(feed)

    def infer(self, feed: Feed) -> Feed:
        """Check ``feed``, run one inference, return outputs by name as numpy arrays."""
        self.check_call(feed, "infer")
        return self._infer(feed)

    def timed_call(self, feed: Feed) -> TimedCall:
        """A callable that runs ``feed`` (checked once, here) end to end; it returns the device compute ms, or None."""
        self.check_call(feed, "timed_call")

        def run() -> float | None:
            self.infer(feed)
            return None

        return run

    @abc.abstractmethod
    def _activate(self) -> None: ...

    @abc.abstractmethod
    def _infer(self, feed: Feed) -> Feed: ...

    def _deactivate(self) -> None:  # noqa: B027  (optional hook)
        """Free what ``_activate`` loaded."""
