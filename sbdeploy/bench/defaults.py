"""The bench's default measuring lengths, in a module without imports (the CLI's option defaults load nothing heavy)."""

DEFAULT_BUDGET_S = 20.0
"""Seconds of timed rounds per group (backend x batch) before an adaptive run stops anyway."""
DEFAULT_GOAL = 0.03
"""Relative half-width (+-3%) of the 95% intervals that ends an adaptive run."""
