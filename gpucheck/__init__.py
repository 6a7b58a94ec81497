"""gpucheck: does the GPU path work here, and if not, exactly what do I run to fix it?"""

__version__ = "0.1.0"
# The distribution name on the package index: `gpucheck` there is an unrelated project, so
# `pip install gpu-path-check` installs this one (import package and command stay `gpucheck`).
__dist__ = "gpu-path-check"
