"""Set the BLAS/OpenMP thread count from ``--threads N`` (default 1) before NumPy is imported.

Imported first by the extraction benchmarks. BLAS reads its thread count when NumPy is first
imported, so this must precede every NumPy import. One thread by default: on a shared 2-core
machine, spinning BLAS/OpenMP threads that lose their core make a tall-skinny Gram update hundreds
of times slower, which would measure the neighbours, not repmatch.
"""

import os
import sys


def threads_from_argv(argv) -> int:
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


THREADS = threads_from_argv(sys.argv[1:])
for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))
