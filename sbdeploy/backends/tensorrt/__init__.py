"""TensorRT backend, Polygraphy-style: ``builder`` (ONNX -> engine + sidecar), ``sidecar``, ``runner``,
``cudagraph`` and ``_compat`` (the one TensorRT 10.x / 11.x switch); ``tensorrt`` and ``pycuda`` are imported lazily.
"""
