"""Costs and cost-effectiveness (cpeval.costs): hand-computed costs, bootstrap invariants, CE summaries, errors.

Reference values are worked by hand in the comments (unit costs from analysis/unit_costs_pssru_example.csv; the
illustrative demo index 2013 = 100, 2013/14 = 101.5). R boot comparisons are in test_costs_reference.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpeval.costs import (
    acceptability_curve,
    adjusted_difference,
    analyse_costs,
    icer_statement,
    inflation_factor,
    load_price_index,
    load_unit_costs,
    mean_difference,
    percentile_interval,
    quadrant_shares,
    two_stage_counts,
)
from cpeval.errors import CpevalError
from cpeval.plan import Design, Plan, load_plan, parse_cost_settings
from cpeval.resources import analysis_dir

SERVICES = {"gp_surgery": {"contacts": "csri_gp"}, "cmht_contact": {"contacts": "csri_cmht"},
            "community_specialist_nurse": {"contacts": "csri_csn", "minutes_per_contact": "csri_csnmin"}}


def _settings(**over):
    raw = {"unit_costs": "unit_costs_pssru_example.csv", "price_year": "2013/14",
           "price_index": "demo_price_index.csv", "services": SERVICES,
           "bootstrap": {"replicates": 999, "seed": 11}}
    raw.update(over)
    return parse_cost_settings(raw, str(analysis_dir() / "plan.yaml"))


def _plan(settings, imputations=None):
    from cpeval.plan import MissingData

    md = MissingData(enabled=imputations is not None, imputations=imputations or 20, seed=5)
    return Plan(design=Design(site=None), primary="rguk_total", costs=settings, missing_data=md)


def _tiny():
    """Two teams per arm, two people per team; hand-checkable numbers."""
    rows = []
    spec = [  # pid, team, arm, (gp, cmht, csn, csnmin) at baseline, same at follow-up, u0, u1, e0, e1
        (1, 1, "implementation", (1, 2, 0, 0), (3, 4, 2, 45), 0.6, 0.8, 10, 14),
        (2, 1, "implementation", (0, 1, 0, 0), (1, 2, 0, 0), 0.5, 0.5, 8, 9),
        (3, 3, "implementation", (2, 0, 0, 0), (2, 1, 1, 60), 0.7, 0.9, 12, 15),
        (4, 3, "implementation", (1, 1, 0, 0), (0, 0, 0, 0), 0.4, 0.6, 5, 8),
        (5, 2, "control", (2, 3, 0, 0), (2, 2, 0, 0), 0.6, 0.6, 11, 11),
        (6, 2, "control", (4, 1, 0, 0), (3, 3, 0, 0), 0.5, 0.4, 9, 8),
        (7, 4, "control", (1, 0, 1, 30), (1, 1, 0, 0), 0.8, 0.7, 13, 13),
        (8, 4, "control", (0, 2, 0, 0), (2, 0, 0, 0), 0.3, 0.5, 6, 7),
    ]
    for pid, team, arm, b, f, u0, u1, e0, e1 in spec:
        for tp, use, u, e in (("baseline", b, u0, e0), ("follow_up", f, u1, e1)):
            rows.append(dict(participant_id=pid, team_id=team, arm=arm, timepoint=tp, csri_gp=use[0],
                             csri_cmht=use[1], csri_csn=use[2], csri_csnmin=use[3], eq5d5l_index=u, rguk_total=e))
    return pd.DataFrame(rows)


IMPLEMENTATION = [{"team": 1, "training": 2000, "supervision": 1000, "caseload": 150},
                  {"team": 3, "training": 1500, "caseload": 100}]


@pytest.fixture(scope="module")
def tiny_analysis():
    settings = _settings(implementation_costs=IMPLEMENTATION)
    return analyse_costs(_tiny(), _plan(settings))


# ---------------------------------------------------------------------------------------------- unit costs


def test_shipped_unit_costs_match_the_reference_table():
    # instruments.md, "CSRI and unit costs": the seven PSSRU figures and their price years
    table = load_unit_costs(analysis_dir() / "unit_costs_pssru_example.csv").set_index("service")
    expected = {"gp_surgery": (45, "2013"), "gp_telephone": (27, "2013"), "gp_home_visit": (114, "2013"),
                "practice_nurse": (13, "2013"), "cmht_member_hour": (37, "2013/14"),
                "cmht_contact": (128, "2013/14"), "community_specialist_nurse": (43, "2013/14")}
    assert {s: (table.loc[s, "cost"], table.loc[s, "price_year"]) for s in expected} == expected
    assert table.loc["community_specialist_nurse", "unit"] == "hour"


def test_price_index_converts_to_the_plan_price_year():
    index = load_price_index(analysis_dir() / "demo_price_index.csv")
    assert inflation_factor("2013", "2013/14", index, "x", "i") == pytest.approx(101.5 / 100)
    assert inflation_factor("2013/14", "2013/14", None, "x", "i") == 1.0
    with pytest.raises(CpevalError, match=r"x is in price year '2013' but the plan's price_year is '2013/14'; "
                                          r"expected a price_index"):
        inflation_factor("2013", "2013/14", None, "x", "i")
    with pytest.raises(CpevalError, match=r"i: no index for price year '2019/20' \(needed for x\)"):
        inflation_factor("2019/20", "2013/14", index, "x", "i")


@pytest.mark.parametrize("row, message", [
    ("gp,visit,45,2013,PSSRU", r"line 2: unit of 'gp' is 'visit'; expected one of contact, hour, minute, day"),
    ("gp,contact,-1,2013,PSSRU", r"line 2: cost of 'gp' is '-1'; expected a number of 0 or more"),
    ("gp,contact,45,,PSSRU", r"line 2: column price_year of 'gp' is empty"),
    ("gp,contact,45,2013,PSSRU\ngp,contact,27,2013,PSSRU", r"line 3: service 'gp' appears again \(first on line 2\)"),
])
def test_unit_cost_errors_name_file_line_and_value(tmp_path, row, message):
    path = tmp_path / "uc.csv"
    path.write_text("service,unit,cost,price_year,source\n" + row + "\n")
    with pytest.raises(CpevalError, match=message):
        load_unit_costs(path)


def test_unit_cost_table_without_required_columns(tmp_path):
    path = tmp_path / "uc.csv"
    path.write_text("service,cost\ngp,45\n")
    with pytest.raises(CpevalError, match=r"uc.csv: column\(s\) unit, price_year, source missing"):
        load_unit_costs(path)


# ---------------------------------------------------------------------------------------------- costs


def test_costs_per_participant_and_period_by_hand(tiny_analysis):
    a = tiny_analysis
    f = 1.015  # GP costs are 2013 prices, brought to 2013/14 with the demo index
    period = a.period_costs.set_index(["participant", "timepoint"])
    # participant 1 at follow-up: 3 GP x 45 x 1.015 + 4 CMHT x 128 + 2 CSN contacts x 45 min = 1.5 h x 43
    assert period.loc[(1, "follow_up"), "cost_primary_care"] == pytest.approx(3 * 45 * f)
    assert period.loc[(1, "follow_up"), "cost_community_mental_health"] == pytest.approx(512)
    assert period.loc[(1, "follow_up"), "cost_community_health"] == pytest.approx(64.5)
    assert period.loc[(1, "follow_up"), "service_cost"] == pytest.approx(3 * 45 * f + 512 + 64.5)
    # participant 7 at baseline: 1 GP + 1 CSN contact of 30 minutes (0.5 h x 43)
    assert period.loc[(7, "baseline"), "service_cost"] == pytest.approx(45 * f + 21.5)
    # implementation: team 1 (2000 + 1000) / 150 = 20 per participant; team 3 1500 / 100 = 15; control 0
    frame = a.frame.set_index("participant")
    assert frame.loc[[1, 2, 3, 4, 5], "implementation_cost"].tolist() == pytest.approx([20, 20, 15, 15, 0])
    assert frame.loc[1, "total_cost"] == pytest.approx(3 * 45 * f + 512 + 64.5 + 20)
    # QALYs: 6 months x (0.6 + 0.8) / 2 = 0.35
    assert frame.loc[1, "qaly"] == pytest.approx(0.35)


def test_point_estimates_by_hand(tiny_analysis):
    a = tiny_analysis
    frame = a.frame
    treated = frame["arm"] == "implementation"
    plain = frame.loc[treated, "total_cost"].mean() - frame.loc[~treated, "total_cost"].mean()
    cc = a.results[a.results["analysis"] == "complete_case"].set_index("quantity")
    assert cc.loc["cost difference, unadjusted (difference in mean total cost)", "estimate"] == pytest.approx(plain)
    # adjusted: OLS of total cost on arm and baseline cost (numpy least squares as the reference)
    X = np.column_stack([np.ones(8), treated, frame["baseline_cost"]])
    beta = np.linalg.lstsq(X, frame["total_cost"], rcond=None)[0]
    assert cc.loc["cost difference, adjusted for baseline service cost", "estimate"] == pytest.approx(beta[1])
    Xq = np.column_stack([np.ones(8), treated, frame["u0"]])
    dq = np.linalg.lstsq(Xq, frame["qaly"], rcond=None)[0][1]
    assert cc.loc["QALY difference, adjusted for baseline utility", "estimate"] == pytest.approx(dq)
    # incremental net benefit = lambda x dQ - dC
    assert cc.loc["incremental net benefit at £20,000 per QALY", "estimate"] == pytest.approx(20000 * dq - beta[1])


def test_reference_and_comparator_are_labelled(tiny_analysis):
    table = tiny_analysis.service_use
    assert set(zip(table["arm"], table["role"])) == {("implementation", "comparator"), ("control", "reference")}
    assert "implementation (comparator) minus control (reference)" in tiny_analysis.methods


def test_service_use_table_by_hand(tiny_analysis):
    t = tiny_analysis.service_use.set_index(["service", "timepoint", "arm"])
    row = t.loc[("gp_surgery", "follow_up", "implementation")]
    # follow-up GP contacts in the implementation arm: 3, 1, 2, 0 -> 3 users of 4, mean 1.5 contacts
    assert (row["n"], row["users"], row["mean_quantity"]) == (4, 3, 1.5)
    assert row["mean_cost"] == pytest.approx(1.5 * 45 * 1.015)


def test_negative_service_use_is_a_qa_record_and_missing():
    data = _tiny()
    data.loc[(data["participant_id"] == 2) & (data["timepoint"] == "follow_up"), "csri_cmht"] = -3
    a = analyse_costs(data, _plan(_settings(implementation_costs=IMPLEMENTATION)), source="study.sav")
    assert len(a.qa) == 1
    rec = a.qa.iloc[0]
    assert (rec["source"], rec["participant_id"], rec["timepoint"], rec["variable"], rec["value"], rec["reason"]) \
        == ("study.sav", 2, "follow_up", "csri_cmht", "-3", "out_of_range")
    period = a.period_costs.set_index(["participant", "timepoint"])
    assert math.isnan(period.loc[(2, "follow_up"), "service_cost"])  # missing, never zero
    assert not math.isnan(period.loc[(2, "baseline"), "service_cost"])


def test_long_service_use_gives_the_same_costs_as_wide(tmp_path, tiny_analysis):
    data = _tiny()
    rows = []
    for r in data.itertuples():
        rows.append(dict(participant_id=r.participant_id, timepoint=r.timepoint, service="none"))
        for service, col in (("gp_surgery", "csri_gp"), ("cmht_contact", "csri_cmht")):
            if getattr(r, col):
                rows.append(dict(participant_id=r.participant_id, timepoint=r.timepoint, service=service,
                                 contacts=getattr(r, col)))
        if r.csri_csn:
            rows.append(dict(participant_id=r.participant_id, timepoint=r.timepoint,
                             service="community_specialist_nurse", contacts=r.csri_csn,
                             minutes_per_contact=r.csri_csnmin))
    rows.append(dict(participant_id=999, timepoint="baseline", service="gp_surgery", contacts=1))  # unknown person
    pd.DataFrame(rows).to_csv(tmp_path / "use.csv", index=False)
    settings = parse_cost_settings({"unit_costs": "unit_costs_pssru_example.csv", "price_year": "2013/14",
                                    "price_index": "demo_price_index.csv", "service_use": "use.csv",
                                    "implementation_costs": IMPLEMENTATION,
                                    "bootstrap": {"replicates": 999, "seed": 11}}, str(tmp_path / "plan.yaml"))
    a = analyse_costs(data, _plan(settings))
    wide = tiny_analysis.frame.set_index("participant")
    long = a.frame.set_index("participant")
    assert long["total_cost"].to_numpy() == pytest.approx(wide["total_cost"].to_numpy())
    assert long["baseline_cost"].to_numpy() == pytest.approx(wide["baseline_cost"].to_numpy())
    # the row for an unknown participant is accounted for in the QA list
    assert a.qa[["participant_id", "reason", "action"]].values.tolist() == [[999, "unknown_participant",
                                                                             "row not used"]]


def test_unpriced_service_is_an_error_unless_excluded():
    services = dict(SERVICES, day_centre={"days": "csri_gp"})
    with pytest.raises(CpevalError, match=r"service\(s\) day_centre \(costs.services\) have no unit cost in .*"
                                          r"unit_costs_pssru_example.csv; expected a row for each, or "
                                          r"costs.exclude_unpriced: true"):
        analyse_costs(_tiny(), _plan(_settings(services=services, implementation_costs=IMPLEMENTATION)))
    a = analyse_costs(_tiny(), _plan(_settings(services=services, exclude_unpriced=True,
                                               implementation_costs=IMPLEMENTATION)))
    assert a.excluded_services == ["day_centre"]
    assert any("day_centre" in n for n in a.notes)


def test_unit_mismatch_is_an_error():
    services = dict(SERVICES, community_specialist_nurse={"contacts": "csri_csn"})  # costed per hour
    with pytest.raises(CpevalError, match=r"service 'community_specialist_nurse' is costed per hour, but its use is "
                                          r"recorded as contacts; expected contacts with minutes_per_contact"):
        analyse_costs(_tiny(), _plan(_settings(services=services, implementation_costs=IMPLEMENTATION)))


def test_every_implementation_team_needs_costs():
    with pytest.raises(CpevalError, match=r"implementation team\(s\) 3 have no implementation costs"):
        analyse_costs(_tiny(), _plan(_settings(implementation_costs=IMPLEMENTATION[:1])))
    with pytest.raises(CpevalError, match=r"team '9' is not in the data's team_id column"):
        analyse_costs(_tiny(), _plan(_settings(implementation_costs=IMPLEMENTATION + [{"team": 9, "x": 1}])))


def test_implementation_without_caseload_is_spread_over_participants_with_a_note():
    a = analyse_costs(_tiny(), _plan(_settings(implementation_costs=[{"team": 1, "training": 300},
                                                                     {"team": 3, "training": 100}])))
    frame = a.frame.set_index("participant")
    assert frame.loc[[1, 3], "implementation_cost"].tolist() == [150, 50]  # two participants per team
    assert any("spread over the team's study participants" in n for n in a.notes)


# ---------------------------------------------------------------------------------------------- bootstrap


def test_two_stage_counts_invariants():
    clusters = np.array([1, 1, 1, 2, 2, 3, 4, 4, 4, 4])
    strata = np.array(["a"] * 5 + ["b"] * 5)
    sizes = {1: 3, 2: 2, 3: 1, 4: 4}
    counts = two_stage_counts(clusters, strata, 500, np.random.default_rng(3))
    assert counts.shape == (500, 10)
    assert (counts >= 0).all()
    for r in counts[:100]:
        for stratum in ("a", "b"):
            members = strata == stratum
            drawn = set(clusters[members & (r > 0)])
            # people appear only from drawn clusters, and the stratum's total is a sum of 2 drawn clusters' sizes
            total = r[members].sum()
            options = {sizes[c1] + sizes[c2] for c1 in set(clusters[members]) for c2 in set(clusters[members])}
            assert total in options
            assert len(drawn) <= 2
    # the same seed gives the same replicates
    again = two_stage_counts(clusters, strata, 500, np.random.default_rng(3))
    assert (again == counts).all()


def test_weighted_statistics_equal_ols_on_the_expanded_data():
    rng = np.random.default_rng(0)
    y = rng.gamma(2, 500, 30)
    x = y * 0.5 + rng.normal(0, 100, 30)
    treated = np.arange(30) % 2 == 0
    y[3] = np.nan
    counts = rng.integers(0, 3, size=(5, 30))
    counts[:, :2] = 1  # both arms present
    for r, w in enumerate(counts):
        idx = np.repeat(np.arange(30), w)
        idx = idx[~np.isnan(y[idx])]
        X = np.column_stack([np.ones(idx.size), treated[idx], x[idx]])
        beta = np.linalg.lstsq(X, y[idx], rcond=None)[0]
        assert adjusted_difference(counts, y, treated, x)[r] == pytest.approx(beta[1], rel=1e-9)
        plain = y[idx][treated[idx]].mean() - y[idx][~treated[idx]].mean()
        assert mean_difference(counts, y, treated)[r] == pytest.approx(plain, rel=1e-12)


def test_adjusted_difference_without_one_arm_is_nan():
    w = np.array([[1, 1, 0, 0], [1, 1, 1, 1]])
    out = adjusted_difference(w, np.array([1.0, 2, 3, 5]), np.array([True, True, False, False]),
                              np.array([0.0, 1, 0, 2]))
    assert math.isnan(out[0]) and not math.isnan(out[1])


def test_percentile_interval_order_statistics_by_hand():
    # R = 19 replicates 1..19: (R + 1) x 0.05 = 1 and x 0.95 = 19 are whole numbers: t(1) and t(19)
    assert percentile_interval(np.arange(1.0, 20.0), 0.90) == (1.0, 19.0)
    # R = 39: (40) x 0.025 = 1 -> t(1) = 1 and 40 x 0.975 = 39 -> t(39) (in floating point (1 - 0.95) / 2 is a
    # hair above 0.025, so R and cpeval interpolate with a weight of ~1e-15: approx)
    assert percentile_interval(np.arange(1.0, 40.0), 0.95) == pytest.approx((1.0, 39.0), abs=1e-12)
    # R = 9 at 90%: 10 x 0.05 = 0.5 -> k = 0: the smallest replicate; 10 x 0.95 = 9.5 -> k = 9 = R: the largest
    assert percentile_interval(np.arange(1.0, 10.0), 0.90) == (1.0, 9.0)
    # interpolation on the normal scale: R = 4, 90%: 5 x 0.05 = 0.25 -> t(1); 5 x 0.95 = 4.75 -> k = 4 = R -> t(4)
    # R = 49 at 90%: 50 x 0.05 = 2.5: t(2) + (qnorm(.05) - qnorm(2/50)) / (qnorm(3/50) - qnorm(2/50)) (t(3) - t(2))
    from scipy.stats import norm
    weight = (norm.ppf(0.05) - norm.ppf(2 / 50)) / (norm.ppf(3 / 50) - norm.ppf(2 / 50))
    assert percentile_interval(np.arange(1.0, 50.0) ** 2, 0.90)[0] == pytest.approx(4 + weight * (9 - 4))
    # non-finite replicates are dropped (R = 19 again)
    assert percentile_interval(np.r_[np.arange(1.0, 20.0), np.nan, np.inf], 0.90) == (1.0, 19.0)


def test_bootstrap_is_reproducible_and_centred_on_the_plain_difference(tiny_analysis):
    a = tiny_analysis
    again = analyse_costs(_tiny(), _plan(_settings(implementation_costs=IMPLEMENTATION)))
    assert again.replicates.equals(a.replicates)
    other = analyse_costs(_tiny(), _plan(_settings(implementation_costs=IMPLEMENTATION,
                                                   bootstrap={"replicates": 999, "seed": 12})))
    assert not other.replicates.equals(a.replicates)
    # the mean of the replicates of the unadjusted difference is the plain difference, up to Monte Carlo error
    # (4 standard errors of a mean of 999 replicates)
    reps = a.replicates["cost_unadjusted"].dropna()
    cc = a.results[a.results["analysis"] == "complete_case"].set_index("quantity")
    plain = cc.loc["cost difference, unadjusted (difference in mean total cost)", "estimate"]
    assert abs(reps.mean() - plain) < 4 * reps.std() / math.sqrt(len(reps))


def test_ceac_at_zero_is_the_share_of_replicates_with_a_cost_saving(tiny_analysis):
    a = tiny_analysis
    reps = a.replicates.dropna(subset=["delta_cost", "delta_qaly"])
    assert a.ceac.iloc[0]["threshold"] == 0
    assert a.ceac.iloc[0]["probability_cost_effective"] == pytest.approx((reps["delta_cost"] < 0).mean())
    shares = a.quadrants[a.quadrants["plane"] == "QALY"].set_index("quadrant")["share"]
    assert shares.sum() == pytest.approx(1.0)
    assert shares["SE"] + shares["SW"] == pytest.approx((reps["delta_cost"] <= 0).mean())
    # thresholds include the INB thresholds, and the curve at 20,000 matches the INB replicates
    at = a.ceac.set_index("threshold")["probability_cost_effective"]
    assert at[20000] == pytest.approx((20000 * reps["delta_qaly"] - reps["delta_cost"] > 0).mean())


def test_acceptability_and_quadrants_by_hand():
    dq = np.array([0.1, -0.1, 0.2, 0.05])
    dc = np.array([100.0, 50.0, -10.0, 5000.0])
    curve = acceptability_curve(dq, dc, [0, 1000, 30000])
    # at 0: only the saving (-10); at 1000: 100 < 100? no (equal is not positive) -> saving only; at 30000:
    # 3000 - 100 > 0, -3000 - 50 < 0, 6000 + 10 > 0, 1500 - 5000 < 0 -> 2 of 4
    assert curve["probability_cost_effective"].tolist() == [0.25, 0.25, 0.5]
    assert quadrant_shares(dq, dc) == {"NE": 0.5, "NW": 0.25, "SE": 0.25, "SW": 0.0}


@pytest.mark.parametrize("dc, de, value, words", [
    (1000, 0.05, 20000, "north-east"),
    (-1000, -0.05, 20000, "south-west"),
    (-1000, 0.05, None, "dominant"),
    (1000, -0.05, None, "dominated"),
])
def test_icer_only_where_meaningful(dc, de, value, words):
    ratio, text = icer_statement(dc, de)
    assert (ratio == pytest.approx(value)) if value else math.isnan(ratio)
    assert words in text


# ---------------------------------------------------------------------------------------------- missing data


def test_multiple_imputation_reports_what_was_imputed():
    data = _tiny()
    data.loc[(data["participant_id"] == 4) & (data["timepoint"] == "follow_up"), "csri_gp"] = np.nan
    data.loc[(data["participant_id"] == 6) & (data["timepoint"] == "follow_up"), "eq5d5l_index"] = np.nan
    a = analyse_costs(data, _plan(_settings(implementation_costs=IMPLEMENTATION, bootstrap={"replicates": 199}),
                                  imputations=5))
    assert a.imputed_counts == {"total_cost": 1, "baseline_cost": 0, "u0": 0, "u1": 1, "e0": 0, "e1": 0}
    mi = a.results[a.results["analysis"] == "multiple_imputation"]
    assert set(mi["imputations"]) == {5}
    assert (mi["n_participants_treatment"] == 4).all() and (mi["n_participants_control"] == 4).all()
    assert mi["notes"].str.contains("values imputed: total_cost 1, u1 1").all()
    cc = a.results[a.results["analysis"] == "complete_case"].set_index("quantity")
    assert cc.loc["cost difference, unadjusted (difference in mean total cost)", "n_participants_treatment"] == 3


# ---------------------------------------------------------------------------------------------- plan


@pytest.mark.parametrize("raw, message", [
    ({"price_year": "2013/14", "services": SERVICES}, r"key 'costs.unit_costs' is None; expected a value"),
    ({"unit_costs": "u.csv", "price_year": "2013/14"}, r"key 'costs.services'.*either services"),
    ({"unit_costs": "u.csv", "price_year": "x", "services": {"gp": {"visits": "c"}}},
     r"key 'costs.services.gp.visits' is None; expected one of contacts"),
    ({"unit_costs": "u.csv", "price_year": "x", "services": SERVICES, "bootstrap": {"replicates": 10}},
     r"costs.bootstrap.replicates' is 10; expected a whole number from 99"),
    ({"unit_costs": "u.csv", "price_year": "x", "services": SERVICES, "inb_thresholds": "20000"},
     r"costs.inb_thresholds' is '20000'"),
    ({"unit_costs": "u.csv", "price_year": "x", "services": SERVICES, "discount": 0.035},
     r"key 'costs.discount' is None; expected only"),
])
def test_plan_costs_errors(raw, message):
    with pytest.raises(CpevalError, match=message):
        parse_cost_settings(raw, "plan.yaml")


def test_plan_file_with_costs(tmp_path):
    path = tmp_path / "plan.yaml"
    path.write_text("costs:\n  unit_costs: mine.csv\n  price_year: '2013/14'\n  services:\n"
                    "    gp_surgery: {contacts: csri_gp}\n")
    plan = load_plan(path)
    assert plan.costs.replicates == 2000 and plan.costs.inb_thresholds == (20000.0, 30000.0)
    assert Path(plan.costs.base_dir) == tmp_path
    with pytest.raises(CpevalError, match=r"costs.unit_costs file 'mine.csv' not found"):
        analyse_costs(_tiny(), Plan(design=Design(site=None), costs=plan.costs, source=str(path)))


def test_no_follow_up_utilities_in_one_arm_gives_notes_not_numbers():
    data = _tiny()
    data.loc[(data["arm"] == "control") & (data["timepoint"] == "follow_up"), "eq5d5l_index"] = np.nan
    a = analyse_costs(data, _plan(_settings(implementation_costs=IMPLEMENTATION, bootstrap={"replicates": 199})))
    cc = a.results.set_index("key")
    assert math.isnan(cc.loc["qaly_adjusted", "estimate"]) and math.isnan(cc.loc["inb_20000", "conf_low"])
    assert "199 replicate(s) could not be computed" in cc.loc["qaly_adjusted", "notes"]
    assert not math.isnan(cc.loc["cost_unadjusted", "estimate"])  # costs are still compared
    assert a.ceac["probability_cost_effective"].isna().all()  # unknown, not 0
    assert cc.loc["icer", "notes"].startswith("not estimated")
    assert any("cost-effectiveness analysis could not be done" in n for n in a.notes)


def test_long_service_use_through_a_variable_map(tmp_path, tiny_analysis):
    # an SPSS-style long export: ID, TIME coded 1/2, SERVICE, CONTACTS, MINS; renamed by a long variable map
    rows = []
    for r in _tiny().itertuples():
        time = 1 if r.timepoint == "baseline" else 2
        rows.append(dict(ID=r.participant_id, TIME=time, SERVICE="none", CONTACTS=None, MINS=None))
        rows.append(dict(ID=r.participant_id, TIME=time, SERVICE="gp_surgery", CONTACTS=r.csri_gp, MINS=None))
        rows.append(dict(ID=r.participant_id, TIME=time, SERVICE="cmht_contact", CONTACTS=r.csri_cmht, MINS=None))
        rows.append(dict(ID=r.participant_id, TIME=time, SERVICE="community_specialist_nurse", CONTACTS=r.csri_csn,
                         MINS=r.csri_csnmin))
    pd.DataFrame(rows).to_csv(tmp_path / "use.csv", index=False)
    (tmp_path / "use_map.yaml").write_text(
        "format: long\nfixed: {ID: participant_id, SERVICE: service, CONTACTS: contacts, MINS: minutes_per_contact}\n"
        "timepoint_column: TIME\ntimepoint_values: {1: baseline, 2: follow_up}\n")
    settings = parse_cost_settings({"unit_costs": "unit_costs_pssru_example.csv", "price_year": "2013/14",
                                    "price_index": "demo_price_index.csv", "service_use": "use.csv",
                                    "service_use_map": "use_map.yaml", "implementation_costs": IMPLEMENTATION,
                                    "bootstrap": {"replicates": 199, "seed": 11}}, str(tmp_path / "plan.yaml"))
    a = analyse_costs(_tiny(), _plan(settings))
    assert a.frame["total_cost"].to_numpy() == pytest.approx(tiny_analysis.frame["total_cost"].to_numpy())
    assert a.frame["baseline_cost"].to_numpy() == pytest.approx(tiny_analysis.frame["baseline_cost"].to_numpy())
