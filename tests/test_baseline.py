"""Flow counts, Table 1 and team table (cpeval.baseline).

The expected numbers for the small hand-built study below are worked out by hand in the comments, not computed by
cpeval; the demo study then gives invariants that must hold for any data (analysed <= followed up <= recruited,
team counts summing to arm totals).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cpeval import demo
from cpeval.baseline import (
    BASELINE_COLUMNS,
    FLOW_ANALYSED_COLUMNS,
    FLOW_BY_ARM_COLUMNS,
    FLOW_BY_TEAM_COLUMNS,
    TEAM_COLUMNS,
    baseline_table,
    flow_counts,
    smd_categorical,
    smd_continuous,
    smd_proportion,
    team_table,
)
from cpeval.errors import CpevalError
from cpeval.pipeline import run_scoring
from cpeval.plan import Design

NaN = np.nan
IMP, CTL = "implementation", "control"
DESIGN = Design()  # participant_id, team_id, trust_id, arm, timepoint; baseline / follow_up

# A tiny study: two teams per arm, ten people. y1 and y2 are outcomes, age and gender covariates.
#   p1  T1 both times, all answered                      p6  C1 follow-up has y2 only (y1 missing)
#   p2  T1 age missing at baseline, given at follow-up   p7  C1 age missing at both times
#   p3  T1 no follow-up row                              p8  C2 baseline y2 only; follow-up row empty
#   p4  T2 follow-up row with every outcome missing      p9  C2 no follow-up row
#   p5  T2 baseline row empty, follow-up answered        p10 C2 both rows empty (recruited, never interviewed)
ROWS = [
    # pid, team, trust, arm, timepoint, y1, y2, age, gender
    ("p1", "T1", "A", IMP, "baseline", 10, 20, 30, "F"), ("p1", "T1", "A", IMP, "follow_up", 12, 22, 30, "F"),
    ("p2", "T1", "A", IMP, "baseline", 11, NaN, NaN, "M"), ("p2", "T1", "A", IMP, "follow_up", 13, NaN, 40, "M"),
    ("p3", "T1", "A", IMP, "baseline", 9, 19, 50, "F"),
    ("p4", "T2", "B", IMP, "baseline", 8, 18, NaN, "M"), ("p4", "T2", "B", IMP, "follow_up", NaN, NaN, NaN, "M"),
    ("p5", "T2", "B", IMP, "baseline", NaN, NaN, 35, "F"), ("p5", "T2", "B", IMP, "follow_up", 14, 24, 35, "F"),
    ("p6", "C1", "A", CTL, "baseline", 10, 20, 45, "M"), ("p6", "C1", "A", CTL, "follow_up", NaN, 21, 45, "M"),
    ("p7", "C1", "A", CTL, "baseline", 12, 22, NaN, "M"), ("p7", "C1", "A", CTL, "follow_up", 11, 23, NaN, "M"),
    ("p8", "C2", "B", CTL, "baseline", NaN, 17, 60, "F"), ("p8", "C2", "B", CTL, "follow_up", NaN, NaN, 60, "F"),
    ("p9", "C2", "B", CTL, "baseline", 7, NaN, 33, "F"),
    ("p10", "C2", "B", CTL, "baseline", NaN, NaN, 28, "M"), ("p10", "C2", "B", CTL, "follow_up", NaN, NaN, 28, "M"),
]


def tiny() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["participant_id", "team_id", "trust_id", "arm", "timepoint", "y1", "y2", "age",
                                       "gender"])


# ---------------------------------------------------------------------------------------------------- flow by hand


def test_flow_by_arm_by_hand():
    flow = flow_counts(tiny(), DESIGN, ["y1", "y2"], covariates=["age", "gender"])
    by_arm = flow["by_arm"]
    assert list(by_arm.columns) == FLOW_BY_ARM_COLUMNS
    assert by_arm["arm"].tolist() == [IMP, CTL]  # treatment first
    imp, ctl = by_arm.iloc[0], by_arm.iloc[1]
    # implementation: 5 recruited in 2 teams; baseline data p1-p4 (p5's baseline row is empty) in both teams;
    # follow-up data p1, p2 (T1) and p5 (T2): 3 people, both teams; lost p3, p4 = 2 of 5 = 40 %
    assert imp[FLOW_BY_ARM_COLUMNS[1:-1]].tolist() == [2, 5, 2, 4, 2, 3, 0, 2]
    assert imp["percent_lost"] == pytest.approx(40.0)
    # control: 5 in 2 teams; baseline p6, p7 (C1), p8 (y2 only), p9 (C2) = 4, both teams; follow-up p6 (y2 only)
    # and p7, both C1: 2 people, 1 team; team C2 lost entirely; 3 of 5 people lost = 60 %
    assert ctl[FLOW_BY_ARM_COLUMNS[1:-1]].tolist() == [2, 5, 2, 4, 1, 2, 1, 3]
    assert ctl["percent_lost"] == pytest.approx(60.0)


def test_flow_by_team_by_hand():
    by_team = flow_counts(tiny(), DESIGN, ["y1", "y2"])["by_team"]
    assert list(by_team.columns) == FLOW_BY_TEAM_COLUMNS
    expected = [
        # arm, team, site, recruited, baseline, follow_up, lost, percent lost
        (IMP, "T1", "A", 3, 3, 2, 1, 100 / 3),
        (IMP, "T2", "B", 2, 1, 1, 1, 50.0),
        (CTL, "C1", "A", 2, 2, 2, 0, 0.0),
        (CTL, "C2", "B", 3, 2, 0, 3, 100.0),
    ]
    got = [tuple(r) for r in by_team.itertuples(index=False)]
    for g, e in zip(got, expected, strict=True):
        assert g[:7] == e[:7]
        assert g[7] == pytest.approx(e[7])


def test_flow_analysed_by_hand():
    analysed = flow_counts(tiny(), DESIGN, ["y1", "y2"], covariates=["age", "gender"])["analysed"]
    assert list(analysed.columns) == FLOW_ANALYSED_COLUMNS
    rows = {(r.outcome, r.arm): r for r in analysed.itertuples(index=False)}
    cols = ["recruited", "missing_follow_up", "missing_baseline", "missing_covariates", "analysed",
            "teams_recruited", "teams_analysed"]

    def counts(key):
        return [getattr(rows[key], c) for c in cols]

    # y1, implementation: p3 (no row), p4 (empty) lack follow-up; p5 has follow-up but no baseline; p1 and p2
    # analysed (p2's age comes from the follow-up row), both in T1
    assert counts(("y1", IMP)) == [5, 2, 1, 0, 2, 2, 1]
    # y1, control: p6 (y2 only), p8, p9, p10 lack follow-up y1; p7 has both but no age at all -> 0 analysed
    assert counts(("y1", CTL)) == [5, 4, 0, 1, 0, 2, 0]
    # y2, implementation: p2, p3, p4 lack follow-up y2; p5 lacks baseline; p1 analysed
    assert counts(("y2", IMP)) == [5, 3, 1, 0, 1, 2, 1]
    # y2, control: p8, p9, p10 lack follow-up; p7 no age; p6 analysed (C1)
    assert counts(("y2", CTL)) == [5, 3, 0, 1, 1, 2, 1]
    assert rows[("y1", IMP)].percent_analysed == pytest.approx(40.0)


def test_flow_without_covariates_analyses_p7():
    analysed = flow_counts(tiny(), DESIGN, ["y1"])["analysed"]
    ctl = analysed[analysed["arm"] == CTL].iloc[0]
    assert (ctl["missing_covariates"], ctl["analysed"], ctl["teams_analysed"]) == (0, 1, 1)


def test_flow_blank_text_counts_as_missing():
    # an outcome stored as text (SPSS string): "" is a missing answer, not data
    data = tiny()
    data["band"] = np.where(data["y1"].notna(), "high", "")
    by_arm = flow_counts(data, DESIGN, ["band"])["by_arm"]
    follow_y1 = flow_counts(data, DESIGN, ["y1"])["by_arm"]
    assert by_arm["participants_follow_up"].tolist() == follow_y1["participants_follow_up"].tolist() == [3, 1]


# ---------------------------------------------------------------------------------------------------- Table 1


def test_baseline_table_continuous_by_hand():
    table = baseline_table(tiny(), DESIGN, ["age"])
    assert list(table.columns) == BASELINE_COLUMNS
    imp = table[table["arm"] == IMP].iloc[0]
    ctl = table[table["arm"] == CTL].iloc[0]
    # implementation baseline ages 30, NaN, 50, NaN, 35: n 3, 2 missing, mean 115/3,
    # variance ((30-115/3)^2 + (50-115/3)^2 + (35-115/3)^2) / 2 = 325/3; median 35; type-7 quartiles 32.5, 42.5
    assert (imp["n"], imp["missing"], imp["kind"], imp["level"]) == (3, 2, "continuous", None)
    assert imp["mean"] == pytest.approx(115 / 3)
    assert imp["sd"] == pytest.approx(math.sqrt(325 / 3))
    assert (imp["median"], imp["q1"], imp["q3"], imp["min"], imp["max"]) == (35, 32.5, 42.5, 30, 50)
    assert math.isnan(imp["count"]) and math.isnan(imp["percent"])
    # control ages 45, NaN, 60, 33, 28: n 4, mean 41.5, variance (3.5^2 + 18.5^2 + 8.5^2 + 13.5^2) / 3 = 203
    assert (ctl["n"], ctl["missing"]) == (4, 1)
    assert ctl["mean"] == pytest.approx(41.5)
    assert ctl["sd"] == pytest.approx(math.sqrt(203))
    # SMD = (115/3 - 41.5) / sqrt((325/3 + 203) / 2) = -0.2538...
    smd = (115 / 3 - 41.5) / math.sqrt((325 / 3 + 203) / 2)
    assert smd == pytest.approx(-0.25381, abs=1e-5)
    assert imp["smd"] == pytest.approx(smd) and ctl["smd"] == pytest.approx(smd)
    assert imp["smd_variable"] == pytest.approx(smd)


def test_baseline_table_categorical_by_hand():
    table = baseline_table(tiny(), DESIGN, ["gender"])
    assert table["level"].tolist() == ["F", "F", "M", "M"]  # sorted levels, arms within level
    assert table["arm"].tolist() == [IMP, CTL, IMP, CTL]
    assert set(table["kind"]) == {"categorical"}
    # implementation genders F, M, F, M, F -> F 3/5 = 60 %; control M, M, F, F, M -> F 2/5 = 40 %
    assert table["count"].tolist() == [3, 2, 2, 3]
    assert table["percent"].tolist() == pytest.approx([60, 40, 40, 60])
    assert table["n"].tolist() == [5, 5, 5, 5] and table["missing"].tolist() == [0, 0, 0, 0]
    # per level: (0.6 - 0.4) / sqrt((0.6*0.4 + 0.4*0.6) / 2) = 0.2 / sqrt(0.24) = 0.40825; male the negative
    assert table["smd"].tolist() == pytest.approx([0.2 / math.sqrt(0.24)] * 2 + [-0.2 / math.sqrt(0.24)] * 2)
    # two levels: Yang & Dalton equals the absolute per-level SMD
    assert table["smd_variable"].tolist() == pytest.approx([0.2 / math.sqrt(0.24)] * 4)
    assert math.isnan(table["mean"].iloc[0])


def test_baseline_table_numeric_codes_as_categorical_and_missing_levels():
    data = tiny()
    data["code"] = data["gender"].map({"F": 2, "M": 1}).astype(float)
    data.loc[(data["participant_id"] == "p1") & (data["timepoint"] == "baseline"), "code"] = NaN
    data["note"] = ""  # a text column with nothing in it: every value missing, no level
    table = baseline_table(data, DESIGN, ["code", "note"], categorical=["code"])
    code = table[table["variable"] == "code"]
    assert code["level"].tolist() == ["1", "1", "2", "2"]  # 1.0 shown as "1"
    # implementation without p1: M 2 of 4 = 50 %, 1 missing
    imp = code[code["arm"] == IMP]
    assert imp["count"].tolist() == [2, 2] and imp["n"].tolist() == [4, 4] and imp["missing"].tolist() == [1, 1]
    # a variable with no value at all still shows: one row per arm, all missing
    note = table[table["variable"] == "note"]
    assert note["level"].tolist() == [None, None] and note["n"].tolist() == [0, 0]
    assert note["missing"].tolist() == [5, 5] and note["smd"].isna().all()


def test_baseline_table_other_timepoint_and_categorical_order():
    data = tiny()
    data["gender"] = pd.Categorical(data["gender"], categories=["M", "F", "X"])
    table = baseline_table(data, DESIGN, ["gender"], timepoint="follow_up")
    assert table["level"].tolist() == ["M", "M", "F", "F", "X", "X"]  # category order, unobserved level kept
    # follow-up rows: implementation p1 F, p2 M, p4 M, p5 F; control p6 M, p7 M, p8 F, p10 M
    assert table["count"].tolist() == [2, 3, 2, 1, 0, 0]
    x = table[table["level"] == "X"]
    assert x["percent"].tolist() == [0, 0] and x["smd"].tolist() == [0, 0]


def test_smd_functions_by_hand():
    assert smd_continuous(10, 2, 8, 4) == pytest.approx(2 / math.sqrt(10))  # sqrt((4 + 16) / 2)
    assert smd_continuous(5, 0, 5, 0) == 0.0
    assert math.isnan(smd_continuous(5, 0, 4, 0))  # no spread, different means: undefined
    assert math.isnan(smd_continuous(5, NaN, 4, 1))  # an arm with one value has no SD
    assert smd_proportion(0.5, 0.25) == pytest.approx(0.25 / math.sqrt((0.25 + 0.1875) / 2))
    # Yang & Dalton, three levels, p_t = (.5, .3, .2), p_c = (.4, .4, .2); drop level 1:
    # d = (-.1, 0); S = ([[.21, -.06], [-.06, .16]] + [[.24, -.08], [-.08, .16]]) / 2 = [[.225, -.07], [-.07, .16]]
    # det = .225*.16 - .07^2 = .0311; (S^-1)[0,0] = .16/.0311; d'S^-1 d = .01 * .16 / .0311
    expected = math.sqrt(0.01 * 0.16 / 0.0311)
    assert smd_categorical([0.5, 0.3, 0.2], [0.4, 0.4, 0.2]) == pytest.approx(expected)
    # the result does not depend on which level is dropped
    assert smd_categorical([0.2, 0.3, 0.5], [0.2, 0.4, 0.4]) == pytest.approx(expected)
    assert smd_categorical([0.3, 0.5, 0.2], [0.4, 0.4, 0.2]) == pytest.approx(expected)
    # two levels: the absolute binary SMD
    assert smd_categorical([0.7, 0.3], [0.4, 0.6]) == pytest.approx(abs(smd_proportion(0.3, 0.6)))
    # a level seen in neither arm (singular S) changes nothing
    assert smd_categorical([0.5, 0.3, 0.2, 0], [0.4, 0.4, 0.2, 0]) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------------- teams


def test_team_table_by_hand():
    table = team_table(tiny(), DESIGN, outcomes=["y1", "y2"])
    assert list(table.columns) == TEAM_COLUMNS
    assert table["level"].tolist() == ["arm", "arm", "total", "team", "team", "team", "team"]
    imp, ctl, total = (table.iloc[i] for i in range(3))
    # implementation teams T1 (3 recruited, 3 at baseline) and T2 (2, 1)
    assert (imp["arm"], imp["teams"], imp["recruited"], imp["recruited_mean"], imp["recruited_min"],
            imp["recruited_max"]) == (IMP, 2, 5, 2.5, 2, 3)
    assert (imp["baseline"], imp["baseline_mean"], imp["baseline_min"], imp["baseline_max"]) == (4, 2.0, 1, 3)
    # control teams C1 (2, 2) and C2 (3, 2: p10 has no baseline data)
    assert (ctl["teams"], ctl["recruited"], ctl["baseline"], ctl["baseline_min"], ctl["baseline_max"]) == \
        (2, 5, 4, 2, 2)
    assert (total["arm"], total["teams"], total["recruited"], total["baseline"], total["baseline_min"]) == \
        (None, 4, 10, 8, 1)
    teams = table[table["level"] == "team"]
    assert teams["team"].tolist() == ["T1", "T2", "C1", "C2"]
    assert teams["site"].tolist() == ["A", "B", "A", "B"]
    assert teams["recruited"].tolist() == [3, 2, 2, 3] and teams["baseline"].tolist() == [3, 1, 2, 2]
    assert teams["recruited_mean"].isna().all()
    # without outcomes "at baseline" means a baseline row: all ten people have one
    assert team_table(tiny(), DESIGN).iloc[2]["baseline"] == 10


# ---------------------------------------------------------------------------------------------------- demo study

OUTCOMES = ["rguk_total", "wemwbs_total", "swemwbs_metric", "scope_overall", "eq5d5l_index"]


@pytest.fixture(scope="module")
def scored(tmp_path_factory) -> pd.DataFrame:
    study = demo.generate_demo_study(2024)
    files = demo.write_demo_files(study, tmp_path_factory.mktemp("demo"))
    return run_scoring(files["participants"], map_path=demo.demo_map_paths()["participants"]).data


def test_demo_flow_invariants(scored):
    flow = flow_counts(scored, DESIGN, OUTCOMES, covariates=["age", "gender"])
    by_arm, by_team, analysed = flow["by_arm"], flow["by_team"], flow["analysed"]
    people = scored["participant_id"].nunique()
    assert by_arm["participants_recruited"].sum() == people
    assert by_arm["teams_recruited"].tolist() == [5, 5]
    assert (by_arm["participants_follow_up"] <= by_arm["participants_recruited"]).all()
    assert (by_arm["participants_baseline"] <= by_arm["participants_recruited"]).all()
    assert (by_arm["participants_lost"] == by_arm["participants_recruited"] - by_arm["participants_follow_up"]).all()
    # the demo never interviews 5-11 people and follows up 120-134 (cpeval.demo docstring)
    assert 5 <= people - by_arm["participants_baseline"].sum() <= 11
    assert 120 <= by_arm["participants_follow_up"].sum() <= 134
    # team counts sum to the arm totals
    for arm, part in by_team.groupby("arm"):
        row = by_arm[by_arm["arm"] == arm].iloc[0]
        assert part["recruited"].sum() == row["participants_recruited"]
        assert part["baseline"].sum() == row["participants_baseline"]
        assert part["follow_up"].sum() == row["participants_follow_up"]
        assert len(part) == row["teams_recruited"]
    # analysed <= followed up <= recruited, and the exclusions add up
    merged = analysed.merge(by_arm, on="arm")
    assert (merged["analysed"] <= merged["participants_follow_up"]).all()
    assert (merged["recruited"] == merged["participants_recruited"]).all()
    assert (merged["recruited"] == merged[["missing_follow_up", "missing_baseline", "missing_covariates",
                                           "analysed"]].sum(axis=1)).all()
    assert (merged["analysed"] > 0).all()
    # the analysed set for one outcome is exactly the complete cases, counted independently here
    b = scored[scored["timepoint"] == "baseline"].set_index("participant_id")
    f = scored[scored["timepoint"] == "follow_up"].set_index("participant_id")
    ok = f["rguk_total"].notna() & b["rguk_total"].reindex(f.index).notna() & \
        (b["age"].reindex(f.index).notna() | f["age"].notna())
    assert analysed.loc[analysed["outcome"] == "rguk_total", "analysed"].sum() == int(ok.sum())
    teams = team_table(scored, DESIGN, outcomes=OUTCOMES)
    total = teams[teams["level"] == "total"].iloc[0]
    assert total["recruited"] == people and total["teams"] == 10
    assert total["baseline"] == by_arm["participants_baseline"].sum()
    team_rows = teams[teams["level"] == "team"]
    assert team_rows["recruited"].sum() == people
    assert (teams[teams["level"] == "arm"]["recruited"].sum()) == people


def test_demo_baseline_table(scored):
    table = baseline_table(scored, DESIGN, ["age", "gender", "wemwbs_total", "wemwbs_band"])
    people = scored.loc[scored["timepoint"] == "baseline", "participant_id"].nunique()
    # every variable accounts for every participant at baseline in each arm: n + missing
    for (var, level), part in table.groupby(["variable", table["level"].fillna("")], sort=False):
        assert part["n"].sum() + part["missing"].sum() == people, var
    # percentages of a categorical variable add to 100 in each arm
    gender = table[table["variable"] == "gender"]
    assert gender.groupby("arm")["percent"].sum().tolist() == pytest.approx([100, 100])
    # the band of a missing WEMWBS total is missing, not a level of its own
    band = table[table["variable"] == "wemwbs_band"]
    assert "" not in set(band["level"]) and None not in set(band["level"])
    wem = table[table["variable"] == "wemwbs_total"]
    assert band.groupby("arm")["n"].first().to_dict() == wem.set_index("arm")["n"].to_dict()
    assert 35 < wem["mean"].mean() < 47  # demo: baseline WEMWBS total about 41


# ---------------------------------------------------------------------------------------------------- errors


def test_error_design_column_absent():
    with pytest.raises(CpevalError, match=r"column 'team_id' is not in the data \(the plan's cluster \(team\) "
                                          r"column; expected a column naming each participant's team\)"):
        flow_counts(tiny().drop(columns="team_id"), DESIGN, ["y1"])
    with pytest.raises(CpevalError, match=r"column 'visit' is not in the data \(the plan's time point column"):
        baseline_table(tiny(), Design(timepoint="visit"), ["age"])


def test_error_arm_with_no_participants():
    data = tiny()
    data = data[data["arm"] == IMP]
    with pytest.raises(CpevalError, match=r"arm 'control' \(the plan's control arm\) has no participants: column "
                                          r"'arm' holds 'implementation'; expected participants in both arms"):
        flow_counts(data, DESIGN, ["y1"])
    # both arms in the data, but nobody in one of them at the time point described
    data = tiny()
    data.loc[data["arm"] == CTL, "timepoint"] = "follow_up"
    data = data.drop_duplicates(["participant_id", "timepoint"])
    with pytest.raises(CpevalError, match=r"arm 'control' has no participants at time point 'baseline'"):
        baseline_table(data, DESIGN, ["age"])


def test_error_arm_value_not_in_plan():
    data = tiny()
    data.loc[data["participant_id"] == "p1", "arm"] = "Control"
    with pytest.raises(CpevalError, match=r"column 'arm' has value 'Control' in 2 row\(s\); expected "
                                          r"'implementation' \(treatment\) or 'control' \(control\)"):
        flow_counts(data, DESIGN, ["y1"])


def test_numeric_arm_codes_match_plan_text():
    data = tiny()
    data["arm"] = data["arm"].map({IMP: 1.0, CTL: 2.0})
    flow = flow_counts(data, Design(treatment="1", control="2"), ["y1", "y2"])
    assert flow["by_arm"]["arm"].tolist() == ["1", "2"]
    assert flow["by_arm"]["participants_recruited"].tolist() == [5, 5]


def test_error_design_value_missing():
    data = tiny()
    data.loc[3, "team_id"] = None
    with pytest.raises(CpevalError, match=r"column 'team_id' is missing in 1 row\(s\) \(first: row 4\); expected "
                                          r"every row to have a value"):
        flow_counts(data, DESIGN, ["y1"])
    # with the import's source_row column, the message gives the file's row, as QA records do
    data["source_row"] = np.arange(101, 101 + len(data))
    with pytest.raises(CpevalError, match=r"column 'team_id' is missing in 1 row\(s\) \(first: row 104\)"):
        team_table(data, DESIGN)


def test_error_variable_absent():
    with pytest.raises(CpevalError, match=r"outcomes: column 'y9' is not in the data; expected one of the data's "
                                          r"columns"):
        flow_counts(tiny(), DESIGN, ["y1", "y9"])
    with pytest.raises(CpevalError, match=r"covariates: column 'sex' is not in the data"):
        flow_counts(tiny(), DESIGN, ["y1"], covariates=["age", "sex"])
    with pytest.raises(CpevalError, match=r"variables: column 'height' is not in the data"):
        baseline_table(tiny(), DESIGN, ["age", "height"])
    with pytest.raises(CpevalError, match=r"outcomes: none given; expected at least one column name"):
        flow_counts(tiny(), DESIGN, [])
    with pytest.raises(CpevalError, match=r"variables: none given"):
        baseline_table(tiny(), DESIGN, [])


def test_error_categorical_not_a_variable():
    with pytest.raises(CpevalError, match=r"categorical: 'gender' is not one of the variables \(age\); expected the "
                                          r"categorical variables to be listed in variables too"):
        baseline_table(tiny(), DESIGN, ["age"], categorical=["gender"])


def test_error_timepoint_without_rows():
    with pytest.raises(CpevalError, match=r"no rows at time point 'month_12' in column 'timepoint' \(it holds "
                                          r"'baseline', 'follow_up'\)"):
        baseline_table(tiny(), DESIGN, ["age"], timepoint="month_12")


def test_error_participant_in_two_teams_and_team_in_two_arms():
    data = tiny()
    data.loc[(data["participant_id"] == "p1") & (data["timepoint"] == "follow_up"), "team_id"] = "T2"
    with pytest.raises(CpevalError, match=r"participant p1 \(column 'participant_id'\) is in more than one team "
                                          r"\('T1', 'T2' in column 'team_id'\); expected one team per participant"):
        flow_counts(data, DESIGN, ["y1"])
    data = tiny()
    data.loc[data["participant_id"] == "p6", "team_id"] = "T1"
    with pytest.raises(CpevalError, match=r"team T1 \(column 'team_id'\) is in more than one arm \('implementation', "
                                          r"'control' in column 'arm'\); expected one arm per team"):
        flow_counts(data, DESIGN, ["y1"])


def test_error_two_rows_for_one_participant_and_time():
    data = pd.concat([tiny(), tiny().iloc[[0]]], ignore_index=True)
    with pytest.raises(CpevalError, match=r"participant p1 has 2 rows at time point 'baseline' \(columns "
                                          r"'participant_id', 'timepoint'\); expected one row per participant and "
                                          r"time point"):
        baseline_table(data, DESIGN, ["age"])


def test_error_not_a_dataframe_or_design():
    with pytest.raises(CpevalError, match=r"data is a list; expected a DataFrame"):
        flow_counts([1, 2], DESIGN, ["y1"])
    with pytest.raises(CpevalError, match=r"design is a dict; expected a cpeval.plan.Design \(a plan's .design\)"):
        baseline_table(tiny(), {"arm": "arm"}, ["age"])
