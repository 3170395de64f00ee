"""Outcome models on the demo study checked against R lme4/lmerTest, plus Rubin's rules and MICE by hand.

Reference values: tests/data/outcomes/lmer_reference.csv, written by tests/r/outcomes_reference.R (R 4.2.2,
lme4 1.1.31, lmerTest 3.1.3, REML, Satterthwaite df) from the analysis frames that tests/make_outcomes_data.py
builds with cpeval from the demo study (seed 2024). The tests rebuild those frames and check they are unchanged,
so a change in data preparation cannot hide behind stale references.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpeval.imputation import mice_pmm, rubin_pool
from cpeval.outcomes import (MODEL_IMPUTED, MODEL_LONGITUDINAL, MODEL_PRIMARY, RECORD_COLUMNS, ancova_frame,
                             compare_outcomes, fit_longitudinal, fit_primary, longitudinal_frame)
from cpeval.plan import load_plan
from cpeval.resources import analysis_dir

DATA = Path(__file__).parent / "data" / "outcomes"
REFERENCE = pd.read_csv(DATA / "lmer_reference.csv").set_index(["outcome", "model"])
PLAN = load_plan(analysis_dir() / "demo_plan.yaml")


@pytest.fixture(scope="module")
def demo_data():
    from make_outcomes_data import demo_scored  # tests/ is on sys.path (conftest.py)

    return demo_scored()


@pytest.mark.parametrize("outcome", ["rguk_total", "eq5d5l_index"])
def test_analysis_frames_are_those_r_was_given(demo_data, outcome):
    pd.testing.assert_frame_equal(ancova_frame(demo_data, PLAN, outcome).reset_index(drop=True),
                                  pd.read_csv(DATA / f"ancova_{outcome}.csv"), check_dtype=False)
    pd.testing.assert_frame_equal(longitudinal_frame(demo_data, PLAN, outcome).reset_index(drop=True),
                                  pd.read_csv(DATA / f"long_{outcome}.csv"), check_dtype=False)


@pytest.mark.parametrize("outcome", ["rguk_total", "eq5d5l_index"])
def test_primary_model_matches_lmertest(demo_data, outcome):
    ref = REFERENCE.loc[(outcome, "primary")]
    rec = fit_primary(demo_data, PLAN, outcome)[0]
    assert rec["model"] == MODEL_PRIMARY and rec["df_method"] == "Satterthwaite"
    assert rec["estimate"] == pytest.approx(ref.estimate, rel=1e-4)
    assert rec["std_error"] == pytest.approx(ref.std_error, rel=1e-4)
    assert rec["df"] == pytest.approx(ref.df, rel=0.01)
    assert rec["p_value"] == pytest.approx(ref.p_value, abs=1e-3)
    assert rec["n_participants"] == ref.n and rec["n_clusters"] == 10


@pytest.mark.parametrize("outcome", ["rguk_total", "eq5d5l_index"])
def test_longitudinal_model_matches_lmertest(demo_data, outcome):
    ref = REFERENCE.loc[(outcome, "longitudinal")]
    rec = fit_longitudinal(demo_data, PLAN, outcome)[0]
    assert rec["model"] == MODEL_LONGITUDINAL
    assert rec["estimate"] == pytest.approx(ref.estimate, rel=1e-4)
    assert rec["std_error"] == pytest.approx(ref.std_error, rel=1e-4)
    assert rec["p_value"] == pytest.approx(ref.p_value, abs=1e-3)
    if ref.singular:
        # lme4 reports a singular fit (team variance 0). lmerTest then treats the variance as known and gives
        # Satterthwaite df close to n - p (107 here); cpeval uses between-within df instead (decision in
        # cpeval.mixed: with 10 teams, n - p df would overstate the evidence) and says so.
        assert "singular fit: team_id variance estimated as zero" in rec["notes"]
        assert rec["df_method"] == "between-within" and rec["df"] < ref.df
        assert f"R lmerTest would report Satterthwaite df {ref.df:.1f}" in rec["notes"]
    else:
        assert rec["df_method"] == "Satterthwaite"
        assert rec["df"] == pytest.approx(ref.df, rel=0.01)


def test_standardised_effect_uses_pooled_baseline_sd(demo_data):
    rec = compare_outcomes(demo_data, PLAN).records.set_index(["outcome", "model"]).loc[("rguk_total", MODEL_PRIMARY)]
    base = demo_data[demo_data.timepoint == "baseline"]
    groups = [base.loc[base.arm == a, "rguk_total"].dropna() for a in ("implementation", "control")]
    pooled = np.sqrt(sum((len(g) - 1) * g.var() for g in groups) / sum(len(g) - 1 for g in groups))
    assert rec["effect_size_sd"] == pytest.approx(pooled)
    assert rec["effect_size"] == pytest.approx(rec["estimate"] / pooled)
    assert 0 <= rec["icc"] < 1 and rec["icc_conf_low"] <= rec["icc"] <= rec["icc_conf_high"]


def test_compare_outcomes_gives_every_model_for_every_outcome(demo_data):
    records = compare_outcomes(demo_data, PLAN).records
    assert list(records.columns) == RECORD_COLUMNS
    assert len(records) == 3 * len(PLAN.outcomes)
    assert set(records["model"]) == {MODEL_PRIMARY, MODEL_LONGITUDINAL, MODEL_IMPUTED}
    imputed = records[records.model == MODEL_IMPUTED]
    assert (imputed["imputations"] == PLAN.missing_data.imputations).all()
    assert imputed["estimate"].notna().all()
    # more participants analysed after imputation than in the complete-case model
    primary = records[records.model == MODEL_PRIMARY].set_index("outcome")["n_participants"]
    assert (imputed.set_index("outcome")["n_participants"] > primary).all()


def test_one_team_per_arm_is_a_note_not_a_traceback(demo_data):
    one_team = demo_data[demo_data.team_id.isin(["Trust A implementation team", "Trust A control team"])]
    rec = fit_primary(one_team, PLAN, "rguk_total")[0]
    assert np.isnan(rec["estimate"])
    assert rec["notes"].startswith("only 1 team in the implementation arm")


def test_arm_without_follow_up_and_constant_outcome_are_notes(demo_data):
    no_fu = demo_data[~((demo_data.arm == "control") & (demo_data.timepoint == "follow_up"))]
    assert fit_primary(no_fu, PLAN, "rguk_total")[0]["notes"].startswith("no participants in the control arm")
    assert fit_longitudinal(no_fu, PLAN, "rguk_total")[0]["notes"] == (
        "one arm has no follow-up scores: the difference in change cannot be estimated")
    constant = demo_data.assign(rguk_total=5.0)
    assert fit_primary(constant, PLAN, "rguk_total")[0]["notes"] == (
        "rguk_total is constant at follow-up (5): nothing to compare")


def test_rubin_pool_by_hand():
    # m = 3: Q = (1, 2, 3) -> 2; W = (0.5+0.5+0.5)/3 = 0.5; B = 1; T = 0.5 + (4/3)*1 = 1.8333
    # lambda = 1.3333/1.8333 = 0.72727; df_old = 2/0.72727^2 = 3.78125
    # df_obs = (10+1)/(10+3)*10*(1-0.72727) = 2.30769; df = 1/(1/3.78125 + 1/2.30769) = 1.43314
    pooled = rubin_pool([1.0, 2.0, 3.0], [0.5, 0.5, 0.5], df_complete=10)
    assert pooled["estimate"] == 2.0
    assert pooled["std_error"] == pytest.approx(np.sqrt(1.833333333), rel=1e-8)
    assert pooled["fraction_missing_info"] == pytest.approx(0.7272727, rel=1e-6)
    assert pooled["df"] == pytest.approx(1.43314, rel=1e-4)
    same = rubin_pool([1.0, 1.0], [0.25, 0.25], df_complete=8)  # no between variance
    assert same["df"] == pytest.approx(9 / 11 * 8) and same["std_error"] == 0.5


def test_mice_pmm_imputes_observed_values_and_is_reproducible():
    rng = np.random.default_rng(1)
    x = rng.normal(size=300)
    y = np.round(2 * x + rng.normal(scale=0.5, size=300), 1)
    block = np.column_stack([y, x])
    missing = rng.random(300) < 0.3
    block[missing, 0] = np.nan
    first = mice_pmm(block, 5, np.random.default_rng(7))
    second = mice_pmm(block, 5, np.random.default_rng(7))
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    observed = set(block[~missing, 0])
    for completed in first:
        assert not np.isnan(completed).any()
        assert set(completed[missing, 0]) <= observed  # PMM only borrows observed values
        np.testing.assert_array_equal(completed[~missing], block[~missing])
        # imputations follow the regression: slope of imputed y on x near the true 2
        slope = np.polyfit(x[missing], completed[missing, 0], 1)[0]
        assert 1.6 < slope < 2.4
    assert not all(np.array_equal(first[0], c) for c in first[1:])  # imputations differ
