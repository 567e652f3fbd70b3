"""The package's layers, bottom to top: a module imports sbdeploy modules of its own layer or below, never above.

Each layer names modules and packages (a package: every module under it; the most specific
name wins). ``tests/test_layers.py`` checks every import against this list, and the
README's layout line is this list.
"""

LAYERS: tuple[tuple[str, ...], ...] = (
    ("_version", "errors", "_io", "_lazy", "_layers", "tolerance", "kernels"),
    ("environment", "bench.stats", "bench.machine", "bench.timing", "bench.stability", "bench.defaults"),
    ("nn",),
    ("models", "flops", "zoo", "data"),
    ("checkpoint", "state_dict", "int8_recipe", "targets", "calibration", "backends.tensorrt.sidecar"),
    ("train", "convert"),
    ("passes", "export", "files", "sources"),
    ("backends",),
    ("tune", "artifacts"),
    ("validate", "bench"),
    ("flow", "pipeline", "serve", "doctor", "sweep"),
    ("cli", "__main__", ""),
)
"""Module names relative to ``sbdeploy`` (``""``: the package itself, which re-exports the public API)."""
