"""Serving sbdeploy artifacts: Triton model repositories, and a live PyTriton server for tests and benchmarks.

:mod:`.triton_repo` writes repositories (files in, model folders out: :mod:`.model_config`,
:mod:`.pbtxt`, :mod:`.config_check`, :mod:`.readme`); :mod:`.pytriton_server` and
:mod:`.triton_bench` need the optional serving packages (``pip install sbdeploy[serve]``
and the PyTriton environment of ``scripts/setup.sh --with-triton``) and import them lazily.
"""
