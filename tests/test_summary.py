"""The night's story (the MLflow run's and the version's description): readable and within
MLflow's limits however many warnings a night has."""

from __future__ import annotations


def test_a_nights_story_fits_mlflows_description():
    """Trial 9: 36 warning lines ran a first night's story past MLflow's 8,000 characters (MLflow
    cut it with a warning). Lists are capped (the rest counted) and the story cut at a line."""
    from rsft.pipeline.summary import STORY_CHARS, STORY_WARNINGS, _fit_description, _listed

    items = _listed([f"file {i}: temp median outside the range" for i in range(36)], "the summary")
    assert len(items) == STORY_WARNINGS + 1 and items[-1] == f"- … and {36 - STORY_WARNINGS} more (all in the summary)"
    assert _listed(["one"], "x") == ["- one"]
    long = "\n".join(f"| row {i} | " + "x" * 90 + " |" for i in range(200))
    cut = _fit_description(long)
    assert len(cut) <= STORY_CHARS and cut.endswith("(cut to fit MLflow's description; the whole night is in its summary)")
    assert cut.split("\n")[-2].endswith(" |")  # whole lines only
    assert _fit_description("short") == "short"
