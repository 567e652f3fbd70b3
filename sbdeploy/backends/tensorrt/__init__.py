"""TensorRT backend, Polygraphy-style: ``builder`` (ONNX -> engine + sidecar), ``sidecar``
(what an engine was built with, checked before loading), ``runner`` (engine -> ``infer``),
``cudagraph`` (CUDA-graph replay), ``_compat`` (the one TensorRT 10.x / 11.x switch).

Nothing here imports ``tensorrt`` or ``pycuda`` at import time; they are optional extras
(``pip install sbdeploy[gpu]``). Whether they can run is :func:`sbdeploy.environment.gpu_stack`'s
answer, which :func:`sbdeploy.backends.tensorrt._compat.require_tensorrt` and
:func:`~sbdeploy.backends.tensorrt._compat.require_pycuda` turn into one clear
:class:`~sbdeploy.errors.BackendUnavailableError`.
"""
