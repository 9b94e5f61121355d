"""rsft: rejection-sampling fine-tuning for factory models."""

import os as _os
import sys as _sys

# pyarrow's default pool (mimalloc) keeps the Parquet reader's buffers between a selection's
# batches; the system allocator, trimmed every few text batches and after every chunk (rsft.sampling.release_memory), hands
# them back (no slower: Parquet write + read of 3 M rows, 5.1-6.3 s CPU with mimalloc, 4.8-4.9 s
# with the system pool). Read once when pyarrow loads: set only if it is not loaded yet and the
# user set nothing. (Polars' jemalloc keeps freed pages 0.5 s, its default: decay 0 would return
# them at once, at ~20 % more CPU on the prefilter's kind of work, so it is left alone.)
if "pyarrow" not in _sys.modules:
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
# numpy's OpenBLAS starts its worker threads at import, and each spins 2^28 cycles (~0.1 s) waiting
# for work before it sleeps — every rsft process imports numpy (pyarrow does), most never call BLAS:
# +40 ms of CPU per process on 2 cores (`import numpy`: 0.10 s against 0.07 s), one more spinning
# thread per core on larger machines. 2^20 cycles (~0.4 ms) keeps a tight loop of BLAS calls
# on awake workers. Read once when numpy loads: set only if it is not loaded and the user set nothing.
if "numpy" not in _sys.modules:
    _os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "20")

__version__ = "0.1.0"
