# cuda-python (NVIDIA): only ``cuda.bindings.runtime`` is used, for CUDA graphs (sbdeploy/backends/tensorrt/cudagraph.py).
