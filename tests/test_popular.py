"""The survey's model table: complete, sourced, consistent with the survey, and plottable."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from rlsurvey.assets import table_path  # noqa: E402
from rlsurvey.popular import FAMILIES, family_counts, load_models, plot_open_closed, plot_timeline  # noqa: E402

SURVEY_NOTES = Path(__file__).resolve().parents[2] / "shared" / "design" / "survey.md"


def test_every_row_is_sourced_and_well_formed():
    rows = load_models()
    assert len(rows) == 20
    assert len({r.model for r in rows}) == 20
    for r in rows:
        assert r.family in FAMILIES and r.method and r.chapter
        ids = re.findall(r"arXiv (\S+)", r.source)
        assert ids or "model card" in r.source or "blog" in r.source, r.model
        assert all(re.fullmatch(r"\d{4}\.\d{4,5}", i.rstrip(";,")) for i in ids), r.source
    assert [r.date for r in rows] == sorted(r.date for r in rows)


@pytest.mark.skipif(not SURVEY_NOTES.exists(), reason="the design notes are not beside the repository")
def test_rows_match_the_survey_table():
    """Model names and open-weight flags are the survey's (as transcribed in the design notes)."""
    text = SURVEY_NOTES.read_text()
    section = text[text.index("## Section 3") :]
    survey = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[3] in ("yes", "no"):
            survey[cells[0]] = cells[3] == "yes"
    rows = {r.model: r.open_weights for r in load_models()}
    assert rows == survey


def test_family_counts_and_plots():
    rows = load_models()
    counts = family_counts(rows)
    assert sum(c["open"] + c["closed"] for c in counts.values()) == len(rows)
    assert counts["Reasoning RL"] == {"open": 1, "closed": 2}
    fig, axes = plt.subplots(1, 2)
    plot_timeline(axes[0], rows)
    plot_open_closed(axes[1], rows)
    assert len(axes[0].collections) == len(rows) + len(FAMILIES) and len(axes[1].patches) == 2 * len(FAMILIES)
    plt.close(fig)


def test_bad_tables_get_clear_errors(tmp_path):
    good = table_path("models.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([good[0].replace(",chapter", "")] + good[1:]))
    with pytest.raises(ValueError, match="must have the columns"):
        load_models(bad)
    bad.write_text("\n".join([good[0], good[1].replace("PPO-RLHF", "Magic")]))
    with pytest.raises(ValueError, match="family must be one of"):
        load_models(bad)
    with pytest.raises(ValueError, match="shipped table"):
        table_path("nope.csv")
