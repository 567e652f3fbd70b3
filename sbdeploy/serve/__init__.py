"""Serving sbdeploy artifacts: Triton model repositories, and a live PyTriton server for tests and benchmarks.

:mod:`sbdeploy.serve.triton_repo` is pure (artifacts in, repository files out);
:mod:`sbdeploy.serve.pytriton_server` and :mod:`sbdeploy.serve.triton_bench` need the
optional serving packages (``pip install sbdeploy[serve]`` and the PyTriton
environment made by ``scripts/setup.sh --with-triton``) and import them lazily.
"""
