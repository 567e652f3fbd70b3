"""Serving sbdeploy artifacts: Triton model repositories (:mod:`.triton_repo`), and a live PyTriton server
for tests and scripts/bench_triton.py (:mod:`.pytriton_server`: optional packages, imported lazily).
"""
