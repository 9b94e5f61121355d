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
    for scheme in (1, 2):
        for ngrams in (1, 2, 3):
            flat, offsets = hashed_ngram_flat(df, "text", 4096, ngrams, scheme=scheme)
            want = df.select(hashed_ngram_ids(pl.col("text"), 4096, ngrams, scheme=scheme))["text"]
            want_flat, want_offsets = ids_to_flat(want)
            np.testing.assert_array_equal(offsets, want_offsets)
            np.testing.assert_array_equal(flat, want_flat)
        assert offsets[7] - offsets[6] == 3 * 12_000 - 3


# ---- hash scheme 2: a plain-Python reference ----------------------------------------------------
MASK64 = (1 << 64) - 1


def _ref_tokens(text):
    """Reference tokens: Polars' regex on one document (the tokenizer is not what is checked here)."""
    from rsft.features import TOKEN_PATTERN

    if text is None:
        return []
    return pl.Series([text.lower()]).str.extract_all(TOKEN_PATTERN).to_list()[0] or []


def _hash_u64(values, seed=0):
    return pl.Series(values, dtype=pl.UInt64).hash(seed).to_list() if values else []


def _ref_ids(text, buckets, ngrams, seed=0):
    """Scheme 2 by its definition, one document at a time, in Python integers: c¹ᵢ = hash(tokenᵢ),
    cᵍᵢ = hash((cᵍ⁻¹ᵢ · MIX mod 2⁶⁴) xor c¹ᵢ₊g₋₁), buckets cᵍᵢ mod buckets; unigrams, then bigrams, …"""
    from rsft.features import NGRAM_MIX

    toks = _ref_tokens(text)
    h = pl.Series(toks, dtype=pl.String).hash(seed).to_list() if toks else []
    out, c = [x % buckets for x in h], h
    for g in range(2, ngrams + 1):
        c = _hash_u64([((c[i] * NGRAM_MIX) & MASK64) ^ h[i + g - 1] for i in range(len(h) - g + 1)], seed)
        out += [x % buckets for x in c]
    return out


REF_TEXTS = [
    None, "", " \t\n ", "one", "A b", "Foo, bar!! baz. foo_bar 3.14 -- ok?!",
    "ÉTÉ été -- naïve café; Straße ΑΒΓ δέλτα — “quoted” … 日本語のテキスト 123",
    "ctrl\x00chars\x07here\x1f and\x0bvertical\x0cfeed\r\nend\u00a0nbsp",
    " ".join(f"w{i % 997}, x" for i in range(4_000)),  # 12 000 tokens
    " ".join(f"tok{i % 50}" for i in range(10_500)) + " ünï",  # 10 501 tokens, non-ASCII at the end
]


def test_scheme_2_ids_follow_the_reference_definition():
    import numpy as np

    from rsft.features import hashed_ngram_counts, hashed_ngram_flat

    df = pl.DataFrame({"text": REF_TEXTS}, schema={"text": pl.String})
    for ngrams in (1, 2, 3):
        want = [_ref_ids(t, 4096, ngrams) for t in REF_TEXTS]
        got = df.select(hashed_ngram_ids(pl.col("text"), 4096, ngrams, scheme=2))["text"].to_list()
        assert [g or [] for g in got] == want
        flat, offsets = hashed_ngram_flat(df, "text", 4096, ngrams, scheme=2)
        assert [flat[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == want
        counts, per_doc = hashed_ngram_counts(df, "text", 4096, ngrams, scheme=2)
        assert per_doc.tolist() == [len(w) for w in want]
        np.testing.assert_array_equal(counts, np.bincount(np.concatenate([np.asarray(w, np.int64) for w in want]),
                                                          minlength=4096))
    # unigram buckets are scheme 1's; bigram buckets are not (no bigram strings)
    one = df.select(hashed_ngram_ids(pl.col("text"), 4096, 1, scheme=1))["text"].to_list()
    assert [o or [] for o in one] == [_ref_ids(t, 4096, 1) for t in REF_TEXTS]
    assert (df.select(hashed_ngram_ids(pl.col("text"), 4096, 2, scheme=1))["text"].to_list()[5]
            != _ref_ids(REF_TEXTS[5], 4096, 2))


def test_scheme_2_log_w_sums_equal_a_plain_reference():
    """hashed_ngram_sums (the scorer's scoring path: segment sums over the flat tokens, no ids in
    document order) equals Σ weights[id] over the reference ids of each document, long and
    non-ASCII documents included, whole and in slices."""
    import math

    import numpy as np

    from rsft.features import hashed_ngram_sums

    weights = np.random.default_rng(0).normal(size=4096)
    df = pl.DataFrame({"text": REF_TEXTS * 2}, schema={"text": pl.String})
    for ngrams in (1, 2, 3):
        want = np.array([math.fsum(weights[i] for i in _ref_ids(t, 4096, ngrams)) for t in REF_TEXTS * 2])
        np.testing.assert_allclose(hashed_ngram_sums(df, "text", weights, ngrams, scheme=2), want, rtol=1e-10, atol=1e-9)
        parts = [hashed_ngram_sums(df.slice(a, 3), "text", weights, ngrams, scheme=2) for a in range(0, df.height, 3)]
        np.testing.assert_allclose(np.concatenate(parts), want, rtol=1e-10, atol=1e-9)
    assert hashed_ngram_sums(df.head(3), "text", weights, 2).tolist() == [0.0, 0.0, 0.0]  # no tokens: 0


def test_scheme_must_be_known():
    import pytest

    from rsft.features import hashed_ngram_flat

    with pytest.raises(ValueError, match="hash scheme"):
        hashed_ngram_ids(pl.col("text"), 10, 2, scheme=3)
    with pytest.raises(ValueError, match="hash scheme"):
        hashed_ngram_flat(pl.DataFrame({"text": ["a"]}), "text", 10, 2, scheme=0)
