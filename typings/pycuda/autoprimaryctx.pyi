# Importing pycuda.autoprimaryctx initializes CUDA and makes device 0's primary context current
# (shared with the CUDA runtime, hence with TensorRT and torch).
from pycuda.driver import Context, Device

device: Device
context: Context
