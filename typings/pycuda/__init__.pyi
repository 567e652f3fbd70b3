# Minimal local type stubs for the parts of pycuda that sbdeploy uses (pycuda ships none).
# Written from pycuda's documentation (https://documen.tician.de/pycuda/driver.html); checked by mypy
# through [tool.mypy] mypy_path = "typings". Extend them when sbdeploy uses more of pycuda.
VERSION: tuple[int, int, int]
VERSION_TEXT: str
