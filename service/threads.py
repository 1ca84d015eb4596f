"""One CPU thread by default, for the numerical libraries too.

numpy's BLAS (OpenBLAS) starts one thread per core for every matrix product.
The product's products are small (the 62-parameter fit is a 50 x 1404 matrix
times a vector) and the machine is shared: measured on the 2-core benchmark
machine under load, the fit took 2.6 ms with BLAS threads and 1.8 ms with one.
The thread count of BLAS is read from the environment when numpy loads, so
the scripts call :func:`limit_blas_threads` before anything imports numpy.
"""

from __future__ import annotations

import os
import sys

_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def limit_blas_threads(threads: int = 1) -> bool:
    """Ask BLAS for ``threads`` threads unless the user set it; False if numpy was already loaded."""
    for name in _VARIABLES:
        os.environ.setdefault(name, str(max(1, int(threads))))
    return "numpy" not in sys.modules
