"""Polars feature builders."""

import polars as pl

from rsft.features import hashed_ngram_ids, ids_to_flat


def test_hashed_ngrams_are_deterministic_and_counted_right():
    df = pl.DataFrame({"text": ["Bearing noise, bearing!", "seal leak"]})
    ids = df.select(hashed_ngram_ids(pl.col("text"), buckets=1000, ngrams=2).alias("ids"))["ids"]
    # tokens: bearing noise , bearing ! -> 5 unigrams + 4 bigrams; seal leak -> 2 + 1
    assert ids.list.len().to_list() == [9, 3]
    again = df.lazy().select(hashed_ngram_ids(pl.col("text"), buckets=1000, ngrams=2).alias("ids")).collect()["ids"]
    assert ids.to_list() == again.to_list()
    first = ids.to_list()[0]
    assert first[0] == first[3]  # "bearing" twice -> same bucket
    assert all(0 <= i < 1000 for row in ids.to_list() for i in row)
    flat, offsets = ids_to_flat(ids)
    assert offsets.tolist() == [0, 9, 12] and len(flat) == 12
