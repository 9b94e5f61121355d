"""rsft: rejection-sampling fine-tuning for factory models."""

import os as _os
import sys as _sys

# Memory handed back between the chunks of a selection (benchmarks/dsir_compare.py --corpus real,
# 400k real documents, 2 workers: peak RSS 1.39 → 0.84 GB with these and a 4 MiB chunk_bytes).
# Polars' allocator (jemalloc, options under the _RJEM_ prefix) keeps freed pages for 10 s by
# default, so a chunk's freed n-gram working set was still held while the next one was built;
# pyarrow's default pool (mimalloc) keeps the Parquet reader's buffers — the system allocator,
# trimmed after every batch (rsft.sampling.release_memory), does not. Both are read once, when
# the library loads: set here only if it is not loaded yet and the user set nothing.
if "polars" not in _sys.modules:
    _os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
if "pyarrow" not in _sys.modules:
    _os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

__version__ = "0.1.0"
