"""TensorRT backend, Polygraphy-style: ``builder`` (ONNX -> engine + sidecar), ``sidecar`` (what an engine was
built with, checked before loading), ``runner`` (engine -> ``infer``), ``cudagraph`` (CUDA-graph replay) and
``_compat`` (the one TensorRT 10.x / 11.x switch). ``tensorrt`` and ``pycuda`` (``pip install sbdeploy[gpu]``)
are imported only when used; without them :mod:`._compat` raises one clear BackendUnavailableError.
"""
