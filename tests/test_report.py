"""Tests of the HTML study report (cpeval.report and reports/templates).

A small hand-built ScoringResult with known values checks every number the report shows; a realistic one
(~150 rows, 10 teams in 5 trusts) checks that the whole report renders, stays self-contained and reproducible.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cpeval import __version__
from cpeval.errors import CpevalError
from cpeval.plan import Design
from cpeval.qa import qa_frame
from cpeval.report import (
    add_section,
    build_study_context,
    completeness,
    distribution_figure_svg,
    fmt_count,
    fmt_number,
    fmt_pct,
    qa_summary,
    render_study_report,
    score_decimals,
    score_categories,
    score_distributions,
    strip_folders,
    structure_totals,
    study_structure,
    write_report,
)

DESIGN = Design(study="Test Study")
FIXED = "2024-01-02 03:04 UTC"

SCALE_COLUMNS = ["instrument", "instrument_name", "scale", "column", "label", "rule", "output_min", "output_max",
                 "n_rows", "n_scored", "n_complete", "n_prorated", "n_not_scored", "value_set", "verified", "notes"]

# ----------------------------------------------------------------------------------------------------------
# a small fake with known values
# ----------------------------------------------------------------------------------------------------------
# participant, trust, team, arm
PEOPLE = [
    ("P-001", "North", "N1", "implementation"),
    ("P-002", "North", "N1", "implementation"),
    ("P-003", "North", "N2", "control"),
    ("P-004", "North", "N2", "control"),
    ("P-005", "South", "S1", "implementation"),
    ("P-006", "South", "S1", "implementation"),
    ("P-007", "South", "S1", "implementation"),
    ("P-008", "South", "S2", "control"),
]
NA = np.nan
# (wemwbs_1, wemwbs_2, wemwbs_total, eq5d5l_mo, eq5d5l_ad, eq5d5l_index) per participant at each time point
BASELINE = {
    "P-001": (3, 4, 7, 1, 2, 0.922),
    "P-002": (2, 2, 4, 1, 1, 1.0),
    "P-003": (5, 5, 10, 2, 2, 0.864),
    "P-004": (1, 2, 3, 3, 4, 0.639),
    "P-005": (4, 4, 8, NA, NA, NA),
    "P-006": (3, NA, 6, 1, 1, 1.0),  # prorated WEMWBS
    "P-007": (NA, NA, NA, 2, 1, 0.942),  # no WEMWBS item, EQ-5D only
    "P-008": (2, 3, 5, 1, 2, 0.922),
}
FOLLOW_UP = {
    "P-001": (4, 4, 8, 1, 1, 1.0),
    "P-002": (NA, NA, NA, NA, NA, NA),  # no data at follow-up
    "P-003": (5, 4, 9, 1, 2, 0.922),
    "P-004": (2, 2, 4, 2, 3, 0.838),
    "P-005": (4, 5, 9, 1, 1, 1.0),
    "P-006": (3, 3, 6, NA, NA, NA),
    "P-007": (2, 3, 5, 2, 2, 0.864),
    "P-008": (NA, NA, NA, 1, 1, 1.0),  # EQ-5D only
}


def small_scoring(team_labels: dict[str, str] | None = None) -> SimpleNamespace:
    rows = []
    row_no = 0
    for tp, table in (("baseline", BASELINE), ("follow_up", FOLLOW_UP)):
        for pid, trust, team, arm in PEOPLE:
            row_no += 1
            w1, w2, wt, mo, ad, idx = table[pid]
            rows.append({
                "participant_id": pid, "trust_id": trust, "team_id": (team_labels or {}).get(team, team),
                "arm": arm, "timepoint": tp, "age": 40, "gender": "female",
                "wemwbs_1": w1, "wemwbs_2": w2, "wemwbs_total": wt,
                "eq5d5l_mo": mo, "eq5d5l_ad": ad, "eq5d5l_index": idx, "source_row": row_no,
            })
    data = pd.DataFrame(rows)
    band = np.where(data["wemwbs_total"].isna(), None, np.where(data["wemwbs_total"] <= 5, "low", "high"))
    data["wemwbs_band"] = pd.Categorical(band, categories=["low", "high"])
    scales = pd.DataFrame([
        ["wemwbs", "WEMWBS (2-item test version)", "total", "wemwbs_total", "WEMWBS total", "prorated_sum", 2, 10,
         16, 13, 12, 1, 3, None, True, "Tennant et al. 2007"],
        ["eq5d5l", "EQ-5D-5L", "index", "eq5d5l_index", "EQ-5D-5L index", "value_set", -0.285, 1, 16, 13, 13, 0,
         3, "England (Devlin 2018)", False, "see P-004 for an odd state"],
        ["wemwbs", "WEMWBS (2-item test version)", "band", "wemwbs_band", "WEMWBS band", "bands", None, None,
         16, 13, 12, 1, 3, None, False, ""],
    ], columns=SCALE_COLUMNS)
    qa = qa_frame([
        {"source": "test.sav", "row": 3, "participant_id": "P-003", "timepoint": "baseline", "variable": "wemwbs_1",
         "value": "9", "reason": "out_of_range", "expected": "an integer from 1 to 5", "action": "treated as missing"},
        {"source": "test.sav", "row": 4, "participant_id": "P-004", "timepoint": "baseline", "variable": "wemwbs_1",
         "value": "7", "reason": "out_of_range", "expected": "an integer from 1 to 5", "action": "treated as missing"},
        {"source": "test.sav", "row": 6, "participant_id": "P-006", "timepoint": "baseline", "variable": "wemwbs_2",
         "value": "-9", "reason": "user_missing", "expected": "an integer from 1 to 5",
         "action": "treated as missing (P-006 asked to skip)"},
        {"source": "test.sav", "row": 5, "participant_id": "P-005", "timepoint": "baseline", "variable": "eq5d5l_mo",
         "value": "-8", "reason": "missing_code", "expected": "an integer from 1 to 5", "action": "treated as missing"},
        {"source": "test.sav", "row": 2, "participant_id": "P-002", "timepoint": None, "variable": "AGE",
         "value": "999", "reason": "missing_code", "expected": "an age", "action": "treated as missing"},
    ])
    items = {"wemwbs": ["wemwbs_1", "wemwbs_2"], "eq5d5l": ["eq5d5l_mo", "eq5d5l_ad"]}
    return SimpleNamespace(data=data, qa=qa, scales=scales, items=items)


IMPORT_LOG = [
    "read test.sav: 8 rows, 14 columns (wide)",
    "reshaped wide to long: 2 time points, 16 rows",
    "participant P-001 appears once per time point",
]


def small_context(**kwargs) -> dict:
    kwargs.setdefault("generated", FIXED)
    scoring = kwargs.pop("scoring", None) or small_scoring()
    return build_study_context(scoring, DESIGN, source_name="test.sav", import_log=IMPORT_LOG, **kwargs)


def section(context: dict, section_id: str) -> dict:
    return next(s for s in context["sections"] if s["id"] == section_id)["data"]


@pytest.fixture(scope="module")
def small_html() -> str:
    return render_study_report(small_context())


# ----------------------------------------------------------------------------------------------------------
# table functions
# ----------------------------------------------------------------------------------------------------------


def test_study_structure_counts_recruited_and_with_data_per_team():
    s = small_scoring()
    table = study_structure(s.data, DESIGN, s.items)
    assert list(table.columns) == ["trust", "team", "arm", "recruited", "n_baseline", "n_follow_up"]
    got = {r.team: (r.trust, r.arm, r.recruited, r.n_baseline, r.n_follow_up) for r in table.itertuples()}
    assert got == {
        "N1": ("North", "implementation", 2, 2, 1),  # P-002 has no data at follow-up
        "N2": ("North", "control", 2, 2, 2),
        "S1": ("South", "implementation", 3, 3, 3),
        "S2": ("South", "control", 1, 1, 1),  # EQ-5D only at follow-up still counts as data
    }
    # order: trust, then treatment arm before control
    assert list(table["team"]) == ["N1", "N2", "S1", "S2"]


def test_structure_totals_per_arm_and_overall():
    s = small_scoring()
    totals = structure_totals(s.data, DESIGN, s.items).set_index("arm")
    assert totals.loc["implementation", ["n_trusts", "n_teams", "recruited", "n_baseline", "n_follow_up"]].tolist() \
        == [2, 2, 5, 5, 4]
    assert totals.loc["control", ["n_teams", "recruited", "n_baseline", "n_follow_up"]].tolist() == [2, 3, 3, 3]
    assert totals.loc["All arms", ["n_trusts", "n_teams", "recruited", "n_baseline", "n_follow_up"]].tolist() \
        == [2, 4, 8, 8, 7]


def test_structure_without_site_column_and_natural_team_order():
    s = small_scoring(team_labels={"N1": "Team 10", "N2": "Team 2", "S1": "Team 1", "S2": "Team 3"})
    design = Design(site=None)
    table = study_structure(s.data, design, s.items)
    assert "trust" not in table.columns
    # implementation teams first (Team 1, Team 10), then control (Team 2, Team 3)
    assert list(table["team"]) == ["Team 1", "Team 10", "Team 2", "Team 3"]
    assert structure_totals(s.data, design, s.items)["n_trusts"].isna().all()


def test_completeness_counts_and_percentages():
    comp = completeness(small_scoring(), DESIGN).set_index(["column", "timepoint"])
    w0 = comp.loc[("wemwbs_total", "baseline")]
    assert (w0["n_with_data"], w0["n_answered"], w0["n_scored"]) == (8, 7, 7)
    assert w0["pct_scored"] == pytest.approx(87.5)
    w1 = comp.loc[("wemwbs_total", "follow_up")]
    assert (w1["n_with_data"], w1["n_answered"], w1["n_scored"]) == (7, 6, 6)
    assert w1["pct_scored"] == pytest.approx(600 / 7)
    e0 = comp.loc[("eq5d5l_index", "baseline")]
    assert (e0["n_with_data"], e0["n_answered"], e0["n_scored"]) == (8, 7, 7)
    e1 = comp.loc[("eq5d5l_index", "follow_up")]
    assert (e1["n_answered"], e1["n_scored"]) == (6, 6)
    assert e1["pct_scored"] == pytest.approx(600 / 7)


def test_score_distributions_match_numpy():
    s = small_scoring()
    dist = score_distributions(s.data, s.scales, DESIGN)
    assert len(dist) == 2 * 2 * 2  # scores x time points x arms
    row = dist[(dist["column"] == "wemwbs_total") & (dist["timepoint"] == "baseline")
               & (dist["arm"] == "implementation")].iloc[0]
    x = np.array([7.0, 4.0, 8.0, 6.0])  # P-001, P-002, P-005, P-006 (P-007 not scored)
    assert row["n"] == 4
    assert row["mean"] == pytest.approx(x.mean())
    assert row["sd"] == pytest.approx(np.sqrt(((x - x.mean()) ** 2).sum() / 3))
    assert row["median"] == pytest.approx(6.5)
    assert (row["q1"], row["q3"]) == (pytest.approx(5.5), pytest.approx(7.25))
    assert (row["min"], row["max"]) == (4.0, 8.0)
    half = 3.182446305284263 * row["sd"] / 2  # t(0.975, 3) x SD / sqrt(4)
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(x.mean() - half), pytest.approx(x.mean() + half))

    eq = dist[(dist["column"] == "eq5d5l_index") & (dist["timepoint"] == "follow_up")
              & (dist["arm"] == "control")].iloc[0]
    y = np.array([0.922, 0.838, 1.0])
    assert eq["n"] == 3
    assert eq["mean"] == pytest.approx(y.mean())
    assert eq["sd"] == pytest.approx(y.std(ddof=1))


def test_categorical_scores_are_counted_not_averaged():
    s = small_scoring()
    assert "wemwbs_band" not in set(score_distributions(s.data, s.scales, DESIGN)["column"])
    cats = score_categories(s.data, s.scales, DESIGN)
    cell = cats[(cats["timepoint"] == "baseline") & (cats["arm"] == "implementation")]
    # WEMWBS totals 7, 4, 8, 6 -> one "low" (<= 5), three "high"; category order from the Categorical
    assert cell["category"].tolist() == ["low", "high"]
    assert cell["n"].tolist() == [1, 3] and cell["n_total"].tolist() == [4, 4]
    assert cell["pct"].tolist() == [25.0, 75.0]
    d = section(small_context(suppress_below=2), "distributions")
    band = d["categorical"][0]
    assert band["categories"] == ["low", "high"]
    assert band["rows"][0]["n_total"] == "4"
    assert band["rows"][0]["cells"] == [{"n": "<2", "pct": "\u2014"}, {"n": "3", "pct": "75.0"}]


def test_time_point_without_any_value_of_a_score_is_not_tabulated():
    s = small_scoring()
    data = s.data.copy()
    data.loc[data["timepoint"] == "follow_up", "eq5d5l_index"] = np.nan
    scoring = SimpleNamespace(data=data, qa=s.qa, scales=s.scales, items=s.items)
    d = section(small_context(scoring=scoring), "distributions")
    eq = next(x for x in d["scores"] if x["column"] == "eq5d5l_index")
    assert eq["empty_timepoints"] == ["Follow-up"]
    assert [(r["timepoint"], r["arm"]) for r in eq["rows"]] == [("Baseline", "Implementation"), ("Baseline", "Control")]
    assert eq["rows"][0]["tp_rowspan"] == 2


def test_single_value_group_has_no_sd():
    s = small_scoring()
    data = s.data[~((s.data["arm"] == "control") & (s.data["participant_id"] != "P-003"))]
    dist = score_distributions(data, s.scales, DESIGN)
    row = dist[(dist["column"] == "wemwbs_total") & (dist["timepoint"] == "baseline")
               & (dist["arm"] == "control")].iloc[0]
    assert row["n"] == 1 and row["mean"] == 10.0
    assert np.isnan(row["sd"]) and np.isnan(row["ci_low"])


def test_qa_summary_counts_by_variable_and_reason_without_ids():
    s = small_scoring()
    summary = qa_summary(s.qa, s.items, s.scales)
    assert list(summary.columns) == ["instrument", "variable", "reason", "expected", "action", "n"]
    got = {(r.instrument, r.variable, r.reason): r.n for r in summary.itertuples()}
    assert got == {
        ("wemwbs", "wemwbs_1", "out_of_range"): 2,
        ("wemwbs", "wemwbs_2", "user_missing"): 1,
        ("eq5d5l", "eq5d5l_mo", "missing_code"): 1,
        ("(not an instrument item)", "AGE", "missing_code"): 1,
    }
    assert "participant_id" not in summary.columns and "row" not in summary.columns


# ----------------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------------


def test_import_log_shows_file_names_not_folders():
    assert strip_folders("read /home/jane/study/x.sav (SPSS .sav)") == "read x.sav (SPSS .sav)"
    assert strip_folders("variable map: /tmp/a/b_map.yaml (wide)") == "variable map: b_map.yaml (wide)"
    assert strip_folders(r"read C:\Users\jane\x.sav: ok") == "read x.sav: ok"
    assert strip_folders("map analysis/cp_map.yaml: wide; 3/14 items; T1_ -> baseline") == \
        "map cp_map.yaml: wide; 3/14 items; T1_ -> baseline"
    log = ["read /home/jane/study/test.sav (SPSS .sav)"]
    a = render_study_report(build_study_context(small_scoring(), DESIGN, source_name="/home/jane/study/test.sav",
                                                import_log=log, generated=FIXED))
    b = render_study_report(build_study_context(small_scoring(), DESIGN, source_name="/elsewhere/test.sav",
                                                import_log=[log[0].replace("/home/jane/study", "/elsewhere")],
                                                generated=FIXED))
    assert "/home/jane" not in a and "read test.sav (SPSS .sav)" in a
    assert a == b  # the report does not depend on where the file was


def test_formatters():
    assert fmt_count(1234) == "1,234"
    assert fmt_count(0, 5) == "0"
    assert fmt_count(4, 5) == "<5"
    assert fmt_count(5, 5) == "5"
    assert fmt_count(np.nan) == "\u2014"
    assert fmt_pct(7, 8) == "87.5"
    assert fmt_pct(3, 8, 5) == "\u2014"  # numerator suppressed
    assert fmt_pct(0, 0) == "\u2014"
    assert fmt_number(-0.0001, 2) == "0.00"
    assert score_decimals(-0.285, 1) == 3  # EQ-5D index
    assert score_decimals(7, 35) == 2  # SWEMWBS metric
    assert score_decimals(14, 70) == 1  # WEMWBS total
    assert score_decimals(None, None, [0, 100]) == 1


# ----------------------------------------------------------------------------------------------------------
# context and HTML
# ----------------------------------------------------------------------------------------------------------


def test_context_is_plain_data_with_ordered_sections():
    context = small_context()
    assert [s["id"] for s in context["sections"]] == ["structure", "scoring_quality", "distributions", "provenance"]
    assert context["meta"] == {"title": "Test Study: study report", "study": "Test Study", "source_name": "test.sav",
                               "version": __version__, "generated": FIXED, "suppress_below": 0}
    json.dumps(context)  # only plain types (the SVG is a str subclass)


def test_context_structure_rows():
    d = section(small_context(), "structure")
    assert [tp["value"] for tp in d["timepoints"]] == ["baseline", "follow_up"]
    n1 = next(r for r in d["teams"] if r["team"] == "N1")
    assert (n1["trust"], n1["arm"], n1["recruited"], n1["by_timepoint"]) == ("North", "Implementation", "2",
                                                                            ["2", "1"])
    assert [r["trust_rowspan"] for r in d["teams"]] == [2, 0, 2, 0]
    all_row = d["totals"][-1]
    assert (all_row["label"], all_row["n_teams"], all_row["recruited"], all_row["by_timepoint"]) == (
        "All teams", "4", "8", ["8", "7"])


def test_context_completeness_and_distribution_text():
    context = small_context()
    q = section(context, "scoring_quality")
    wem = next(g for g in q["completeness"] if g["instrument"] == "wemwbs")
    assert [(r["timepoint"], r["column"], r["n_with_data"], r["n_scored"], r["pct_scored"]) for r in wem["rows"]
            ] == [("Baseline", "wemwbs_total", "8", "7", "87.5"), ("Baseline", "wemwbs_band", "8", "7", "87.5"),
                  ("Follow-up", "wemwbs_total", "7", "6", "85.7"), ("Follow-up", "wemwbs_band", "7", "6", "85.7")]
    assert [r["tp_rowspan"] for r in wem["rows"]] == [2, 0, 2, 0]
    counts = next(r for r in q["counts"] if r["column"] == "wemwbs_total")
    assert (counts["n_scored"], counts["n_prorated"], counts["pct_prorated"]) == ("13", "1", "7.7")

    d = section(context, "distributions")
    wem = next(s for s in d["scores"] if s["column"] == "wemwbs_total")
    row = wem["rows"][0]  # baseline, implementation
    assert (row["arm"], row["n"], row["mean"], row["sd"], row["median"], row["iqr"], row["min"], row["max"]) == (
        "Implementation", "4", "6.25", f"{np.std([7, 4, 8, 6], ddof=1):.2f}", "6.50", "5.50 to 7.25", "4", "8")
    eq = next(s for s in d["scores"] if s["column"] == "eq5d5l_index")
    assert eq["decimals"] == 3
    control_fu = eq["rows"][3]
    assert control_fu["mean"] == f"{np.mean([0.922, 0.838, 1.0]):.3f}" and control_fu["max"] == "1.000"


def test_html_shows_header_and_key_numbers(small_html):
    html = small_html
    assert "<h1>Test Study</h1>" in html
    assert "test.sav" in html and f"cpeval version</dt><dd>{__version__}" in html and FIXED in html
    assert "WEMWBS band" in html and "75.0" in html  # the categorical score's table
    assert "87.5" in html and "85.7" in html and "6.25" in html
    assert "unverified default, overridable" in html  # the EQ-5D rule is marked unverified
    # every section present, in order
    positions = [html.index(f'id="{sid}"') for sid in ("structure", "scoring_quality", "distributions", "provenance")]
    assert positions == sorted(positions)
    # import log shown
    assert "reshaped wide to long: 2 time points, 16 rows" in html


def test_no_participant_identifiers_in_html(small_html):
    for pid, *_ in PEOPLE:
        assert pid not in small_html
    # ids inside free text (import log, QA action, scale notes) were redacted, not dropped
    assert small_html.count("[participant id]") >= 3
    assert "participant [participant id] appears once per time point" in small_html


def test_html_is_self_contained(small_html):
    lower = small_html.lower()
    assert "http" not in lower
    assert "<script" not in lower
    assert "<link" not in lower
    assert "url(" not in lower
    assert "@import" not in lower
    assert "<svg" in lower  # the figure is inline


def test_autoescape_of_labels():
    scoring = small_scoring(team_labels={"N1": "<b>Team & Co</b>"})
    html = render_study_report(small_context(scoring=scoring))
    assert "&lt;b&gt;Team &amp; Co&lt;/b&gt;" in html
    assert "<b>Team" not in html


def test_suppress_below_replaces_small_counts():
    context = small_context(suppress_below=3)
    d = section(context, "structure")
    teams = {r["team"]: r for r in d["teams"]}
    assert teams["N1"]["recruited"] == "<3" and teams["N1"]["by_timepoint"] == ["<3", "<3"]
    assert teams["S1"]["recruited"] == "3" and teams["S1"]["by_timepoint"] == ["3", "3"]
    assert teams["S2"]["recruited"] == "<3"
    assert d["totals"][-1]["recruited"] == "8"  # large counts unchanged
    q = section(context, "scoring_quality")
    counts = next(r for r in q["counts"] if r["column"] == "wemwbs_total")
    assert counts["n_prorated"] == "<3" and counts["pct_prorated"] == "\u2014"
    dist = section(context, "distributions")
    wem = next(s for s in dist["scores"] if s["column"] == "wemwbs_total")
    # baseline: implementation 4, control 3; follow-up: implementation 4, control 2 (P-003, P-004)
    assert [r["n"] for r in wem["rows"]] == ["4", "3", "4", "<3"]
    assert wem["rows"][3]["mean"] == "\u2014" and wem["rows"][2]["mean"] == "7.00"

    html = render_study_report(context)
    assert "&lt;3" in html
    assert "counts below 3 are suppressed" in html
    plain = render_study_report(small_context())
    assert "&lt;3" not in plain


def test_suppressed_group_statistics_are_hidden():
    s = small_scoring()
    # drop P-003 and P-004 so the control arm at baseline has one WEMWBS value (P-008)
    data = s.data[~s.data["participant_id"].isin(["P-003", "P-004"])].reset_index(drop=True)
    scoring = SimpleNamespace(data=data, qa=s.qa, scales=s.scales, items=s.items)
    d = section(small_context(scoring=scoring, suppress_below=3), "distributions")
    wem = next(x for x in d["scores"] if x["column"] == "wemwbs_total")
    control_bl = wem["rows"][1]
    assert control_bl["arm"] == "Control" and control_bl["n"] == "<3"
    assert {control_bl[k] for k in ("mean", "sd", "median", "iqr", "min", "max")} == {"\u2014"}


def test_suppress_below_must_be_a_whole_number():
    with pytest.raises(CpevalError, match="suppress_below"):
        small_context(suppress_below=-1)
    with pytest.raises(CpevalError, match="suppress_below"):
        small_context(suppress_below=2.5)


def test_same_inputs_give_identical_bytes():
    first = render_study_report(small_context(suppress_below=2))
    second = render_study_report(small_context(suppress_below=2))
    assert first.encode("utf-8") == second.encode("utf-8")


def test_generated_defaults_to_current_utc_time_and_source_shows_file_name_only():
    context = build_study_context(small_scoring(), DESIGN, source_name="/home/someone/private/test.sav")
    assert context["meta"]["source_name"] == "test.sav"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", context["meta"]["generated"])


def test_missing_design_column_is_a_user_error():
    s = small_scoring()
    scoring = SimpleNamespace(data=s.data.drop(columns=["team_id"]), qa=s.qa, scales=s.scales, items=s.items)
    with pytest.raises(CpevalError, match="team_id"):
        small_context(scoring=scoring)


def test_figure_svg_is_deterministic_and_inline_ready():
    s = small_scoring()
    dist = score_distributions(s.data, s.scales, DESIGN)
    a = distribution_figure_svg(dist)
    b = distribution_figure_svg(dist)
    assert a == b
    assert a.startswith("<svg ") and "xmlns" not in a and "http" not in a and "url(" not in a
    assert "<?xml" not in a and "DOCTYPE" not in a
    ids = re.findall(r'\bid="([^"]+)"', a)
    assert ids and all(i.startswith("fig-scores-") for i in ids)
    assert distribution_figure_svg(dist.iloc[0:0]) == ""
    # with k = 3 the control arm's WEMWBS at follow-up (n = 2) is not drawn
    assert distribution_figure_svg(dist, suppress_below=3) != a


def test_add_section_extends_the_report():
    context = small_context()
    add_section(context, "baseline", "Baseline characteristics", {"rows": []}, position=1)
    assert [s["id"] for s in context["sections"]][:2] == ["structure", "baseline"]
    assert context["sections"][1]["template"] == "sections/baseline.html.j2"
    with pytest.raises(ValueError):
        add_section(context, "baseline", "Again", {})


def test_write_report(tmp_path, small_html):
    path = tmp_path / "out" / "report.html"
    write_report(small_html, path)
    assert path.read_bytes() == small_html.encode("utf-8")


# ----------------------------------------------------------------------------------------------------------
# a realistic fake: 5 trusts x 2 teams, 75 participants x 2 time points
# ----------------------------------------------------------------------------------------------------------

SWEMWBS_METRIC = {7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 11: 13.33, 12: 14.08, 13: 14.75, 14: 15.32, 15: 15.84,
                  16: 16.36, 17: 16.88, 18: 17.43, 19: 17.98, 20: 18.59, 21: 19.25, 22: 19.98, 23: 20.73,
                  24: 21.54, 25: 22.35, 26: 23.21, 27: 24.11, 28: 25.03, 29: 26.02, 30: 27.03, 31: 28.13,
                  32: 29.31, 33: 30.70, 34: 32.55, 35: 35.00}
EQ_DECREMENTS = {"mo": [0, 0.058, 0.076, 0.207, 0.274], "sc": [0, 0.050, 0.080, 0.164, 0.203],
                 "ua": [0, 0.050, 0.063, 0.162, 0.184], "pd": [0, 0.063, 0.084, 0.276, 0.335],
                 "ad": [0, 0.078, 0.104, 0.285, 0.289]}


def realistic_scoring(seed: int = 7) -> SimpleNamespace:
    """A plausible ScoringResult: WEMWBS, SWEMWBS, EQ-5D-5L, RG-UK, SCOPE and CPIFS-SU scores, with missing data."""
    rng = np.random.default_rng(seed)
    trusts = ["Avon & Wiltshire", "Bradford District", "Cumbria", "Devon", "East London"]
    people = []
    n = 0
    for t, trust in enumerate(trusts):
        for arm in ("implementation", "control"):
            team = f"{trust.split()[0]} {'CMHT A' if arm == 'implementation' else 'CMHT B'}"
            for _ in range(int(rng.integers(6, 10))):
                n += 1
                people.append((f"CP{n:04d}", trust, team, arm))
    wem_items = [f"wemwbs_{i}" for i in range(1, 15)]
    swem_items = [f"wemwbs_{i}" for i in (1, 2, 3, 6, 7, 9, 11)]
    eq_items = [f"eq5d5l_{d}" for d in EQ_DECREMENTS]
    rg_items = [f"rguk_{i}" for i in range(1, 28)]
    scope_items = [f"scope_{i}" for i in range(1, 9)]
    cpifs_items = [f"cpifs_su_{i}" for i in range(1, 6)]
    rows = []
    qa = []
    row_no = 0
    for pid, trust, team, arm in people:
        level = rng.normal(0, 0.6)
        for tp in ("baseline", "follow_up"):
            row_no += 1
            row = {"participant_id": pid, "trust_id": trust, "team_id": team, "arm": arm, "timepoint": tp,
                   "age": int(rng.integers(19, 75)), "gender": str(rng.choice(["female", "male"])),
                   "source_row": row_no}
            lost = tp == "follow_up" and rng.random() < 0.15
            shift = 0.25 if (tp == "follow_up" and arm == "implementation") else 0.0
            wem = np.clip(np.round(3 + level + shift + rng.normal(0, 0.8, 14)), 1, 5)
            wem[rng.random(14) < 0.03] = np.nan
            eq = np.clip(np.round(1.8 - level + rng.normal(0, 0.9, 5)), 1, 5)
            rg = (rng.random(27) < 0.45 + 0.1 * level + shift / 2).astype(float)
            sc = np.clip(np.round(4 + level + rng.normal(0, 1, 8)), 1, 7)
            cp = np.clip(np.round(5 + (2 if arm == "implementation" else 0) + rng.normal(0, 1.5, 5)), 1, 9)
            values = dict(zip(wem_items, wem)) | dict(zip(eq_items, eq)) | dict(zip(rg_items, rg)) \
                | dict(zip(scope_items, sc)) | dict(zip(cpifs_items, cp))
            if lost:
                values = {k: np.nan for k in values}
            row.update(values)
            answered = ~np.isnan(wem)
            if lost:
                scores = dict.fromkeys(["wemwbs_total", "swemwbs_raw", "swemwbs_metric", "eq5d5l_index",
                                        "rguk_total", "scope_overall", "cpifs_su_total"], np.nan)
            else:
                n_missing = int((~answered).sum())
                wt = np.nansum(wem) * 14 / answered.sum() if n_missing <= 3 else np.nan
                sw = np.array([row[c] for c in swem_items])
                sw_raw = np.nansum(sw) * 7 / (~np.isnan(sw)).sum() if np.isnan(sw).sum() <= 1 else np.nan
                scores = {
                    "wemwbs_total": round(wt, 1) if not np.isnan(wt) else np.nan,
                    "swemwbs_raw": round(sw_raw, 1) if not np.isnan(sw_raw) else np.nan,
                    "swemwbs_metric": SWEMWBS_METRIC[int(round(sw_raw))] if not np.isnan(sw_raw) else np.nan,
                    "eq5d5l_index": round(1 - sum(EQ_DECREMENTS[d][int(v) - 1] for d, v in zip(EQ_DECREMENTS, eq)), 3),
                    "rguk_total": float(rg.sum()),
                    "scope_overall": round(float(sc.mean()), 2),
                    "cpifs_su_total": float(cp.sum()),
                }
                for c, v in zip(wem_items, wem):
                    if np.isnan(v):
                        qa.append({"source": "cp_study.sav", "row": row_no, "participant_id": pid, "timepoint": tp,
                                   "variable": c, "value": "-9", "reason": "user_missing",
                                   "expected": "an integer from 1 to 5", "action": "treated as missing"})
            row.update(scores)
            rows.append(row)
    data = pd.DataFrame(rows)
    for i in rng.choice(len(data), 4, replace=False):
        qa.append({"source": "cp_study.sav", "row": int(data.loc[i, "source_row"]),
                   "participant_id": data.loc[i, "participant_id"], "timepoint": data.loc[i, "timepoint"],
                   "variable": "eq5d5l_mo", "value": "7", "reason": "out_of_range",
                   "expected": "an integer from 1 to 5", "action": "treated as missing"})

    def scale(inst, inst_name, name, column, label, rule, lo, hi, value_set, verified, notes):
        values = data[column]
        n_scored = int(values.notna().sum())
        n_prorated = int(((data[items[inst]].isna().any(axis=1)) & values.notna()).sum())
        return [inst, inst_name, name, column, label, rule, lo, hi, len(data), n_scored, n_scored - n_prorated,
                n_prorated, len(data) - n_scored, value_set, verified, notes]

    items = {"wemwbs": wem_items, "swemwbs": swem_items, "eq5d5l": eq_items, "rguk": rg_items,
             "scope": scope_items, "cpifs_su": cpifs_items}
    scales = pd.DataFrame([
        scale("wemwbs", "Warwick-Edinburgh Mental Wellbeing Scale", "total", "wemwbs_total", "WEMWBS total",
              "sum of 14 items; prorated when at most 3 missing", 14, 70, None, True,
              "Tennant et al. 2007. Prorating rule is a cpeval default (unverified)."),
        scale("swemwbs", "Short WEMWBS", "raw", "swemwbs_raw", "SWEMWBS raw score", "sum of 7 items", 7, 35, None,
              True, "Stewart-Brown et al. 2009"),
        scale("swemwbs", "Short WEMWBS", "metric", "swemwbs_metric", "SWEMWBS metric score",
              "raw score rounded, then Rasch conversion table", 7, 35, "SWEMWBS raw-to-metric table", True,
              "Stewart-Brown et al. 2009"),
        scale("eq5d5l", "EQ-5D-5L", "index", "eq5d5l_index", "EQ-5D-5L index", "value set lookup", -0.285, 1,
              "England 2018 (Devlin et al.)", True, "Devlin et al. 2018, Health Econ 27:7-22"),
        scale("rguk", "Resource Generator-UK", "total", "rguk_total", "RG-UK resources accessed",
              "count of items answered yes", 0, 27, None, False, "Subscale map not published; total only."),
        scale("scope", "SCOPE (short form)", "overall", "scope_overall", "SCOPE overall satisfaction",
              "mean of 8 items", 1, 7, None, False, "Response scale and item list unverified."),
        scale("cpifs_su", "CPIFS (service user version)", "total", "cpifs_su_total", "CPIFS-SU total",
              "sum of 5 domain items", 5, 45, None, False, "Aggregation rule not published: a study setting."),
    ], columns=SCALE_COLUMNS)
    return SimpleNamespace(data=data, qa=qa_frame(qa), scales=scales, items=items)


REALISTIC_LOG = [
    "read cp_study.sav: 75 rows, 172 columns (SPSS, encoding UTF-8)",
    "variable map analysis/cp_study_map.yaml: format wide, 2 time points (T1_ -> baseline, T2_ -> follow_up)",
    "reshaped wide to long: 75 rows -> 150 rows (participant x time point)",
    "user-missing codes -9, -8 declared in the file: 31 values set to missing (see QA)",
    "kept 2 unmapped columns as fixed variables: INTERVIEWER, SITE_NOTES",
]


def realistic_html(suppress_below: int = 0) -> str:
    scoring = realistic_scoring()
    context = build_study_context(scoring, Design(study="Connecting People Implementation Study (test data)"),
                                  source_name="cp_study.sav", import_log=REALISTIC_LOG, generated=FIXED,
                                  suppress_below=suppress_below)
    return render_study_report(context)


def test_realistic_report_renders_and_is_safe():
    scoring = realistic_scoring()
    assert 130 <= len(scoring.data) <= 190
    html = realistic_html()
    assert html == realistic_html()  # reproducible bytes, figure included
    for pid in scoring.data["participant_id"].unique():
        assert pid not in html
    lower = html.lower()
    assert "http" not in lower and "<script" not in lower and "<link" not in lower and "url(" not in lower
    assert "Avon &amp; Wiltshire" in html  # labels escaped, not dropped
    # one panel per score in the figure
    assert html.count("<svg") == 1
    for label in scoring.scales["label"]:
        assert label in html
    assert html.count("unverified default, overridable") >= 3
    # the all-arms total equals the number of participants
    assert '<th scope="row">All teams</th>' in html
    totals = structure_totals(scoring.data, DESIGN, scoring.items).set_index("arm")
    assert totals.loc["All arms", "recruited"] == scoring.data["participant_id"].nunique()
