"""Serving sbdeploy artifacts: Triton model repositories (:mod:`.triton_repo`), and a live PyTriton server
for tests and benchmarks (:mod:`.pytriton_server`, :mod:`.triton_bench`: optional packages, imported lazily).
"""
