"""cpeval.fidelity: CPIFS scores, team summaries and bands, worker-service user agreement, reliability, and the
fidelity-outcome models.

Hand-built data give the expected numbers stated in each test; the ICC is checked against R psych 2.2.9
(tests/r/fidelity_reference.R on tests/data/fidelity/icc_pairs.csv, output stored in icc_reference.csv; the tests
never call R); the demo study (``cpeval demo``) checks the whole chain on realistic data.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pingouin
import pytest

from cpeval.errors import CpevalError
from cpeval.fidelity import (
    AGREEMENT_COLUMNS, DOMAINS, MODEL_COLUMNS, RELIABILITY_COLUMNS, SCORE_COLUMNS, TEAM_COLUMNS, band_scores,
    bland_altman, domain_reliability, fidelity_outcome_models, fidelity_scores, format_bands, icc_a1,
    parse_bands, team_fidelity, worker_service_user_agreement,
)
from cpeval.instruments import load_instruments
from cpeval.io import read_data
from cpeval.plan import load_plan

DATA = Path(__file__).parent / "data" / "fidelity"
BANDS = [{"label": "low", "max": 4.99}, {"label": "moderate", "max": 6.99}, {"label": "high"}]
ITEMS = {"com": 4, "ass": 3, "pla": 3, "par": 3, "rel": 4}


def _items(prefix: str, values: dict[str, list]) -> dict[str, list]:
    """Item columns ``<prefix>_<domain><i>``: values[domain] is one list per item over the rows."""
    out = {}
    for domain, n in ITEMS.items():
        for i in range(n):
            out[f"{prefix}_{domain}{i + 1}"] = values[domain][i]
    return out


def _const(rows: list[float]) -> dict[str, list]:
    """Every item of every domain equal to rows[r] in row r."""
    return {d: [list(rows) for _ in range(n)] for d, n in ITEMS.items()}


@pytest.fixture
def tiny():
    """3 workers (A, B in team T1; C in T2) and 5 service-user rows, items only (scored by cpeval).

    Worker A: com items 8, every other item 6 -> com 8, other domains 6, total (8 + 4 * 6) / 5 = 6.4.
    Worker B: every item 4, com1 missing -> com 4 (3 of 4 items; at most 1 may be missing), total 4,
              completeness 16 / 17.
    Worker C: every item 9 -> total 9.
    Service users: p1 (worker A, all items 5: total 5), p2 (worker 999, not a worker: all 7),
                   p3 (no worker: all 3), p4 (baseline row, no CPIFS answers: not a rater),
                   p5 (team T1 but worker C of team T2: all 8).
    """
    w_values = _const([6, 4, 9])
    w_values["com"] = [[8, 4, 9] for _ in range(4)]
    w_values["com"][0] = [8, np.nan, 9]
    workers = pd.DataFrame({"worker_id": ["A", "B", "C"], "team_id": ["T1", "T1", "T2"],
                            "arm": ["implementation"] * 2 + ["control"], **_items("cpifs_w", w_values)})
    su_values = _const([5, 7, 3, np.nan, 8])
    service_users = pd.DataFrame({
        "participant_id": [1, 2, 3, 4, 5], "team_id": ["T1", "T1", "T2", "T2", "T1"],
        "arm": ["implementation", "implementation", "control", "control", "implementation"],
        "timepoint": ["follow_up"] * 3 + ["baseline", "follow_up"],
        "worker_id": ["A", "999", None, "C", "C"], **_items("cpifs_su", su_values)})
    return workers, service_users


# ------------------------------------------------------------------------------------------------ fidelity_scores


def test_scores_by_hand(tiny):
    workers, service_users = tiny
    scores, qa = fidelity_scores(workers, service_users)
    assert list(scores.columns) == SCORE_COLUMNS
    assert len(scores) == 3 + 4  # p4 (baseline, nothing answered) is not a rater
    w = scores[scores["version"] == "W"].set_index("rater_id")
    assert w.loc["A", ["com", "ass", "pla", "par", "rel"]].tolist() == [8, 6, 6, 6, 6]
    assert w.loc["A", "total"] == pytest.approx(6.4)
    assert w.loc["B", "com"] == 4 and w.loc["B", "total"] == 4
    assert w.loc["B", "items_answered"] == 16 and w.loc["B", "n_items"] == 17
    assert w.loc["B", "completeness"] == pytest.approx(16 / 17)
    assert w.loc["C", "total"] == 9 and w.loc["C", "team"] == "T2"
    assert w["worker_linked"].all()
    su = scores[scores["version"] == "SU"].set_index("rater_id")
    assert su.index.tolist() == ["1", "2", "3", "5"]
    assert su["total"].tolist() == [5, 7, 3, 8]
    assert su["worker_linked"].tolist() == [True, False, False, True]
    assert su["examples"].isna().all()
    # QA: the unlinked service users are listed (never dropped), and the cross-team link
    assert qa.set_index("participant_id")["reason"].to_dict() == {
        "2": "worker_not_found", "3": "worker_missing", "5": "worker_other_team"}
    assert qa.loc[qa["participant_id"] == "2", "value"].item() == "999"
    assert qa.loc[qa["participant_id"] == "2", "row"].item() == 2


def test_scores_use_scored_columns_when_present(tiny):
    workers, service_users = tiny
    workers = workers.assign(cpifs_w_com=[1.0, 2.0, 3.0], cpifs_w_ass=1.0, cpifs_w_pla=1.0, cpifs_w_par=1.0,
                             cpifs_w_rel=1.0, cpifs_w_total=[1.0, 1.2, 1.4], cpifs_w_examples=np.nan)
    scores, _ = fidelity_scores(workers, service_users)
    w = scores[scores["version"] == "W"]
    assert w["com"].tolist() == [1, 2, 3] and w["total"].tolist() == [1, 1.2, 1.4]
    # scores without the practice-example column and without items: used as they are, examples NA
    only_scores = workers.drop(columns=[c for c in workers if c.startswith("cpifs_w_") and c[-1].isdigit()]
                               + ["cpifs_w_examples"])
    scores, _ = fidelity_scores(only_scores, service_users)
    w = scores[scores["version"] == "W"]
    assert w["total"].tolist() == [1, 1.2, 1.4] and w["examples"].isna().all()
    assert w["items_answered"].isna().all() and w["completeness"].isna().all()


def test_worker_without_team_is_named(tiny):
    workers, service_users = tiny
    workers.loc[1, "team_id"] = None
    with pytest.raises(CpevalError, match="workers: worker B has no team_id"):
        fidelity_scores(workers, service_users)


def test_worker_errors(tiny):
    workers, service_users = tiny
    with pytest.raises(CpevalError, match="workers: worker_id A appears in more than one row"):
        fidelity_scores(workers.assign(worker_id=["A", "A", "C"]), service_users)
    with pytest.raises(CpevalError, match="workers: row 3 has no worker_id"):
        fidelity_scores(workers.assign(worker_id=["A", "B", None]), service_users)
    with pytest.raises(CpevalError, match=r"workers: column\(s\) team_id not in the data"):
        fidelity_scores(workers.drop(columns="team_id"), service_users)
    with pytest.raises(CpevalError, match=r"service users: column\(s\) worker_id not in the data"):
        fidelity_scores(workers, service_users.drop(columns="worker_id"))
    no_items = workers[["worker_id", "team_id"]]
    with pytest.raises(CpevalError, match="workers data: none of the cpifs_w item columns"):
        fidelity_scores(no_items, service_users)


def test_ids_compare_as_text():
    # worker ids read from SPSS are floats (111.0) in one file and ints in the other: still linked
    inst = load_instruments()
    assert "cpifs_w" in inst
    workers = pd.DataFrame({"worker_id": [111.0], "team_id": ["T"], **_items("cpifs_w", _const([5]))})
    sus = pd.DataFrame({"participant_id": [1], "team_id": ["T"], "worker_id": [111],
                        **_items("cpifs_su", _const([5]))})
    scores, qa = fidelity_scores(workers, sus)
    assert scores["worker_linked"].all() and qa.empty


# ------------------------------------------------------------------------------------------------ teams and bands


def test_bands_by_hand():
    # inclusive upper limits: 4.99 is low, 5.0 moderate, 6.99 moderate, 7 high; missing stays missing
    x = pd.Series([4.99, 5.0, 6.99, 7.0, np.nan, 1.0], index=list("abcdef"))
    assert band_scores(x, BANDS).tolist() == ["low", "moderate", "moderate", "high", None, "low"]
    assert band_scores(x, BANDS).index.tolist() == list("abcdef")
    assert format_bands(BANDS) == "low <= 4.99 < moderate <= 6.99 < high"
    assert parse_bands(BANDS)[-1] == {"label": "high", "max": None}


@pytest.mark.parametrize("bands, message", [
    (None, "bands is None; expected a list of at least 2 bands"),
    ([{"label": "all"}], "expected a list of at least 2 bands"),
    ([{"label": "low", "max": 5}, {"label": "high", "max": 9}], r"bands\[1\] \(high\) has max 9; expected no max"),
    ([{"label": "low", "max": 5}, {"label": "mid", "max": 5}, {"label": "high"}],
     r"bands\[1\] \(mid\) max is 5; expected more than the previous band's max \(5\)"),
    ([{"label": "low"}, {"label": "high"}], r"bands\[0\] \(low\) max is None; expected a number"),
    ([{"label": "low", "max": "5"}, {"label": "high"}], r"bands\[0\] \(low\) max is '5'; expected a number"),
    ([{"label": "", "max": 5}, {"label": "high"}], r"bands\[0\].label is ''; expected a non-empty text"),
    ([{"max": 5}, {"label": "high"}], r"bands\[0\] is \{'max': 5\}; expected a mapping with a label"),
    ([{"label": "low", "max": 5, "min": 1}, {"label": "high"}], r"bands\[0\] has key 'min'; expected only"),
    ([{"label": "x", "max": 5}, {"label": "x"}], r"bands\[1\].label 'x' is used twice"),
])
def test_band_errors(bands, message):
    with pytest.raises(CpevalError, match=message):
        parse_bands(bands)


def test_team_fidelity_by_hand(tiny):
    scores, _ = fidelity_scores(*tiny)
    table = team_fidelity(scores, bands=BANDS)
    assert list(table.columns) == TEAM_COLUMNS
    assert len(table) == 4 * 6  # (T1, T2) x (W, SU) x (5 domains + total)
    t1w = table[(table["team"] == "T1") & (table["version"] == "W")].set_index("domain")
    # workers A (6.4) and B (4): mean 5.2, SD |6.4 - 4| / sqrt(2) = 1.697056, n 2 -> moderate
    assert t1w.loc["total", "mean"] == pytest.approx(5.2)
    assert t1w.loc["total", "sd"] == pytest.approx(2.4 / np.sqrt(2))
    assert t1w.loc["total", "n"] == 2 and t1w.loc["total", "band"] == "moderate"
    assert t1w.loc["com", "mean"] == pytest.approx(6.0) and pd.isna(t1w.loc["com", "band"])
    assert t1w.loc["total", "arm"] == "implementation"
    # T1 service users: p1 (5), p2 (7), p5 (8): mean 20/3, band moderate
    t1su = table[(table["team"] == "T1") & (table["version"] == "SU")].set_index("domain")
    assert t1su.loc["total", "mean"] == pytest.approx(20 / 3) and t1su.loc["total", "band"] == "moderate"
    # T2: worker C (9, high; n = 1: no SD); service user p3 (3, low)
    t2w = table[(table["team"] == "T2") & (table["version"] == "W")].set_index("domain")
    assert t2w.loc["total", "band"] == "high" and pd.isna(t2w.loc["total", "sd"])
    assert (table["bands"] == "low <= 4.99 < moderate <= 6.99 < high").all()
    assert table.attrs["bands"][0] == {"label": "low", "max": 4.99}


def test_team_fidelity_without_bands(tiny):
    scores, _ = fidelity_scores(*tiny)
    table = team_fidelity(scores)
    assert table["band"].isna().all() and (table["bands"] == "").all() and table.attrs["bands"] is None
    with pytest.raises(CpevalError, match=r"scores: column\(s\) total not in the data"):
        team_fidelity(scores.drop(columns="total"))


# ------------------------------------------------------------------------------------------------ agreement


def test_bland_altman_by_hand():
    # differences 1, 0, -1: bias 0, SD 1, limits -1.96 and 1.96
    ba = bland_altman([5, 6, 7], [4, 6, 8])
    assert ba["bias"] == pytest.approx(0) and ba["sd_difference"] == pytest.approx(1)
    assert (ba["loa_low"], ba["loa_high"]) == pytest.approx((-1.96, 1.96))
    # differences 2, 1, 3, missing pair left out: bias 2, SD 1
    ba = bland_altman([6, 5, 7, np.nan], [4, 4, 4, 4])
    assert ba["n"] == 3 and ba["bias"] == pytest.approx(2) and ba["loa_high"] == pytest.approx(3.96)


def test_icc_matches_r_psych():
    """R 4.2.2, psych 2.2.9: psych::ICC(pairs[, c("worker", "service_users")], lmer = FALSE), row ICC2
    (tests/r/fidelity_reference.R): ICC 0.898238690769811, lower 0.574177073848008, upper 0.978808536830676;
    Bland-Altman bias 0.0875, limits -1.56049089803312 and 1.73549089803312."""
    pairs = pd.read_csv(DATA / "icc_pairs.csv")
    ref = pd.read_csv(DATA / "icc_reference.csv").set_index("type")
    assert ref.loc["ICC2", "icc"] == pytest.approx(0.898238690769811, abs=1e-12)
    got = icc_a1(pairs["worker"], pairs["service_users"])
    assert got["icc"] == pytest.approx(0.898238690769811, abs=1e-10)
    assert got["conf_low"] == pytest.approx(0.574177073848008, abs=1e-10)
    assert got["conf_high"] == pytest.approx(0.978808536830676, abs=1e-10)
    assert (got["conf_low"], got["conf_high"]) == pytest.approx((ref.loc["ICC2", "lower"], ref.loc["ICC2", "upper"]),
                                                                 abs=1e-10)
    ba = bland_altman(pairs["worker"], pairs["service_users"])
    assert (ba["bias"], ba["loa_low"], ba["loa_high"]) == pytest.approx(
        tuple(ref.loc["BA_bias", ["icc", "lower", "upper"]]), abs=1e-12)
    # and pingouin's ICC(A,1) agrees (its interval is rounded to 2 decimals)
    long = pairs.melt(id_vars="worker_id", value_vars=["worker", "service_users"], var_name="rater")
    pg = pingouin.intraclass_corr(long, targets="worker_id", raters="rater", ratings="value").set_index("Type")
    assert pg.loc["ICC(A,1)", "ICC"] == pytest.approx(got["icc"], abs=1e-12)


def test_icc_edge_cases():
    assert "fewer than 5 pairs (n = 4)" in icc_a1([1, 2, 3, 4], [1, 2, 3, 4])["note"]
    assert icc_a1([3] * 6, [3] * 6)["note"] == "every score is the same: no ICC"
    assert np.isnan(icc_a1([1, 2, 3, np.nan, 5], [1, 2, 3, 4, 5])["icc"])  # 4 complete pairs
    with pytest.raises(CpevalError, match="conf_level is 1.5; expected a number between 0 and 1"):
        icc_a1([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], conf_level=1.5)


def test_agreement_pairs_workers_with_mean_of_service_users():
    # 5 workers, each with two service users; the worker pairs with the mean of their service users
    workers = pd.DataFrame({"worker_id": list("ABCDE"), "team_id": ["T1"] * 5,
                            **_items("cpifs_w", _const([3, 4, 5, 6, 8]))})
    su_level = [2, 4, 4, 4, 5, 7, 5, 7, 9, 9]
    sus = pd.DataFrame({"participant_id": range(10), "team_id": "T1", "worker_id": np.repeat(list("ABCDE"), 2),
                        **_items("cpifs_su", _const(su_level))})
    scores, _ = fidelity_scores(workers, sus)
    table = worker_service_user_agreement(scores)
    assert list(table.columns) == AGREEMENT_COLUMNS
    total = table.set_index("domain").loc["total"]
    # pairs: (3, 3), (4, 4), (5, 6), (6, 6), (8, 9): differences 0, 0, -1, 0, -1 -> bias -0.4, SD sqrt(0.3)
    assert total["n_pairs"] == 5 and total["n_service_users"] == 10
    assert total["bias"] == pytest.approx(-0.4) and total["sd_difference"] == pytest.approx(np.sqrt(0.3))
    expected = icc_a1([3, 4, 5, 6, 8], [3, 4, 6, 6, 9])
    assert total["icc"] == pytest.approx(expected["icc"]) and total["icc"] > 0.9
    assert total["icc_type"].startswith("ICC(A,1)")


# ------------------------------------------------------------------------------------------------ reliability


def test_domain_reliability_tiny_and_errors(tiny):
    workers, service_users = tiny
    table = domain_reliability(workers, "W")
    assert list(table.columns) == RELIABILITY_COLUMNS
    assert table["domain"].tolist() == [*DOMAINS, "all items"]
    # com: only A and C are complete (B misses com1): fewer than 3 complete responses
    assert table.set_index("domain").loc["com", "note"] == "fewer than 3 complete responses (n = 2)"
    with pytest.raises(CpevalError, match="version is 'X'; expected one of W, SU"):
        domain_reliability(workers, "X")
    with pytest.raises(CpevalError, match=r"W data: item column\(s\) cpifs_w_rel4 not in the data"):
        domain_reliability(workers.drop(columns="cpifs_w_rel4"), "W")


# ------------------------------------------------------------------------------------------------ demo study


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_fidelity")
    subprocess.run([sys.executable, "-m", "cpeval.cli", "demo", "-o", str(folder)], check=True,
                   capture_output=True)
    su = read_data(folder / "demo_study_scored.sav").data
    workers = read_data(folder / "demo_workers_scored.sav").data
    plan = load_plan(folder / "demo_plan.yaml")
    scores, qa = fidelity_scores(workers, su)
    return su, workers, plan, scores, qa


def test_demo_implementation_teams_have_higher_fidelity(demo):
    su, workers, plan, scores, qa = demo
    assert (scores["version"] == "W").sum() == len(workers)
    assert (scores["version"] == "SU").sum() == su.filter(like="cpifs_su_").notna().any(axis=1).sum()
    # every demo service user's worker is in the worker file; the only QA records are domains left unscored for
    # lack of answered items (the demo's item non-response)
    assert set(qa["reason"]) <= {"domain_not_scored"}
    table = team_fidelity(scores, bands=BANDS)
    total = table[table["domain"] == "total"]
    for version in ("W", "SU"):
        means = total[total["version"] == version].groupby("arm")["mean"].mean()
        assert means["implementation"] > means["control"], version
    w = total[total["version"] == "W"]
    assert w.loc[w["arm"] == "implementation", "mean"].min() > w.loc[w["arm"] == "control", "mean"].median()


def test_demo_agreement_and_reliability(demo):
    su, workers, plan, scores, qa = demo
    table = worker_service_user_agreement(scores).set_index("domain")
    assert (table["n_pairs"] >= 45).all()
    assert table["icc"].between(0, 1).all()
    assert (table["icc_conf_low"] < table["icc"]).all() and (table["icc"] < table["icc_conf_high"]).all()
    assert (table["loa_low"] < table["bias"]).all() and (table["bias"] < table["loa_high"]).all()
    for data, version in ((workers, "W"), (su, "SU")):
        rel = domain_reliability(data, version)
        assert rel["alpha"].between(0.7, 1).all(), version


def test_demo_outcome_models(demo):
    su, workers, plan, scores, qa = demo
    records = fidelity_outcome_models(su, scores, plan, ["rguk_total", "wemwbs_total"])
    assert list(records.columns) == MODEL_COLUMNS
    assert records["model"].tolist() == ["fidelity_worker", "fidelity_service_user"] * 2
    assert records["estimate"].notna().all() and (records["n_clusters"] == 5).all()
    assert (records["conf_low"] < records["estimate"]).all() and (records["estimate"] < records["conf_high"]).all()
    assert records["notes"].str.contains("observational comparison within the implementation arm").all()
    assert records["df_method"].isin(["Satterthwaite", "between-within", "satterthwaite"]).all()
    # only implementation-arm participants are analysed
    impl = su.loc[su["arm"] == "implementation", "participant_id"].nunique()
    assert (records["n_participants"] <= impl).all()


def test_outcome_model_problems_become_records(demo):
    su, workers, plan, scores, qa = demo
    flat = scores.copy()
    flat.loc[flat["version"] == "W", "total"] = 6.0
    records = fidelity_outcome_models(su, flat, plan, ["rguk_total"]).set_index("model")
    assert records.loc["fidelity_worker", "notes"].startswith("fidelity is the same for every participant analysed")
    assert np.isnan(records.loc["fidelity_worker", "estimate"])
    assert not np.isnan(records.loc["fidelity_service_user", "estimate"])
    one_team = su[(su["arm"] == "control") | (su["team_id"] == "Trust A implementation team")]
    records = fidelity_outcome_models(one_team, scores, plan, ["rguk_total"])
    assert records["notes"].str.startswith("only 1 team with follow-up, baseline and fidelity scores").all()


def test_outcome_model_errors(demo):
    su, workers, plan, scores, qa = demo
    with pytest.raises(CpevalError, match="outcomes is empty"):
        fidelity_outcome_models(su, scores, plan, [])
    with pytest.raises(CpevalError, match=r"outcome column\(s\) nope not in the service-user data"):
        fidelity_outcome_models(su, scores, plan, ["nope"])
    with pytest.raises(CpevalError, match="arm_value is 'treated', which is not a value of column 'arm'"):
        fidelity_outcome_models(su, scores, plan, ["rguk_total"], arm_value="treated")
    with pytest.raises(CpevalError, match=r"scores: column\(s\) worker_linked not in the data"):
        fidelity_outcome_models(su, scores.drop(columns="worker_linked"), plan, ["rguk_total"])


# ----------------------------------------------------------------------------------------------------------------
# Fidelity-outcome models against R lmerTest
# ----------------------------------------------------------------------------------------------------------------
# Reference: tests/data/outcomes/fidelity_lmer_reference.csv, written by tests/r/fidelity_outcome_reference.R
# (R 4.2.2, lme4 1.1.31, lmerTest 3.1.3) from the frames tests/make_outcomes_data.py builds from the demo study.
# All four fits are singular in lme4 (team variance 0): lmerTest then reports df = n - p; cpeval uses between-within
# df (its documented decision) and names lmerTest's df in the notes. Estimates and SEs must agree.


@pytest.fixture(scope="module")
def fidelity_frames_and_models():
    from make_outcomes_data import demo_fidelity_frames, demo_files, demo_scored

    from cpeval.fidelity import analyse_fidelity
    from cpeval.pipeline import run_scoring
    from cpeval.plan import load_plan
    from cpeval.resources import analysis_dir

    files = demo_files()
    plan = load_plan(analysis_dir() / "demo_plan.yaml")
    su = demo_scored(files)
    workers = run_scoring(files["workers"], map_path=analysis_dir() / "demo_workers_map.yaml").data
    return demo_fidelity_frames(files), analyse_fidelity(su, workers, plan).outcome_models


def test_fidelity_outcome_frames_are_those_r_was_given(fidelity_frames_and_models):
    frames, _ = fidelity_frames_and_models
    data = Path(__file__).parent / "data" / "outcomes"
    for outcome, frame in frames.items():
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), pd.read_csv(data / f"fidelity_{outcome}.csv"),
                                      check_dtype=False)


def test_fidelity_outcome_models_match_lmertest(fidelity_frames_and_models):
    _, models = fidelity_frames_and_models
    ref = pd.read_csv(Path(__file__).parent / "data" / "outcomes" / "fidelity_lmer_reference.csv")
    got = models.set_index(["outcome", "model"])
    for r in ref.itertuples():
        rec = got.loc[(r.outcome, r.model)]
        assert rec["estimate"] == pytest.approx(r.estimate, rel=1e-4)
        assert rec["std_error"] == pytest.approx(r.std_error, rel=1e-4)
        assert rec["n_participants"] == r.n
        assert r.singular and rec["df_method"] == "between-within"
        assert f"R lmerTest would report Satterthwaite df {r.df:.1f}" in rec["notes"]


def test_banded_fidelity_model_compares_bands_with_the_lowest(fidelity_frames_and_models):
    _, models = fidelity_frames_and_models
    banded = models[models["model"] == "fidelity_worker_band"]
    assert set(banded["term"]) == {"worker fidelity band: moderate vs low", "worker fidelity band: high vs low"}
    assert banded["estimate"].notna().all()
    assert banded["notes"].str.contains("bands are the plan's assumption").all()


# ----------------------------------------------------------------------------------------------------------------
# Consensus ratings of practice examples by several raters
# ----------------------------------------------------------------------------------------------------------------


def test_icc_a1_for_three_raters_matches_psych():
    # tests/data/fidelity/consensus_reference.csv from tests/r/consensus_reference.R (psych 2.2.9, ICC2):
    # ICC 0.926590538336052, 95% CI 0.808133226071684 to 0.979274123599409
    from cpeval.fidelity import icc_a1_matrix

    grid = pd.read_csv(Path(__file__).parent / "data" / "fidelity" / "consensus_grid.csv")
    got = icc_a1_matrix(grid[["r1", "r2", "r3"]].to_numpy())
    assert got["icc"] == pytest.approx(0.926590538336052, abs=1e-10)
    assert got["conf_low"] == pytest.approx(0.808133226071684, abs=1e-10)
    assert got["conf_high"] == pytest.approx(0.979274123599409, abs=1e-10)


def _ratings_for(workers, rows):
    return pd.DataFrame(rows, columns=["worker_id", "rater", "domain", "rating"])


def test_consensus_scores_agreement_and_unrated_examples():
    from cpeval.fidelity import consensus_ratings

    grid = pd.read_csv(Path(__file__).parent / "data" / "fidelity" / "consensus_grid.csv")
    workers = pd.DataFrame({"worker_id": [f"w{i}" for i in range(1, 11)]})
    rows = [(f"w{e}", rater, "com", getattr(r, rater)) for r in grid.itertuples() for e in [r.example]
            for rater in ("r1", "r2", "r3")]
    rows += [("w1", "r1", "ass", 6), ("w1", "r2", "ass", 8), ("w2", "r1", "ass", None)]
    result = consensus_ratings(_ratings_for(workers, rows), workers)
    com = result.consensus[result.consensus.domain == "com"].set_index("worker_id")
    assert com.loc["w1", "consensus"] == pytest.approx((7 + 8 + 7) / 3) and com.loc["w1", "n_raters"] == 3
    ass = result.consensus[result.consensus.domain == "ass"].set_index("worker_id")
    assert list(ass.index) == ["w1"] and ass.loc["w1", "consensus"] == 7.0  # w2's only rating is missing
    agreement = result.agreement.set_index("domain")
    assert agreement.loc["com", "icc"] == pytest.approx(0.926590538336052, abs=1e-10)
    assert agreement.loc["ass", "note"] == "fewer than 5 pairs (n = 1): no ICC"
    # 10 workers x 5 domains = 50 examples; 10 com + 1 ass rated -> 39 unrated, w2 ass among them
    assert len(result.unrated) == 39
    assert ((result.unrated.worker_id == "w2") & (result.unrated.domain == "ass")).any()


@pytest.mark.parametrize("row, message", [
    (("w1", "r1", "commmunity", 5), "consensus ratings: row 1, domain is 'commmunity'; expected one of com, ass"),
    (("w1", "r1", "com", 10), "consensus ratings: row 1, rating is 10; expected a whole number 1-9"),
    (("w9", "r1", "com", 5), "consensus ratings: worker(s) w9 not in the workers' data"),
])
def test_consensus_rating_errors(row, message):
    from cpeval.errors import CpevalError
    from cpeval.fidelity import consensus_ratings

    workers = pd.DataFrame({"worker_id": ["w1"]})
    with pytest.raises(CpevalError) as err:
        consensus_ratings(_ratings_for(workers, [row]), workers)
    assert str(err.value).startswith(message)


def test_domain_with_too_few_items_is_a_qa_record_not_lost():
    items = [f"{d}{i}" for d, k in (("com", 4), ("ass", 3), ("pla", 3), ("par", 3), ("rel", 4)) for i in range(1, k + 1)]
    workers = pd.DataFrame({"worker_id": ["a", "b"], "team_id": ["t", "t"], "arm": ["implementation"] * 2,
                            **{f"cpifs_w_{i}": [5, 5] for i in items}})
    workers.loc[1, ["cpifs_w_com1", "cpifs_w_com2", "cpifs_w_com3"]] = np.nan  # 3 of 4 missing: no domain score
    service_users = pd.DataFrame({"participant_id": ["p"], "team_id": ["t"], "arm": ["implementation"],
                                  "timepoint": ["follow_up"], "worker_id": ["a"],
                                  **{f"cpifs_su_{i}": [6] for i in items}})
    result = fidelity_scores(workers, service_users)
    assert len(result.scores) == 3  # every rater kept
    b = result.scores.set_index("rater_id").loc["b"]
    assert np.isnan(b["com"]) and np.isnan(b["total"]) and b["items_answered"] == 14
    qa = result.qa[result.qa.reason == "domain_not_scored"]
    assert list(qa.variable) == ["cpifs_w_com"]
    assert qa.iloc[0].action == "engagement with service users' community and the total left missing for rater b"
