"""Scoring engine checked against independent values.

References: the SWEMWBS raw->metric table and the EQ-5D test states are typed here from
../shared/reference/instruments.md (published sources named there), not read from our YAML files;
other expected values are worked by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpeval.errors import CpevalError
from cpeval.instruments import load_instruments, load_value_set_csv
from cpeval.qa import QA_COLUMNS
from cpeval.scoring import SCALE_SUMMARY_COLUMNS, score, select_instruments

REG = load_instruments()

# SWEMWBS raw -> metric (Stewart-Brown et al. 2009 conversion table, as listed in instruments.md)
SWEMWBS_TABLE = {
    7: 7.00, 8: 9.51, 9: 11.25, 10: 12.40, 11: 13.33, 12: 14.08, 13: 14.75, 14: 15.32, 15: 15.84, 16: 16.36,
    17: 16.88, 18: 17.43, 19: 17.98, 20: 18.59, 21: 19.25, 22: 19.98, 23: 20.73, 24: 21.54, 25: 22.35, 26: 23.21,
    27: 24.11, 28: 25.03, 29: 26.02, 30: 27.03, 31: 28.13, 32: 29.31, 33: 30.70, 34: 32.55, 35: 35.00,
}

# EQ-5D-5L England 2018 (Devlin et al.): published package test states, and states computed by hand from the table
EQ5D5L_STATES = {
    "11111": 1.0, "11112": 0.922, "11121": 0.937, "11211": 0.950, "12111": 0.950, "21111": 0.942,
    "23245": 0.247, "55555": -0.285, "12345": 0.322, "33333": 0.593, "44444": -0.094,
}
# EQ-5D-3L UK TTO 1997 (Dolan): 33333 and 11111 from instruments.md; the others by hand:
# 11112 = 1 - 0.081 - 0.071 = 0.848; 21111 = 1 - 0.081 - 0.069 = 0.850;
# 12321 = 1 - 0.081 - 0.269 - (0.104 + 0.094 + 0.123) = 0.329; 22222 = 1 - 0.081 - (0.069+0.104+0.036+0.123+0.071) = 0.516
EQ5D3L_STATES = {"11111": 1.0, "33333": -0.594, "11112": 0.848, "21111": 0.850, "12321": 0.329, "22222": 0.516}
DIMS = ["mo", "sc", "ua", "pd", "ad"]


def eq5d_frame(prefix: str, states: list[str]) -> pd.DataFrame:
    return pd.DataFrame({f"{prefix}_{d}": [int(s[i]) for s in states] for i, d in enumerate(DIMS)})


def wemwbs_frame(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=[f"wemwbs_{i}" for i in range(1, 15)])


# ---------------------------------------------------------------------------------------------------- WEMWBS


def test_wemwbs_total_is_sum_and_prorated_with_up_to_three_missing():
    full = [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2, 3, 4]  # sum 40
    one_missing = full[:13] + [np.nan]  # answered sum 36 over 13 items -> 36/13*14 = 38.769...
    three_missing = [np.nan] * 3 + full[3:]  # answered 34 over 11 -> 43.2727...
    four_missing = [np.nan] * 4 + full[4:]  # not scored
    result = score(wemwbs_frame([full, one_missing, three_missing, four_missing]), [REG["wemwbs"]])
    total = result.data["wemwbs_total"].to_numpy()
    assert total[0] == 40
    assert total[1] == pytest.approx(36 / 13 * 14)
    assert total[2] == pytest.approx(34 / 11 * 14)
    assert np.isnan(total[3])
    row = result.scales.set_index("column").loc["wemwbs_total"]
    assert (row.n_scored, row.n_complete, row.n_prorated, row.n_not_scored) == (3, 1, 2, 1)
    band = result.data["wemwbs_band"]
    assert list(band[:3]) == ["probable depression (43 or below)", "probable depression (43 or below)", "above 43"]
    assert pd.isna(band[3])


def test_wemwbs_band_cut_is_inclusive_at_43():
    rows = [[3] * 13 + [4], [3] * 12 + [4, 5]]  # totals 43 and 45
    result = score(wemwbs_frame(rows), [REG["wemwbs"]])
    assert list(result.data["wemwbs_total"]) == [43, 45]
    assert list(result.data["wemwbs_band"].astype(str)) == ["probable depression (43 or below)", "above 43"]


# --------------------------------------------------------------------------------------------------- SWEMWBS


@pytest.mark.parametrize("raw", range(7, 36))
def test_swemwbs_metric_matches_published_table_for_every_raw_score(raw):
    # spread `raw` over the 7 items as evenly as possible, each 1..5
    base, extra = divmod(raw, 7)
    items = [base + (1 if i < extra else 0) for i in range(7)]
    frame = pd.DataFrame([items], columns=[f"swemwbs_{i}" for i in range(1, 8)])
    result = score(frame, [REG["swemwbs"]])
    assert result.data.loc[0, "swemwbs_raw"] == raw
    assert result.data.loc[0, "swemwbs_metric"] == pytest.approx(SWEMWBS_TABLE[raw], abs=1e-9)


def test_swemwbs_is_derived_from_wemwbs_items_1_2_3_6_7_9_11():
    row = [5, 4, 3, 1, 1, 2, 5, 1, 4, 1, 3, 1, 1, 1]  # items 1,2,3,6,7,9,11 = 5,4,3,2,5,4,3 -> raw 26
    frame = wemwbs_frame([row])
    assert [i.id for i in select_instruments(frame.columns, REG)] == ["swemwbs", "wemwbs"]
    result = score(frame, [REG["wemwbs"], REG["swemwbs"]])
    assert result.data.loc[0, "swemwbs_raw"] == 26
    assert result.data.loc[0, "swemwbs_metric"] == SWEMWBS_TABLE[26]
    assert result.items["swemwbs"] == [f"wemwbs_{i}" for i in (1, 2, 3, 6, 7, 9, 11)]


def test_swemwbs_prorated_raw_rounds_half_up_before_lookup():
    # six items answered summing 19 -> 19/6*7 = 22.17 -> 22; six summing 15 -> 17.5 -> 18 (half up, not to even)
    frame = pd.DataFrame([[4, 3, 3, 3, 3, 3, np.nan], [3, 3, 3, 2, 2, 2, np.nan]],
                         columns=[f"swemwbs_{i}" for i in range(1, 8)])
    result = score(frame, [REG["swemwbs"]])
    assert list(result.data["swemwbs_raw"]) == [22, 18]
    assert list(result.data["swemwbs_metric"]) == [SWEMWBS_TABLE[22], SWEMWBS_TABLE[18]]
    row = result.scales.set_index("column").loc["swemwbs_metric"]
    assert row.n_prorated == 2  # a metric score from a prorated raw score is reported as prorated


# ---------------------------------------------------------------------------------------------------- EQ-5D


def test_eq5d5l_england_value_set_test_states():
    states = list(EQ5D5L_STATES)
    result = score(eq5d_frame("eq5d5l", states), [REG["eq5d5l"]])
    np.testing.assert_allclose(result.data["eq5d5l_index"], [EQ5D5L_STATES[s] for s in states], atol=5e-4)
    assert set(result.data["eq5d5l_index_value_set"]) == {"England 2018 (Devlin et al. 2018)"}
    row = result.scales.set_index("column").loc["eq5d5l_index"]
    assert (row.output_min, row.output_max) == (pytest.approx(-0.285), pytest.approx(1.0))


def test_eq5d3l_uk_tto_value_set():
    states = list(EQ5D3L_STATES)
    result = score(eq5d_frame("eq5d3l", states), [REG["eq5d3l"]])
    np.testing.assert_allclose(result.data["eq5d3l_index"], [EQ5D3L_STATES[s] for s in states], atol=5e-4)


def test_eq5d_index_missing_when_any_dimension_missing_and_level_out_of_range_flagged():
    frame = eq5d_frame("eq5d5l", ["11111", "21111"])
    frame.loc[0, "eq5d5l_ad"] = np.nan
    frame.loc[1, "eq5d5l_mo"] = 7
    result = score(frame, [REG["eq5d5l"]])
    assert result.data["eq5d5l_index"].isna().all()
    qa = result.qa[result.qa.reason == "out_of_range"]
    assert list(qa.variable) == ["eq5d5l_mo"] and list(qa.value) == ["7"] and list(qa.row) == [2]
    assert qa.iloc[0].expected == "a whole number from 1 to 5"


def test_user_value_set_state_table_replaces_shipped_and_is_named(tmp_path):
    path = tmp_path / "crosswalk.csv"
    path.write_text("state,value\n11111,1\n21111,0.879\n55555,-0.594\n")
    vs = load_value_set_csv(path, REG["eq5d5l"])
    frame = eq5d_frame("eq5d5l", ["11111", "21111", "55555", "12111"])
    result = score(frame, [REG["eq5d5l"]], value_sets={"eq5d5l": vs})
    values = result.data["eq5d5l_index"].to_numpy()
    np.testing.assert_allclose(values[:3], [1, 0.879, -0.594])
    assert np.isnan(values[3])  # 12111 is not in the table
    row = result.scales.set_index("column").loc["eq5d5l_index"]
    assert row.value_set == "crosswalk.csv (user-supplied)"
    assert "1 complete state(s) not in the value set table" in row.notes
    assert not row.verified


def test_icecap_index_needs_a_tariff_and_uses_one_when_given(tmp_path):
    frame = pd.DataFrame({f"icecap_a_{a}": [1, 4, 2] for a in
                          ["stability", "attachment", "autonomy", "achievement", "enjoyment"]})
    with pytest.raises(CpevalError) as err:
        score(frame, [REG["icecap_a"]])
    assert str(err.value) == (
        "icecap_a: scale icecap_a_index needs a tariff/value set table and none is shipped; pass one with "
        "--value-set icecap_a=FILE.csv (columns state,value or dimension,level,value), or leave this instrument "
        "out with --instrument")
    # a made-up additive tariff (not the real one): each attribute level L is worth (L-1)/15, so 44444 = 1
    lines = ["attribute,level,value"] + [f"{a},{lvl},{(lvl - 1) / 15}" for a in
                                         ["stability", "attachment", "autonomy", "achievement", "enjoyment"]
                                         for lvl in range(1, 5)]
    path = tmp_path / "tariff.csv"
    path.write_text("\n".join(lines) + "\n")
    result = score(frame, [REG["icecap_a"]], value_sets={"icecap_a": load_value_set_csv(path, REG["icecap_a"])})
    np.testing.assert_allclose(result.data["icecap_a_index"], [0.0, 1.0, 5 / 15])


# ------------------------------------------------------------------------------------------ RG-UK, SCOPE, CPIFS


def test_rguk_counts_yes_answers_with_up_to_two_missing():
    yes_10 = [1] * 10 + [0] * 17
    two_missing = [1] * 5 + [np.nan, np.nan] + [0] * 20
    three_missing = [np.nan] * 3 + [1] * 24
    frame = pd.DataFrame([yes_10, two_missing, three_missing], columns=[f"rguk_{i}" for i in range(1, 28)])
    result = score(frame, [REG["rguk"]])
    total = result.data["rguk_total"].to_numpy()
    assert total[0] == 10 and total[1] == 5 and np.isnan(total[2])
    assert result.data.loc[0, "rguk_domestic"] == 7  # items 1-7 in the placeholder map


def test_scope_reverse_scores_satisfaction_and_overall_is_percent_of_maximum():
    doms = ["leisure", "housing", "safety", "work", "finances", "education", "family", "health"]
    row = {f"scope_sat_{d}": 1 for d in doms}  # delighted everywhere -> reversed 7 -> 100%
    row.update({f"scope_opp_{d}": 3 for d in doms})  # middle of 1-5 -> 50%
    result = score(pd.DataFrame([row]), [REG["scope"]])
    assert result.data.loc[0, "scope_satisfaction"] == 7
    assert result.data.loc[0, "scope_opportunities"] == 3
    assert result.data.loc[0, "scope_overall"] == pytest.approx(75.0)  # mean of eight 100s and eight 50s


def test_cpifs_total_is_mean_of_domain_means():
    items = {"com": [9, 9, 9, 9], "ass": [1, 1, 1], "pla": [5, 5, 5], "par": [3, 4, 5], "rel": [2, 2, 2, np.nan]}
    row = {f"cpifs_su_{d}{i + 1}": v for d, vals in items.items() for i, v in enumerate(vals)}
    result = score(pd.DataFrame([row]), [REG["cpifs_su"]])
    got = result.data.iloc[0]
    assert [got[f"cpifs_su_{d}"] for d in items] == [9, 1, 5, 4, 2]
    assert got["cpifs_su_total"] == pytest.approx((9 + 1 + 5 + 4 + 2) / 5)


# ------------------------------------------------------------------------------------------------------- QA


def test_every_odd_value_becomes_a_qa_record_and_the_row_is_kept():
    frame = pd.DataFrame({
        "participant_id": ["a", "b", "c", "d", "e"],
        "timepoint": ["baseline"] * 5,
        "source_row": [11, 12, 13, 14, 15],
        "eq5d5l_mo": ["1", "two", " 3", "-9", "2.5"],  # text column as read from a messy CSV
        "eq5d5l_sc": [1, 1, 1, 1, 1], "eq5d5l_ua": [1, 1, 1, 1, 1], "eq5d5l_pd": [1, 1, 1, 1, 1],
        "eq5d5l_ad": [1, 1, 1, 1, 1], "eq5d5l_vas": [50, 101, 70, 80, 90],
    })
    result = score(frame, [REG["eq5d5l"]], source="visit1.csv")
    assert len(result.data) == 5
    assert list(result.qa.columns) == QA_COLUMNS
    got = {(r.participant_id, r.variable, r.value, r.reason) for r in result.qa.itertuples()}
    assert got == {
        ("b", "eq5d5l_mo", "two", "not_numeric"),
        ("d", "eq5d5l_mo", "-9", "missing_code"),
        ("e", "eq5d5l_mo", "2.5", "not_integer"),
        ("b", "eq5d5l_vas", "101", "out_of_range"),
    }
    rec = result.qa[result.qa.reason == "not_numeric"].iloc[0]
    assert (rec.source, rec.row, rec.timepoint, rec.expected, rec.action) == (
        "visit1.csv", 12, "baseline", "a whole number from 1 to 5", "treated as missing")
    index = result.data["eq5d5l_index"].to_numpy()
    assert index[0] == 1.0 and index[2] == pytest.approx(1 - 0.076) and np.isnan(index[[1, 3, 4]]).all()


def test_absent_item_column_is_reported_once_not_per_row():
    frame = eq5d_frame("eq5d5l", ["11111"])  # no eq5d5l_vas
    result = score(frame, [REG["eq5d5l"]])
    absent = result.qa[result.qa.reason == "column_absent"]
    assert list(absent.variable) == ["eq5d5l_vas"]
    assert result.scales.set_index("column").loc["eq5d5l_vas_score", "n_no_data"] == 1


def test_select_instruments_errors_name_the_problem():
    with pytest.raises(CpevalError, match="unknown instrument 'wembws'; expected one of cpifs_su, cpifs_w"):
        select_instruments(["wemwbs_1"], REG, ["wembws"])
    with pytest.raises(CpevalError, match=r"instrument eq5d5l: none of its item columns \(eq5d5l_mo ... eq5d5l_vas\)"):
        select_instruments(["wemwbs_1"], REG, ["eq5d5l"])


def test_rescoring_a_scored_file_replaces_old_scores():
    first = score(wemwbs_frame([[3] * 14]), [REG["wemwbs"]]).data
    first.loc[0, "wemwbs_total"] = 99  # a stale score in the input
    again = score(first, [REG["wemwbs"]])
    assert list(again.data.columns).count("wemwbs_total") == 1
    assert again.data.loc[0, "wemwbs_total"] == 42
    assert "replaced the column" in again.scales.set_index("column").loc["wemwbs_total", "notes"]


# ---------------------------------------------------------------------------------------- properties


ITEM_VALUES = st.one_of(st.integers(-10, 8).map(float), st.just(np.nan), st.floats(0, 6, allow_nan=False))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(ITEM_VALUES, min_size=14, max_size=14), min_size=1, max_size=40))
def test_no_row_lost_scores_in_range_and_every_invalid_value_in_qa(rows):
    frame = wemwbs_frame(rows)
    frame.insert(0, "participant_id", [f"p{i}" for i in range(len(rows))])
    result = score(frame, [REG["wemwbs"], REG["swemwbs"]])
    out = result.data
    assert len(out) == len(frame)
    pd.testing.assert_frame_equal(out[frame.columns], frame)  # every input column kept, unchanged
    for column, lo, hi in [("wemwbs_total", 14, 70), ("swemwbs_raw", 7, 35), ("swemwbs_metric", 7, 35)]:
        values = out[column].dropna()
        assert ((values >= lo) & (values <= hi)).all()
    # every non-missing value that is not a whole number 1..5 has exactly one QA record
    values = frame[[f"wemwbs_{i}" for i in range(1, 15)]].to_numpy()
    invalid = ~np.isnan(values) & ~np.isin(values, [1, 2, 3, 4, 5])
    assert invalid.sum() == len(result.qa)
    assert list(result.scales.columns) == SCALE_SUMMARY_COLUMNS


def test_threaded_scoring_of_a_big_table_equals_sequential(monkeypatch):
    # tables from _PARALLEL_ROWS rows on are validated and scored on two threads; results must not change
    import cpeval.scoring as scoring_module

    rng = np.random.default_rng(5)
    n = scoring_module._PARALLEL_ROWS
    frame = pd.DataFrame({f"wemwbs_{i}": rng.integers(0, 7, n).astype(float) for i in range(1, 15)})
    frame.loc[rng.choice(n, 500, replace=False), "wemwbs_3"] = np.nan
    for d in DIMS:
        frame[f"eq5d5l_{d}"] = rng.integers(1, 6, n)
    instruments = [REG["wemwbs"], REG["swemwbs"], REG["eq5d5l"]]
    threaded = score(frame, instruments)
    monkeypatch.setattr(scoring_module, "_PARALLEL_ROWS", n + 1)
    sequential = score(frame, instruments)
    pd.testing.assert_frame_equal(threaded.data, sequential.data)
    pd.testing.assert_frame_equal(threaded.qa, sequential.qa)
    pd.testing.assert_frame_equal(threaded.scales, sequential.scales)
    assert len(threaded.qa) > 1000  # values 0 and 6 are out of range: plenty of QA records to order
