"""The survey map: the shipped data is complete and well-formed, bad data is refused, the figure draws."""

import copy
import json
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

from rlsurvey import survey as S
from rlsurvey.exercises import ExerciseError, ch00

# Every arXiv id the survey names in sections 4-8 (its companion repository's lists), written out by hand so
# that a paper dropped from the data file is noticed.
SURVEY_IDS = {
    "2410.18451", "2311.10702", "2304.05302", "2402.14740", "2306.17492", "2401.04056",
    "2310.01377", "2406.08464", "2406.08673", "2407.06551", "2302.06692", "2303.00001", "2310.12931",
    "2309.11489", "2309.00267", "2408.15240", "2309.06687", "2401.10020", "2410.03742",
    "2410.00847", "2406.10216", "2406.12845", "2409.10164", "2410.02197", "2310.12773", "2205.13636",
    "2212.08073", "2307.04657", "2411.01111", "2403.13787", "2405.01535",
    "2305.10425", "2305.18290", "2407.08639", "2403.19270", "2309.06657", "2402.05749", "2405.19107",
    "2403.03419", "2404.05868", "2404.03715", "2405.00675", "2402.13228", "2404.11999",
    "2310.12036", "2406.09279", "2312.11456", "2404.10719",
}  # fmt: skip
COURSE_EXTRAS = {
    "2402.01306",
    "2403.07691",
    "2405.14734",
    "2403.00409",
    "2402.03300",
    "2503.20783",
    "2210.10760",
}


@pytest.fixture(scope="module")
def survey():
    return S.load_survey_map()


def test_every_section_of_the_survey_is_on_the_map(survey):
    assert [s.id for s in survey.sections if s.id != "+"] == [str(i) for i in range(1, 10)]
    for s in survey.sections:
        assert s.parts and s.chapters, f"section {s.id} teaches nothing"


def test_every_chapter_teaches_part_of_the_map(survey):
    assert [c.number for c in survey.chapters] == list(range(17))
    for n in range(1, 17):
        assert survey.sections_taught_by(n), f"chapter {n:02d} appears nowhere on the map"
    assert survey.sections_taught_by(0) == []


def test_every_paper_of_the_survey_is_named_with_its_id(survey):
    ids = {m.arxiv for m in survey.methods() if m.arxiv}
    assert SURVEY_IDS <= ids, f"missing: {sorted(SURVEY_IDS - ids)}"
    assert COURSE_EXTRAS <= ids, f"missing: {sorted(COURSE_EXTRAS - ids)}"
    extras = {m.arxiv for m in survey.methods() if not m.in_survey}
    assert COURSE_EXTRAS <= extras and not (SURVEY_IDS & extras)


def test_ids_are_well_formed_and_names_consistent(survey):
    names_by_id = {}
    for m in survey.methods():
        assert m.arxiv is None and m.cite or S.ARXIV_ID.match(m.arxiv)
        if m.arxiv:
            names_by_id.setdefault(m.arxiv, set()).add(m.name)
    clashes = {k: v for k, v in names_by_id.items() if len(v) > 1 and k != "2402.03300"}
    assert not clashes, f"one id, several names: {clashes}"


def test_chapter_metadata(survey):
    c = survey.chapter(1)
    assert c.notebook == "01_rl_basics.ipynb" and c.section == "2.1"
    with pytest.raises(KeyError, match="no chapter 99"):
        survey.chapter(99)


def test_methods_are_listed_once(survey):
    pairs = [(m.name, m.arxiv) for m in survey.methods()]
    assert len(pairs) == len(set(pairs))


KNOWN = r"parts\[0\]\.chapters must name known"


def _raw():
    return json.loads(S.MAP_PATH.read_text())


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (lambda d: d.pop("survey"), r"map\.survey is missing"),
        (lambda d: d["chapters"][1].update(number="1"), r"chapters\[1\]\.number must be int"),
        (lambda d: d["chapters"].append(dict(d["chapters"][0])), "distinct numbers"),
        (
            lambda d: d["sections"][0]["parts"][0].update(chapters=[42]),
            KNOWN,
        ),
        (lambda d: d["sections"][0]["parts"][0].update(chapters=[]), KNOWN),
        (lambda d: d["sections"][3]["parts"][0]["methods"][0].update(arxiv="24.1"), r"arxiv must be an id"),
        (lambda d: d["sections"][3]["parts"][0]["methods"][1].update(arxiv=None), "needs a 'cite'"),
        (lambda d: d["sections"][1].update(parts=[]), r"sections\[1\]\.parts must not be empty"),
        (
            lambda d: d["sections"][0]["parts"][0]["methods"][0].update(chapters=[7]),
            r"methods\[0\]\.chapters must list chapters of its part",
        ),
        (lambda d: d["sections"].append(copy.deepcopy(d["sections"][0])), "distinct ids"),
    ],
)
def test_parse_rejects_bad_data(corrupt, match):
    data = _raw()
    corrupt(data)
    with pytest.raises(ValueError, match=match):
        S.parse_survey_map(data)


def test_load_rejects_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="path must be an existing JSON file"):
        S.load_survey_map(tmp_path / "nope.json")


def test_draw_survey_map(survey):
    fig = S.draw_survey_map(survey)
    ax = fig.axes[0]
    n_rows = sum(len(s.parts) for s in survey.sections)
    assert len(ax.get_yticklabels()) == n_rows
    assert [t.get_text()[:2] for t in ax.get_xticklabels()] == [f"{n:02d}" for n in range(1, 17)]
    dots = sum(len(c.get_offsets()) for c in ax.collections)
    assert dots == sum(len(p.chapters) for s in survey.sections for p in s.parts)
    plt.close(fig)


def test_notebook_table_reads_runtimes_from_headers(tmp_path, survey):
    header = {
        "cell_type": "markdown",
        "metadata": {},
        "source": [
            "# 01 · RL basics\n",
            "**CPU runtime:** 1 min 42 s wall (87 s of CPU time, one thread), measured with the defaults\n",
            "on 2 idle cores; section 3 is most of it. **On a GPU:** nothing changes.\n",
        ],
    }
    (tmp_path / "01_rl_basics.ipynb").write_text(json.dumps({"cells": [header]}))
    (tmp_path / "02_policy_gradients.ipynb").write_text(json.dumps({"cells": []}))
    rows = {r["number"]: r for r in S.notebook_table(tmp_path, survey)}
    assert len(rows) == 17
    assert rows[1]["exists"] and rows[1]["cpu_runtime"] == "1 min 42 s wall (87 s of CPU time, one thread)"
    assert rows[1]["cpu_seconds"] == 102 and "idle cores" in rows[1]["runtime_field"]
    assert rows[2]["exists"] and rows[2]["cpu_runtime"] == "not stated" and rows[2]["cpu_seconds"] is None
    assert not rows[3]["exists"] and rows[3]["cpu_runtime"] == "not written yet"
    table = S.runtime_table(tmp_path, survey)
    assert "1 min 42 s wall (87 s of CPU time, one thread)" in table
    assert "the 1 timed ones take 1.7 min" in table


@pytest.mark.parametrize(
    "field, summary, seconds",
    [
        ("107 s wall (87 s of CPU time), measured with the defaults", "107 s wall (87 s of CPU time)", 107),
        ("3 min 52 s wall under nbval (7 min 24 s of CPU time), measured", "3 min 52 s wall under nbval "
         "(7 min 24 s of CPU time)", 232),
        ("9 s wall (9 s of CPU time). Nothing here needs a GPU.", "9 s wall (9 s of CPU time)", 9),
        ("about two minutes; more on a laptop", "about two minutes", None),
    ],
)  # fmt: skip
def test_runtime_summary_keeps_the_whole_measurement(field, summary, seconds):
    assert S.runtime_summary(field) == summary
    assert S.runtime_seconds(field) == seconds


def test_the_welcome_table_states_every_header_runtime_whole(survey):
    """Chapter 00's table is generated from the headers: each row is the start of its chapter's own field,
    cut at a clause boundary (never mid-sentence), and its wall time is the one the header states."""
    rows = [r for r in S.notebook_table(survey=survey) if r["exists"]]
    assert len(rows) == 17
    for r in rows:
        field = " ".join(r["runtime_field"].split())
        assert field.startswith(r["cpu_runtime"]), (r["notebook"], r["cpu_runtime"], field[:80])
        rest = field[len(r["cpu_runtime"]) :]
        assert rest == "" or rest[0] in ",;.", (r["notebook"], rest[:40])
        assert r["cpu_runtime"].count("(") == r["cpu_runtime"].count(")"), r["cpu_runtime"]
        assert r["cpu_seconds"] is not None and r["cpu_seconds"] > 0, f"{r['notebook']}: no wall time first"
        assert r["cpu_runtime"] in S.runtime_table(survey=survey)


def test_the_readme_chapter_table_states_each_header_wall_time(survey):
    """The README's chapter table repeats each header's wall time: a re-measured header fails here until the
    README says the same."""
    readme = (S.NOTEBOOK_DIR.parent / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d\d) \| \[.*\| ([\d.]+) s wall \|$", readme, re.M)
    stated = {int(n): float(s) for n, s in rows}
    headers = {r["number"]: r["cpu_seconds"] for r in S.notebook_table(survey=survey) if r["exists"]}
    differ = {n: (stated.get(n), headers[n]) for n in headers if stated.get(n) != headers[n]}
    assert not differ, f"README table and headers disagree, (README, header) seconds: {differ}"


# ---------------------------------------------------------------- credits: a chapter names its methods


def test_every_method_the_map_credits_to_a_chapter_is_named_there(survey):
    assert S.unnamed_credits(survey) == []
    # what no chapter teaches is on the map as such, not credited to a chapter that never names it
    section4 = next(s for s in survey.sections if s.id == "4")
    untaught = {m.name for p in section4.parts for m in p.untaught}
    assert {"Skywork-Reward", "Tulu 2"} <= untaught
    assert not {"Skywork-Reward", "Tulu 2", "Prometheus 2"} & {
        m.name for s in survey.sections for p in s.parts for m in p.taught
    }


def test_a_credit_the_notebook_does_not_back_is_caught(survey):
    data = _raw()
    part = next(p for s in data["sections"] if s["id"] == "4" for p in s["parts"] if p["chapters"] == [6])
    skywork = next(m for m in part["methods"] if m["name"] == "Skywork-Reward")
    skywork.pop("chapters")  # back to the part's chapters: credited to 06, which never names it
    problems = S.unnamed_credits(S.parse_survey_map(data))
    assert problems == ["§4 Collecting human feedback to train a reward model: Skywork-Reward -> chapter 06"]


def test_names_method_by_id_or_whole_name():
    rloo = S.Method("RLOO (Back to Basics)", "2402.14740")
    assert S.names_method("we use RLOO here", rloo) and S.names_method("arXiv 2402.14740", rloo)
    assert not S.names_method("RLOOs and RLOO-like", rloo)
    assert not S.names_method("a prompt", S.Method("PRO", "2306.17492"))
    assert S.names_method("cDPO and robust DPO", S.Method("cDPO / robust DPO", "2403.00409"))


# ---------------------------------------------------------------- chapter 00's exercise checks


def test_route_for_a_reward_model_and_dpo_goes_through_06_and_10(survey):
    """The notebook's goal "train a reward model and run DPO" is ROUTE_GOALS[0]: chapters 06 and 10."""
    assert ch00.reference_route(survey, ch00.ROUTE_GOALS[0]) == [6, 10]
    assert ch00.check_route(ch00.reference_route)
    with pytest.raises(ExerciseError, match=r"expected \[6, 10\]"):
        ch00.check_route(ch00._unfinished_route)
    # a route by the parts' chapters instead of the methods' own credits is wrong where they differ
    by_part = lambda m, names: sorted(  # noqa: E731
        {min(c for s in m.sections for p in s.parts if n in [x.name for x in p.methods] for c in p.chapters)
         for n in names}
    )  # fmt: skip
    with pytest.raises(ExerciseError):
        ch00.check_route(by_part)


def test_where_taught_check(survey):
    right = {"RLOO (Back to Basics)": 7, "KTO": 11, "RewardBench": 9, "UCB1": 1}
    assert set(right) == set(ch00.WHERE_QUESTIONS)
    assert ch00.check_where_taught(right)
    assert ch00.check_where_taught({**right, "RewardBench": 6})  # taught in two chapters: either is right
    for wrong in ({**right, "KTO": 10}, {k: v for k, v in right.items() if k != "UCB1"}, [7, 11, 9, 1]):
        with pytest.raises(ExerciseError):
            ch00.check_where_taught(wrong)


def test_chapters_for_section_check(survey):
    assert ch00.check_chapters_for_section(ch00.reference_chapters_for_section)
    assert ch00.check_chapters_for_section(
        lambda m, sid: list(next(s for s in m.sections if s.id == sid).chapters)
    )
    assert ch00.reference_chapters_for_section(survey, "6") == [6, 9]
    first_part_only = lambda m, sid: list(next(s for s in m.sections if s.id == sid).parts[0].chapters)  # noqa: E731
    with_repeats = lambda m, sid: [c for s in m.sections if s.id == sid for p in s.parts for c in p.chapters]  # noqa: E731
    for wrong in (first_part_only, with_repeats, lambda m, sid: None):
        with pytest.raises(ExerciseError):
            ch00.check_chapters_for_section(wrong)
