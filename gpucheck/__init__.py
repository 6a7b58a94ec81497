"""gpucheck: does the GPU path work here, and if not, exactly what do I run to fix it?"""

__version__ = "0.1.0"
