"""Polars feature builders: numeric passthrough, one-hot categoricals, hashed text n-grams.

Everything here returns ``pl.Expr`` (no Python UDFs), so features are computed inside the
lazy query that reads the data, in bounded memory.
"""

from __future__ import annotations

import functools
import operator

import numpy as np
import polars as pl

from rsft.config import FeaturesConfig


def rolling_names(cfg: FeaturesConfig) -> list[str]:
    """Columns :func:`rolling_feature_exprs` adds, in order: ``<col>_<stat><window>``."""
    return cfg.rolling_columns()


def feature_names(cfg: FeaturesConfig) -> list[str]:
    """Model/scorer input columns, in a fixed order: numeric, rolling aggregates, one-hot levels."""
    names = list(cfg.numeric) + rolling_names(cfg)
    for col, levels in cfg.categorical.items():
        names += [f"{col}={level}" for level in levels]
    return names


def feature_exprs(cfg: FeaturesConfig) -> list[pl.Expr]:
    """Float32 expressions producing :func:`feature_names` (one-hot: 1.0 when equal)."""
    exprs = [pl.col(c).cast(pl.Float32).alias(c) for c in cfg.numeric]
    # a group's first reading has no spread yet: its rolling std is 0, not missing
    exprs += [pl.col(n).cast(pl.Float32).fill_null(0.0).alias(n) if "_std" in n else pl.col(n).cast(pl.Float32).alias(n)
              for n in rolling_names(cfg)]
    for col, levels in cfg.categorical.items():
        exprs += [(pl.col(col) == level).cast(pl.Float32).alias(f"{col}={level}") for level in levels]
    return exprs


def to_matrix(df: pl.DataFrame | pl.LazyFrame, cfg: FeaturesConfig) -> np.ndarray:
    """Whole-frame conversion to a float32 ``[rows, features]`` array (not column by column);
    for ``kind: text`` the int64 padded n-gram ids of :func:`text_matrix`."""
    if cfg.kind == "text":
        return text_matrix(df, cfg)
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    out = lf.select(feature_exprs(cfg)).collect()
    return out.to_numpy().astype(np.float32, copy=False)


def product_terms(cfg: FeaturesConfig, terms: list[list[str]]) -> tuple[FeaturesConfig, list[pl.Expr]]:
    """(``cfg`` with one more numeric input per term, the expressions that add those columns to a
    frame: the product of the term's columns, named ``a*b``). The linear reference's declared
    physics (``promotion.linear_reference_terms``), e.g. irradiance × array size. No terms:
    ``cfg`` itself and no expressions."""
    if not terms:
        return cfg, []
    exprs = [functools.reduce(operator.mul, [pl.col(c).cast(pl.Float64) for c in term]).alias("*".join(term))
             for term in terms]
    return cfg.model_copy(update={"numeric": [*cfg.numeric, *("*".join(t) for t in terms)]}), exprs


def labels(df: pl.DataFrame, cfg: FeaturesConfig) -> np.ndarray:
    """float32 label values, or int64 class ids (index in ``cfg.classes``) for classification."""
    if not cfg.classes:
        return df.get_column(cfg.label).cast(pl.Float32).to_numpy(writable=True)
    col = df.get_column(cfg.label).cast(pl.String)
    ids = col.replace_strict(cfg.classes, list(range(len(cfg.classes))), default=-1, return_dtype=pl.Int64)
    if (ids == -1).any():
        unknown = sorted(set(col.filter(ids == -1).drop_nulls().to_list()))[:5]
        raise ValueError(f"label '{cfg.label}' has values outside features.classes {cfg.classes}: {unknown}")
    return ids.to_numpy(writable=True)


TOKEN_PATTERN = r"\w+|[^\w\s]+"  # DSIR's WordPunct tokenizer: word runs and punctuation runs
# n-gram hashing schemes (what a saved n-gram scorer records; rsft.density.ngram):
#   1: every n-gram's bucket is the Polars hash of its string ("tok1 tok2") mod buckets (the text
#      model's text_matrix, and n-gram scorers saved before the scheme was recorded);
#   2: unigrams as in 1 (hash(token) mod buckets); the g-gram starting at token i from the hashes:
#      c¹ᵢ = hash(tokenᵢ), cᵍᵢ = hash((cᵍ⁻¹ᵢ · MIX) xor c¹ᵢ₊g₋₁) on UInt64 (wrapping), bucket cᵍᵢ mod
#      buckets: no n-gram strings are built (new n-gram scorers)
NGRAM_HASH_SCHEMES = (1, 2)
NGRAM_MIX = 0x9E3779B97F4A7C15  # odd 64-bit constant (2⁶⁴ / golden ratio)


def _tokens(text: pl.Expr) -> pl.Expr:
    return text.str.to_lowercase().str.extract_all(TOKEN_PATTERN)


def _check_scheme(scheme: int) -> None:
    if scheme not in NGRAM_HASH_SCHEMES:
        raise ValueError(f"n-gram hash scheme must be one of {NGRAM_HASH_SCHEMES}, got {scheme}")


def _gram_hash(prev: pl.Expr, hashes: pl.Expr, g: int, seed: int) -> pl.Expr:
    """Scheme 2: the UInt64 hash of the g-gram at each position from the (g − 1)-gram's hash there
    and the hash of the token g − 1 further on; null where that token is past the end."""
    x = (prev * pl.lit(NGRAM_MIX, dtype=pl.UInt64)).xor(hashes.shift(-(g - 1)))
    return pl.when(x.is_not_null()).then(x.hash(seed))


def hashed_ngram_ids(text: pl.Expr, buckets: int = 10_000, ngrams: int = 2, seed: int = 0, scheme: int = 1) -> pl.Expr:
    """DSIR-style hashed n-grams: lowercase, word and punctuation-run tokens (``\\w+|[^\\w\\s]+``,
    DSIR's WordPunct tokenizer), 1..``ngrams``-grams,
    each hashed to a bucket in ``[0, buckets)`` by hash ``scheme`` (:data:`NGRAM_HASH_SCHEMES`).
    Returns ``List[UInt32]`` per row (pure Polars): each document's unigrams, then its bigrams, …"""
    _check_scheme(scheme)
    tokens = _tokens(text)
    if scheme == 2:
        h = pl.element().hash(seed)
        grams, c = [h], h
        for g in range(2, ngrams + 1):
            c = _gram_hash(c, h, g, seed)
            grams.append(c.drop_nulls())
        ids = [tokens.list.eval((x % buckets).cast(pl.UInt32)) for x in grams]
        return pl.concat_list(ids) if len(ids) > 1 else ids[0]
    grams = [tokens]
    for n in range(2, ngrams + 1):
        parts = [pl.element().shift(-i) for i in range(n)]
        grams.append(tokens.list.eval(pl.concat_str(parts, separator=" ").drop_nulls()))
    ids = [g.list.eval((pl.element().hash(seed) % buckets).cast(pl.UInt32)) for g in grams]
    return pl.concat_list(ids) if len(ids) > 1 else ids[0]


def _flat_tokens(df: pl.DataFrame | pl.LazyFrame, column: str) -> tuple[pl.Series, np.ndarray]:
    """(every document's tokens, one flat String series in document order, int64 tokens per row)."""
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    toks = lf.select(_tokens(pl.col(column)).alias("t")).collect()["t"]
    lengths = toks.list.len().fill_null(0).to_numpy().astype(np.int64)
    return toks.explode().drop_nulls(), lengths


def _flat_token_hashes(df: pl.DataFrame | pl.LazyFrame, column: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hash of every document's tokens, flat in document order — ``_flat_tokens``' series
    hashed —, int64 tokens per row): hashed inside the tokenising query, chunk by chunk (no flat
    String series, no concatenation of the chunks' token strings)."""
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    hashes = lf.select(_tokens(pl.col(column)).list.eval(pl.element().hash(seed)).alias("h")).collect()["h"]
    lengths = hashes.list.len().fill_null(0).to_numpy().astype(np.int64)
    parts = [c.explode(empty_as_null=False, keep_nulls=False).to_numpy() for c in hashes.get_chunks()]
    flat = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, np.uint64)
    return flat.astype(np.uint64, copy=False), lengths


def _flat_gram_buckets(flat: pl.Series | np.ndarray, buckets: int, ngrams: int, seed: int, scheme: int) -> list[np.ndarray]:
    """Per g = 1..N, integer [tokens]: at token i the bucket of the g-gram starting there (across
    document ends too: the caller drops those). Scheme 2 (``flat``: the tokens, or their uint64
    hashes from :func:`_flat_token_hashes`): int64, scheme 1 (``flat``: the tokens): uint32."""
    if scheme == 2:  # _gram_hash's arithmetic in numpy (uint64 wraps as Polars' does), Polars' hash
        h = flat if isinstance(flat, np.ndarray) else flat.hash(seed).to_numpy()
        out, c = [_bucket(h, buckets)], h
        for g in range(2, ngrams + 1):
            with np.errstate(over="ignore"):
                x = c[: len(h) - g + 1] * np.uint64(NGRAM_MIX)
            x ^= h[g - 1:]
            c = pl.Series(x, dtype=pl.UInt64).hash(seed).to_numpy()
            ids = np.empty(len(h), np.int64)
            ids[len(c):] = 0  # past the end (dropped by the caller)
            ids[: len(c)] = _bucket(c, buckets)
            out.append(ids)
        return out
    exprs = []
    for g in range(1, ngrams + 1):
        gram = pl.col("t") if g == 1 else pl.concat_str([pl.col("t").shift(-i) for i in range(g)], separator=" ")
        exprs.append((gram.hash(seed) % buckets).cast(pl.UInt32).alias(f"g{g}"))
    hashed = pl.DataFrame({"t": flat}).select(exprs)
    return [hashed.get_column(f"g{g}").to_numpy() for g in range(1, ngrams + 1)]


def _bucket(hashes: np.ndarray, buckets: int) -> np.ndarray:
    """int64 [n]: uint64 hashes mod ``buckets``: a mask for a power of two (the default 2^15),
    else Polars' modulo (about 4× NumPy's uint64 one)."""
    if buckets & (buckets - 1) == 0:
        return (hashes & np.uint64(buckets - 1)).view(np.int64)
    return (pl.Series(hashes, dtype=pl.UInt64) % buckets).to_numpy().view(np.int64)


def _cross_ends(lengths: np.ndarray, g: int) -> np.ndarray:
    """Flat token positions where no g-gram starts: each document's last g − 1 tokens."""
    ends = np.cumsum(lengths)
    out = [ends[lengths >= j] - j for j in range(1, g)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def hashed_ngram_flat(df: pl.DataFrame | pl.LazyFrame, column: str, buckets: int = 10_000, ngrams: int = 2,
                      seed: int = 0, scheme: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """:func:`hashed_ngram_ids` of ``df[column]`` as (flat int64 ids [total], int64 offsets [rows + 1]):
    the same ids in the same order (each document's unigrams, then its bigrams, …), computed on the
    flat token column — n-grams built and hashed once over all tokens, no per-document list
    evaluation, no list column of n-grams — about twice as fast and with a smaller working set."""
    _check_scheme(scheme)
    flat, lengths = _flat_token_hashes(df, column, seed) if scheme == 2 else _flat_tokens(df, column)
    n, total = len(lengths), int(lengths.sum())
    hashed = _flat_gram_buckets(flat, buckets, ngrams, seed, scheme)
    del flat
    counts = [np.maximum(lengths - (g - 1), 0) for g in range(1, ngrams + 1)]  # g-grams per document
    per_doc = np.sum(counts, axis=0) if n else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.cumsum(per_doc)]).astype(np.int64)
    tok_off = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    # the g-gram starting at token i of document d goes to offsets[d] + Σ_{h<g} counts[h][d] + (i − tok_off[d])
    dest = np.repeat(offsets[:-1] - tok_off[:-1], lengths)
    dest += np.arange(total, dtype=np.int64)
    keep = np.ones(total, dtype=bool)
    out = np.empty(int(offsets[-1]), dtype=np.int64)
    for g in range(1, ngrams + 1):
        ids = hashed[g - 1]
        if g == 1:
            out[dest] = ids
        else:  # the last g − 1 tokens of a document start no g-gram
            keep[_cross_ends(lengths, g)] = False
            out[dest[keep]] = ids[keep]
        if g < ngrams:
            dest += np.repeat(counts[g - 1], lengths)
    return out, offsets


def _flat_ngram_buckets(df: pl.DataFrame | pl.LazyFrame, column: str, buckets: int, ngrams: int, seed: int,
                        scheme: int) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Per g: (bucket of the g-gram starting at each flat token, the positions where none starts),
    and the tokens per row: the n-grams without putting them in per-document order."""
    _check_scheme(scheme)
    flat, lengths = _flat_token_hashes(df, column, seed) if scheme == 2 else _flat_tokens(df, column)
    ids = _flat_gram_buckets(flat, buckets, ngrams, seed, scheme)
    del flat
    return ids, [_cross_ends(lengths, g) for g in range(1, ngrams + 1)], lengths


def hashed_ngram_counts(df: pl.DataFrame | pl.LazyFrame, column: str, buckets: int = 10_000, ngrams: int = 2,
                        seed: int = 0, scheme: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(int64 [buckets] count of each bucket over all documents' n-grams, int64 n-grams per row):
    what a bag-of-buckets model is fitted on — the ids of :func:`hashed_ngram_ids`, counted."""
    ids, cross, lengths = _flat_ngram_buckets(df, column, buckets, ngrams, seed, scheme)
    total = np.zeros(buckets, np.int64)
    for g, (b, x) in enumerate(zip(ids, cross), start=1):
        c = np.bincount(b, minlength=buckets)
        if len(x):
            c -= np.bincount(b[x], minlength=buckets)
        total += c
    return total, ngrams_per_row(lengths, ngrams)


def ngrams_per_row(lengths: np.ndarray, ngrams: int) -> np.ndarray:
    """int64 [rows]: a row's uni- to ``ngrams``-grams, Σ_g max(tokens − g + 1, 0), from its tokens."""
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.sum([np.maximum(lengths - (g - 1), 0) for g in range(1, ngrams + 1)], axis=0,
                  dtype=np.int64).reshape(-1)


def hashed_ngram_sums(df: pl.DataFrame | pl.LazyFrame, column: str, weights: np.ndarray, ngrams: int = 2,
                      seed: int = 0, scheme: int = 2, per_ngram: bool = False) -> np.ndarray:
    """float64 [rows]: Σ over each document's n-grams of ``weights[bucket]`` (buckets = ``len(weights)``),
    with the ids of :func:`hashed_ngram_ids` — summed per document by segment sums over the flat
    tokens, never put in per-document order (the sums' rounding differs from a sum in that order).
    ``per_ngram``: each sum divided by the row's n-grams (:func:`ngrams_per_row`), the mean weight."""
    weights = np.asarray(weights, dtype=np.float64)
    ids, cross, lengths = _flat_ngram_buckets(df, column, len(weights), ngrams, seed, scheme)
    out = np.zeros(len(lengths), dtype=np.float64)
    if not len(ids[0]):
        return out
    w = weights[ids[0]]
    for b, x in zip(ids[1:], cross[1:]):
        wg = weights[b]
        wg[x] = 0.0  # no g-gram starts in a document's last g − 1 tokens
        w += wg
    nz = lengths > 0
    out[nz] = np.add.reduceat(w, (np.cumsum(lengths) - lengths)[nz])
    if per_ngram:
        out[nz] /= ngrams_per_row(lengths[nz], ngrams)
    return out


def ids_to_flat(ids: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """A List[UInt32] series as (flat ids [total], offsets [rows + 1]) for bag-of-words scoring."""
    lengths = ids.list.len().fill_null(0).to_numpy().astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    flat = ids.explode().drop_nulls().to_numpy().astype(np.int64)
    return flat, offsets


def text_matrix(df: pl.DataFrame | pl.LazyFrame, cfg: FeaturesConfig) -> np.ndarray:
    """int64 ``[rows, text_max_tokens]`` hashed n-gram ids of the text column (unigrams first,
    then bigrams), truncated and padded with ``text_buckets`` (the text model's padding id)."""
    n, pad = cfg.text_max_tokens, cfg.text_buckets
    lf = df.lazy() if isinstance(df, pl.DataFrame) else df
    ids = hashed_ngram_ids(pl.col(cfg.text_column).fill_null(""), cfg.text_buckets, cfg.text_ngrams)
    padded = ids.cast(pl.List(pl.Int64)).list.concat(pl.lit([pad] * n, dtype=pl.List(pl.Int64))).list.head(n)
    out = lf.select(padded.list.to_array(n).alias("ids")).collect()
    return out.get_column("ids").to_numpy(writable=True).reshape(-1, n)


def rolling_feature_exprs(cfg: FeaturesConfig) -> list[pl.Expr]:
    """Trailing rolling aggregates per ``cfg.group`` in ``cfg.time_column`` order, named
    ``<col>_<stat><window>``: the mean / std / min / max of a reading and the ``window - 1``
    before it on the same machine (causal: the same value at serving time). The first readings
    of a group use the ones they have (std needs two)."""
    out = []
    for r in cfg.rolling:
        for col in r.columns:
            for stat in r.stats:
                agg = getattr(pl.col(col).cast(pl.Float64), f"rolling_{stat}")(r.window, min_samples=1)
                out.append(agg.over(cfg.group, order_by=cfg.time_column).alias(f"{col}_{stat}{r.window}"))
    return out


def add_rolling_features(df: pl.DataFrame | pl.LazyFrame, cfg: FeaturesConfig):
    """``df`` with :func:`rolling_feature_exprs` added. Needs every group's readings in the
    frame (one machine-partition, or a prefilter block with its context rows)."""
    return df.with_columns(rolling_feature_exprs(cfg)) if cfg.rolling else df


def text_slices(df: pl.DataFrame | pl.LazyFrame, column: str, max_bytes: int) -> list[pl.DataFrame]:
    """The frame's text column (a frame or a lazy one) as consecutive row slices with at most
    ``max_bytes`` of text (a longer document alone): the featuriser's working set (tens of bytes
    per text byte) stays bounded."""
    df = df.lazy().select(column).collect() if isinstance(df, pl.LazyFrame) else df.select(column)
    nbytes = df.get_column(column).str.len_bytes().fill_null(0).to_numpy()
    if df.height <= 1 or int(nbytes.sum()) <= max_bytes:
        return [df]
    cuts = byte_slices(nbytes, max_bytes)
    return [df.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:])]


def byte_slices(nbytes: np.ndarray, budget: int) -> list[int]:
    """Cut points ``[0, …, len(nbytes)]`` of consecutive slices whose byte sums stay ``<= budget``
    (a row longer than the budget is a slice of its own)."""
    cuts, acc = [0], 0
    for i, b in enumerate(np.asarray(nbytes, dtype=np.int64).tolist()):
        if acc and acc + b > budget:
            cuts.append(i)
            acc = 0
        acc += b
    if cuts[-1] != len(nbytes):
        cuts.append(len(nbytes))
    return cuts
