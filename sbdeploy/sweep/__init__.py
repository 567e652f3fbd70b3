"""``sbdeploy sweep``: which SB network of a trained baseline is fastest here within an accuracy budget."""

from sbdeploy.sweep.run import SweepOptions, SweepResult, run_sweep

__all__ = ["SweepOptions", "SweepResult", "run_sweep"]
