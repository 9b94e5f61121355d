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

__version__ = "0.1.0"
