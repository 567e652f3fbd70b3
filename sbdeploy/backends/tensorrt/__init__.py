"""TensorRT backend, Polygraphy-style: ``builder`` (ONNX -> engine + sidecar), ``sidecar``
(what an engine was built with, checked before loading), ``runner`` (engine -> ``infer``),
``_compat`` (the one TensorRT 10.x / 11.x switch).

Nothing here imports ``tensorrt`` or ``pycuda`` at import time; they are optional extras
(``pip install sbdeploy[gpu]``) loaded by :func:`sbdeploy.backends.tensorrt._compat.import_tensorrt`
and :func:`~sbdeploy.backends.tensorrt._compat.import_pycuda`, which turn their absence into
one clear :class:`~sbdeploy.errors.BackendUnavailableError`.
"""
