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


def test_text_matrix_pads_truncates_and_matches_the_hashed_ids():
    from rsft.config import FeaturesConfig
    from rsft.features import text_matrix

    cfg = FeaturesConfig(kind="text", text_buckets=1000, text_max_tokens=6, classes=["a"])
    df = pl.DataFrame({"text": ["seal leak", None, "one two three four five six seven"]})
    x = text_matrix(df, cfg)
    assert x.shape == (3, 6) and x.dtype.kind == "i"
    ids = df.select(hashed_ngram_ids(pl.col("text"), buckets=1000, ngrams=2).alias("ids"))["ids"].to_list()
    assert x[0].tolist() == ids[0] + [1000] * 3  # 2 unigrams + 1 bigram, then padding
    assert x[1].tolist() == [1000] * 6  # a missing text is all padding
    assert x[2].tolist() == ids[2][:6]  # truncated: the first 6 (unigrams first)


def test_class_labels_map_to_ids_and_unknown_classes_fail_in_one_line():
    import pytest

    from rsft.config import FeaturesConfig
    from rsft.features import labels

    cfg = FeaturesConfig(label="category", classes=["bearing", "seal"])
    assert labels(pl.DataFrame({"category": ["seal", "bearing"]}), cfg).tolist() == [1, 0]
    with pytest.raises(ValueError, match="outside features.classes.*'pump'"):
        labels(pl.DataFrame({"category": ["seal", "pump"]}), cfg)


def test_tokens_are_words_and_punctuation_runs_like_dsirs_wordpunct():
    # \w+|[^\w\s]+ : "brg", "noise", "?!", "9", ".", "8" -> 6 unigrams + 5 bigrams
    df = pl.DataFrame({"text": ["BRG noise?! 9.8"]})
    ids = df.select(hashed_ngram_ids(pl.col("text"), buckets=1000, ngrams=2).alias("ids"))["ids"]
    assert ids.list.len().to_list() == [11]
    one = pl.DataFrame({"text": ["brg", "?!"]}).select(hashed_ngram_ids(pl.col("text"), 1000, 2).alias("i"))["i"].to_list()
    assert ids.to_list()[0][0] == one[0][0] and ids.to_list()[0][2] == one[1][0]  # lowercased; "?!" is one token


def test_rolling_features_are_per_machine_causal_and_order_independent():
    import numpy as np

    from rsft.config import FeaturesConfig
    from rsft.features import add_rolling_features

    cfg = FeaturesConfig(group="machine_id", rolling=[{"columns": ["s01"], "window": 3, "stats": ["mean", "max", "std"]}])
    df = pl.DataFrame({"machine_id": ["A", "B", "A", "B", "A", "A"], "ts": [1, 1, 2, 2, 3, 4],
                       "s01": [1.0, 100.0, 2.0, 200.0, 3.0, 10.0]})
    out = add_rolling_features(df, cfg)
    a = out.filter(pl.col("machine_id") == "A").sort("ts")
    assert a["s01_mean3"].to_list() == [1.0, 1.5, 2.0, 5.0]  # trailing: never looks ahead, never at B
    assert a["s01_max3"].to_list() == [1.0, 2.0, 3.0, 10.0]
    assert np.isclose(a["s01_std3"][2], 1.0) and a["s01_std3"][0] is None
    shuffled = add_rolling_features(df.sample(fraction=1.0, shuffle=True, seed=3), cfg)
    assert shuffled.sort("machine_id", "ts").equals(out.sort("machine_id", "ts"))  # row order does not matter


def test_flat_ngram_ids_are_the_list_ids_in_the_same_order():
    """hashed_ngram_flat (flat tokens, the n-gram scorer's path) gives hashed_ngram_ids' ids in
    the same order (each document's unigrams, then bigrams, …): the scorer's sums are unchanged.
    Null, empty, one- and two-token documents and a 12 000-token one included."""
    import numpy as np

    from rsft.features import hashed_ngram_flat

    long = " ".join(f"w{i % 997}, x" for i in range(4_000))  # 12 000 tokens
    texts = [None, "", "  ", "one", "a b", "Foo, bar!! baz.", long, "x y z w", "ÉTÉ été -- ok"]
    df = pl.DataFrame({"text": texts}, schema={"text": pl.String})
    for ngrams in (1, 2, 3):
        flat, offsets = hashed_ngram_flat(df, "text", 4096, ngrams)
        want_flat, want_offsets = ids_to_flat(df.select(hashed_ngram_ids(pl.col("text"), 4096, ngrams))["text"])
        np.testing.assert_array_equal(offsets, want_offsets)
        np.testing.assert_array_equal(flat, want_flat)
    assert offsets[7] - offsets[6] == 3 * 12_000 - 3
