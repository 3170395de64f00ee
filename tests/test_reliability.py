"""Cronbach's alpha (cpeval.reliability) checked against R psych.

Reference values: tests/data/alpha/psych_reference.csv, written by tests/r/alpha_reference.R with R 4.2.2 and psych
2.2.9 (the versions are recorded in the file and checked below) from the data sets beside it. R is not run here.

What is compared: alpha with ``psych::alpha(x)$total$raw_alpha``; the interval with psych's *Feldt* bounds
(``$feldt$lower.ci`` / ``$feldt$upper.ci``, the "Feldt" row of the "95% confidence boundaries" psych 2.x prints), not
with the "Duhachek" row (alpha -/+ 1.96 ase) printed below it. psych was given the complete rows only (na.omit), as
cpeval deletes listwise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pingouin
import pytest

from cpeval import demo
from cpeval.errors import CpevalError
from cpeval.instruments import load_instruments
from cpeval.pipeline import run_scoring
from cpeval.plan import Design
from cpeval.reliability import RELIABILITY_COLUMNS, cronbach_alpha, reliability_table

DATA = Path(__file__).parent / "data" / "alpha"
REG = load_instruments()
DESIGN = Design()
SCOPE_SAT = [f"scope_sat_{d}" for d in ["leisure", "housing", "safety", "work", "finances", "education", "family",
                                        "health"]]


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    table = pd.read_csv(DATA / "psych_reference.csv")
    return table.set_index(["dataset", "scale"])


def test_reference_file_states_its_source(ref):
    assert set(ref["r_version"].astype(str)) == {"4.2.2"}
    assert set(ref["psych_version"].astype(str)) == {"2.2.9"}
    # Feldt and Duhachek intervals differ by more than the tolerance used below, so matching one is a real check
    assert ((ref["feldt_lower"] - ref["duhachek_lower"]).abs() > 1e-3).all()
    assert ((ref["feldt_upper"] - ref["duhachek_upper"]).abs() > 1e-3).all()


@pytest.mark.parametrize("dataset", ["likert", "binary"])
def test_alpha_and_feldt_interval_match_psych(ref, dataset):
    items = pd.read_csv(DATA / f"{dataset}.csv")  # likert has 9 missing cells: cpeval drops those rows
    r = ref.loc[(dataset, "all")]
    res = cronbach_alpha(items)
    assert (res["n"], res["n_items"], res["note"]) == (r["n"], r["n_items"], "")
    assert res["alpha"] == pytest.approx(r["raw_alpha"], abs=1e-12)
    assert res["conf_low"] == pytest.approx(r["feldt_lower"], abs=1e-9)
    assert res["conf_high"] == pytest.approx(r["feldt_upper"], abs=1e-9)
    assert abs(res["conf_low"] - r["duhachek_lower"]) > 1e-3  # it is the Feldt interval, not Duhachek's


def test_likert_reference_really_has_gaps(ref):
    items = pd.read_csv(DATA / "likert.csv")
    assert len(items) == 60 and items.isna().any(axis=1).sum() == 60 - ref.loc[("likert", "all"), "n"]


def test_interval_is_pingouins_unrounded():
    items = pd.read_csv(DATA / "likert.csv").dropna()
    res = cronbach_alpha(items, conf_level=0.9)
    alpha, ci = pingouin.cronbach_alpha(items, ci=0.9)
    assert res["alpha"] == pytest.approx(alpha, abs=1e-12)
    assert [round(res["conf_low"], 3), round(res["conf_high"], 3)] == pytest.approx(list(ci), abs=1e-12)
    wide = cronbach_alpha(items, conf_level=0.99)
    assert wide["conf_low"] < res["conf_low"] < res["alpha"] < res["conf_high"] < wide["conf_high"]


def _scope_frame(timepoint: str = "baseline") -> pd.DataFrame:
    items = pd.read_csv(DATA / "scope.csv")
    frame = items.copy()
    frame.insert(0, "timepoint", timepoint)
    frame.insert(0, "participant_id", np.arange(1, len(items) + 1))
    return frame


@pytest.mark.parametrize("scale", ["scope_satisfaction", "scope_opportunities", "scope_overall"])
def test_reliability_table_scope_matches_psych(ref, scale):
    # SCOPE overall mixes reverse-scored satisfaction (1-7) with opportunities (1-5), each rescaled to 0-100:
    # R did both by hand. Without reverse-scoring alpha would be about -1.05 (reference row below).
    table = reliability_table(_scope_frame(), [REG["scope"]], DESIGN)
    row = table[table["scale"] == scale].iloc[0]
    r = ref.loc[("scope", scale)]
    assert (row["instrument"], row["timepoint"], row["n"], row["n_items"], row["note"]) == \
        ("scope", "baseline", r["n"], r["n_items"], "")
    assert row["alpha"] == pytest.approx(r["raw_alpha"], abs=1e-12)
    assert row["conf_low"] == pytest.approx(r["feldt_lower"], abs=1e-9)
    assert row["conf_high"] == pytest.approx(r["feldt_upper"], abs=1e-9)
    assert ref.loc[("scope", "scope_overall_not_reversed"), "raw_alpha"] < 0


def test_invalid_answers_and_missing_codes_are_missing(ref):
    # cells that were empty now hold a missing code, an out-of-range answer, a fraction or text: same result
    frame = _scope_frame()
    items = [c for c in frame.columns if c.startswith("scope_")]
    filler = [-9, -8, 9, 2.5, "n/a"]
    block = frame[items].astype(object)
    positions = list(zip(*np.nonzero(frame[items].isna().to_numpy())))
    assert len(positions) >= len(filler)
    for k, (i, j) in enumerate(positions):
        block.iat[i, j] = filler[k % len(filler)]
    frame[items] = block
    assert frame[items].notna().all().all()
    row = reliability_table(frame, [REG["scope"]], DESIGN).set_index("scale").loc["scope_overall"]
    assert row["n"] == ref.loc[("scope", "scope_overall"), "n"]
    assert row["alpha"] == pytest.approx(ref.loc[("scope", "scope_overall"), "raw_alpha"], abs=1e-12)


def test_reliability_table_layout_and_notes():
    base = _scope_frame("baseline")
    # follow-up: only two complete rows -> no alpha; a third time point with every answer the same -> zero variance
    follow = _scope_frame("follow_up").iloc[:2]
    later = _scope_frame("month_12").iloc[:5]
    later[SCOPE_SAT + [c for c in later.columns if c.startswith("scope_opp_")]] = 3
    table = reliability_table(pd.concat([later, follow, base]), [REG["scope"]], DESIGN)
    assert list(table.columns) == RELIABILITY_COLUMNS
    # scales in definition order; the plan's time points first, then others
    assert table["scale"].tolist() == ["scope_satisfaction"] * 3 + ["scope_opportunities"] * 3 + ["scope_overall"] * 3
    assert table["timepoint"].tolist() == ["baseline", "follow_up", "month_12"] * 3
    follow_rows = table[table["timepoint"] == "follow_up"]
    assert follow_rows["alpha"].isna().all()
    assert follow_rows["note"].str.startswith("fewer than 3 complete responses (n = ").all()
    flat = table[table["timepoint"] == "month_12"]
    assert flat["alpha"].isna().all() and flat["n"].tolist() == [5, 5, 5]
    assert flat["note"].str.contains("zero variance").all()
    assert table[table["timepoint"] == "baseline"]["note"].eq("").all()
    assert table["n"].dtype == np.int64 and table["alpha"].dtype == np.float64


def test_absent_item_columns_give_a_note_not_a_crash():
    frame = _scope_frame().drop(columns=["scope_sat_work"])
    table = reliability_table(frame, [REG["scope"]], DESIGN).set_index("scale")
    assert table.loc["scope_satisfaction", "note"] == "item column(s) absent: scope_sat_work"
    assert np.isnan(table.loc["scope_overall", "alpha"])
    assert table.loc["scope_opportunities", "note"] == "" and table.loc["scope_opportunities", "alpha"] > 0.5


def test_zero_variance_total_and_too_few_rows():
    # x and 6 - x: each item varies but the total never does
    x = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [5, 4, 3, 2, 1]})
    res = cronbach_alpha(x)
    assert np.isnan(res["alpha"]) and res["note"] == "the total score has zero variance" and res["n"] == 5
    res = cronbach_alpha(pd.DataFrame({"a": [1, 2, np.nan], "b": [2, 2, 3]}))
    assert np.isnan(res["alpha"]) and res["note"] == "fewer than 3 complete responses (n = 2)"
    res = cronbach_alpha(pd.DataFrame({"a": [np.nan] * 4, "b": [np.nan] * 4}))
    assert res["n"] == 0 and res["note"] == "no item answered (no responses at all)"
    res = cronbach_alpha(pd.DataFrame({"a": [2, 2, 2], "b": [4, 4, 4]}))
    assert res["note"] == "every item has the same answer in every complete response (zero variance)"


# ---------------------------------------------------------------------------------------------------- demo study


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    study = demo.generate_demo_study(2024)
    files = demo.write_demo_files(study, tmp_path_factory.mktemp("demo"))
    return run_scoring(files["participants"], map_path=demo.demo_map_paths()["participants"])


def test_demo_reliability_table(scored):
    table = reliability_table(scored.data, scored.instruments, DESIGN)
    # every multi-item item-based scale of the scored instruments, at both time points
    expected = [(i.id, s.column) for i in scored.instruments for s in i.scales
                if s.rule in ("sum", "mean", "prorated_sum", "count") and len(s.items) >= 2]
    assert list(dict.fromkeys(zip(table["instrument"], table["scale"]))) == expected
    assert len(table) == 2 * len(expected)
    assert "eq5d5l_index" not in set(table["scale"]) and "cpifs_su_total" not in set(table["scale"])
    t = table.set_index(["scale", "timepoint"])
    # the demo builds WEMWBS with alpha about 0.85-0.9; SWEMWBS is read from the WEMWBS columns
    assert 0.8 < t.loc[("wemwbs_total", "baseline"), "alpha"] < 0.93
    assert t.loc[("swemwbs_raw", "baseline"), "n_items"] == 7 and t.loc[("swemwbs_raw", "baseline"), "n"] > 100
    # CPIFS-SU exists at six months only
    assert t.loc[("cpifs_su_com", "baseline"), "note"] == "no item answered (no responses at all)"
    assert t.loc[("cpifs_su_com", "follow_up"), "alpha"] > 0.5
    ok = table["note"] == ""
    assert (table.loc[ok, "conf_low"] < table.loc[ok, "alpha"]).all()
    assert (table.loc[ok, "alpha"] < table.loc[ok, "conf_high"]).all()
    # a registry (every shipped instrument) gives the same rows for the instruments present
    assert reliability_table(scored.data, REG, DESIGN).equals(table)


def test_demo_wemwbs_alpha_by_formula(scored):
    # independent of pingouin: clean the 14 items (valid answers are whole numbers 1-5), complete rows, formula
    data = scored.data
    rows = data[data["timepoint"] == "baseline"]
    block = rows[[f"wemwbs_{k}" for k in range(1, 15)]].astype(float)
    block = block.where((block >= 1) & (block <= 5) & (block == np.round(block))).dropna()
    k = block.shape[1]
    alpha = k / (k - 1) * (1 - block.var(ddof=1).sum() / block.sum(axis=1).var(ddof=1))
    row = reliability_table(data, [REG["wemwbs"]], DESIGN).iloc[0]
    assert (row["scale"], row["timepoint"], row["n"]) == ("wemwbs_total", "baseline", len(block))
    assert row["alpha"] == pytest.approx(alpha, abs=1e-12)
    # the demo plants out-of-range WEMWBS answers (e.g. item 6 = 0): if they were kept, n would be larger
    raw_complete = rows[[f"wemwbs_{k}" for k in range(1, 15)]].dropna()
    assert len(raw_complete) > len(block)


def test_demo_rguk_count_scale_is_kr20(scored):
    # count scales: each item is 1 if its answer is in count_codes (1), else 0; invalid answers (2, 11) missing
    rows = scored.data[scored.data["timepoint"] == "follow_up"]
    cols = [f"rguk_{k}" for k in range(1, 8)]
    block = rows[cols].astype(float)
    block = block.where(block.isin([0, 1])).dropna()
    p = block.mean()
    n, k = block.shape
    kr20 = k / (k - 1) * (1 - (p * (1 - p)).sum() * n / (n - 1) / block.sum(axis=1).var(ddof=1))
    row = reliability_table(scored.data, [REG["rguk"]], DESIGN).set_index(["scale", "timepoint"])
    assert row.loc[("rguk_domestic", "follow_up"), "alpha"] == pytest.approx(kr20, abs=1e-12)


# ---------------------------------------------------------------------------------------------------- errors


def test_errors():
    with pytest.raises(CpevalError, match=r"items has 1 column\(s\) \(a\); expected at least 2 item columns"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2, 3]}))
    with pytest.raises(CpevalError, match=r"item column 'b' holds (str|object) values; expected numbers"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))
    with pytest.raises(CpevalError, match=r"conf_level is 95; expected a number between 0 and 1, e\.g\. 0\.95"):
        cronbach_alpha(pd.DataFrame({"a": [1, 2, 3], "b": [1, 3, 2]}), conf_level=95)
    with pytest.raises(CpevalError, match=r"items is a list; expected a DataFrame with one column per item"):
        cronbach_alpha([[1, 2], [3, 4]])
    with pytest.raises(CpevalError, match=r"column 'visit' \(the plan's time point column\) is not in the data; "
                                          r"expected a column with 'baseline' / 'follow_up'"):
        reliability_table(_scope_frame(), [REG["scope"]], Design(timepoint="visit"))
    with pytest.raises(CpevalError, match=r"instruments holds 'scope'; expected Instrument objects"):
        reliability_table(_scope_frame(), ["scope"], DESIGN)
    with pytest.raises(CpevalError, match=r"design is a str; expected a cpeval.plan.Design"):
        reliability_table(_scope_frame(), [REG["scope"]], "timepoint")
    with pytest.raises(CpevalError, match=r"data is a dict; expected a DataFrame"):
        reliability_table({}, [REG["scope"]], DESIGN)
