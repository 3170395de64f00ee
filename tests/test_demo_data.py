"""The synthetic demo study (cpeval.demo) and its variable maps.

The demo data are what a study team's SPSS export would look like, so these tests check the export itself
(SPSS names, labels, user-missing codes), that the shipped maps name every variable, and that the data carry the
signals later analyses are meant to find.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyreadstat
import pytest
import yaml

from cpeval import demo
from cpeval.errors import CpevalError
from cpeval.resources import analysis_dir

SEED = 2024
CPIFS_ITEMS = ["com1", "com2", "com3", "com4", "ass1", "ass2", "ass3", "pla1", "pla2", "pla3",
               "par1", "par2", "par3", "rel1", "rel2", "rel3", "rel4"]
SCOPE_DOMAINS = ["leisure", "housing", "safety", "work", "finances", "education", "family", "health"]
EQ5D_DIMS = ["mo", "sc", "ua", "pd", "ad"]
# England 2018 EQ-5D-5L decrements (Devlin et al. 2018), level 1..5, written out here independently of cpeval
ENGLAND_2018 = {
    "mo": [0, 0.058, 0.076, 0.207, 0.274],
    "sc": [0, 0.050, 0.080, 0.164, 0.203],
    "ua": [0, 0.050, 0.063, 0.162, 0.184],
    "pd": [0, 0.063, 0.084, 0.276, 0.335],
    "ad": [0, 0.078, 0.104, 0.285, 0.289],
}
# the cpeval item names the maps must produce (instrument ids from instruments/*.yaml)
SU_ITEMS = (
    [f"wemwbs_{k}" for k in range(1, 15)]
    + [f"rguk_{k}" for k in range(1, 28)]
    + [f"scope_sat_{d}" for d in SCOPE_DOMAINS]
    + [f"scope_opp_{d}" for d in SCOPE_DOMAINS]
    + [f"eq5d5l_{d}" for d in EQ5D_DIMS] + ["eq5d5l_vas"]
)
CPIFS_SU = [f"cpifs_su_{i}" for i in CPIFS_ITEMS]
# CSRI service use: SPSS stem -> cpeval name (written out here, independently of cpeval.demo)
CSRI = {"CSRI_GP": "csri_gp_surgery", "CSRI_GPTEL": "csri_gp_telephone", "CSRI_GPHOME": "csri_gp_home_visit",
        "CSRI_PN": "csri_practice_nurse", "CSRI_CMHT": "csri_cmht_contacts", "CSRI_CSN": "csri_csn_contacts",
        "CSRI_CSNMIN": "csri_csn_minutes"}
CPIFS_W = [f"cpifs_w_{i}" for i in CPIFS_ITEMS] + [f"cpifs_w_ex_{d}" for d in ["com", "ass", "pla", "par", "rel"]]


@pytest.fixture(scope="module")
def study() -> demo.DemoStudy:
    return demo.generate_demo_study(SEED)


@pytest.fixture(scope="module")
def maps() -> dict[str, dict]:
    base = analysis_dir()
    with open(base / "demo_study_map.yaml", encoding="utf-8") as fh:
        study_map = yaml.safe_load(fh)
    with open(base / "demo_workers_map.yaml", encoding="utf-8") as fh:
        workers_map = yaml.safe_load(fh)
    return {"participants": study_map, "workers": workers_map}


@pytest.fixture(scope="module")
def written(study, tmp_path_factory) -> dict:
    return demo.write_demo_files(study, tmp_path_factory.mktemp("demo") / "nested" / "out")


# ---- helpers: every value used below is a valid one (codes, system missing and planted errors removed)

def _clean(frame: pd.DataFrame, columns: list[str], lo: float, hi: float) -> pd.DataFrame:
    block = frame[columns].astype(float)
    return block.where((block >= lo) & (block <= hi) & (block == np.round(block)))


def _prorated_total(frame, columns, lo, hi, max_missing):
    block = _clean(frame, columns, lo, hi)
    answered = block.notna().sum(axis=1)
    return (block.mean(axis=1) * len(columns)).where(answered >= len(columns) - max_missing)


def _wemwbs(frame, prefix):
    return _prorated_total(frame, [f"{prefix}WEMWBS{k}" for k in range(1, 15)], 1, 5, 3)


def _rguk(frame, prefix):
    return _prorated_total(frame, [f"{prefix}RGUK{k}" for k in range(1, 28)], 0, 1, 3)


def _interviewed(frame, prefix):
    return frame[[c for c in frame.columns if c.startswith(prefix)]].notna().any(axis=1)


def _interviewed_without_csri(frame, prefix):
    return frame[[c for c in frame.columns if c.startswith(prefix) and "CSRI" not in c]].notna().any(axis=1)


def _csri_cols(prefix):
    return [prefix + stem for stem in CSRI]


def _cpifs_su_mean(frame):
    return _clean(frame, [f"T2_CPIFS_{i.upper()}" for i in CPIFS_ITEMS], 1, 9).mean(axis=1)


def _cpifs_w_mean(workers):
    return _clean(workers, [f"CPIFSW_{i.upper()}" for i in CPIFS_ITEMS], 1, 9).mean(axis=1)


def _within(values: pd.Series, groups: pd.Series) -> pd.Series:
    return values - values.groupby(groups).transform("mean")


# ---- determinism

def test_same_seed_gives_identical_data(study):
    again = demo.generate_demo_study(SEED)
    pd.testing.assert_frame_equal(again.participants, study.participants)
    pd.testing.assert_frame_equal(again.workers, study.workers)
    pd.testing.assert_frame_equal(again.planted_errors, study.planted_errors)
    pd.testing.assert_frame_equal(again.implementation_costs, study.implementation_costs)
    assert again.participant_meta == study.participant_meta
    assert again.worker_meta == study.worker_meta


def test_different_seed_gives_different_data(study):
    other = demo.generate_demo_study(SEED + 1)
    assert not other.participants.equals(study.participants)
    assert not other.workers.equals(study.workers)
    assert not other.participants[_csri_cols("T1_")].equals(study.participants[_csri_cols("T1_")])
    assert not other.implementation_costs.equals(study.implementation_costs)


def test_default_seed_is_2024(study):
    pd.testing.assert_frame_equal(demo.generate_demo_study().participants, study.participants)


def test_generation_is_fast():
    start = time.perf_counter()
    demo.generate_demo_study(7)
    assert time.perf_counter() - start < 1.0


# ---- structure and flow (checked for several seeds: the counts are part of the design, not luck)

@pytest.mark.parametrize("seed", [SEED, 1, 17, 123456])
def test_design_five_trusts_two_arms_ten_teams(seed):
    s = demo.generate_demo_study(seed)
    p, w = s.participants, s.workers
    assert p["ID"].is_unique and w["WORKER"].is_unique
    assert sorted(p["TRUST"].unique()) == [1, 2, 3, 4, 5]
    assert p["TEAM"].nunique() == 10
    teams = p[["TRUST", "TEAM", "ARM"]].drop_duplicates()
    assert len(teams) == 10                                   # a team belongs to one trust and one arm
    assert teams.groupby("TRUST")["ARM"].apply(lambda a: sorted(a) == [1, 2]).all()
    sizes = p.groupby("TEAM").size()
    assert sizes.between(10, 22).all()
    # workers: 4-8 per team; every service user's worker is a worker of their own team
    assert w.groupby("TEAM").size().between(4, 8).all()
    assert set(w["TEAM"]) == set(p["TEAM"])
    team_of_worker = w.set_index("WORKER")["TEAM"]
    assert p["WORKER"].isin(team_of_worker.index).all()
    assert (p["WORKER"].map(team_of_worker) == p["TEAM"]).all()
    assert (w.groupby("TEAM")[["TRUST", "ARM"]].first() == teams.set_index("TEAM")[["TRUST", "ARM"]]).all().all()


@pytest.mark.parametrize("seed", [SEED, 1, 17, 123456])
def test_recruitment_and_interview_counts(seed):
    p = demo.generate_demo_study(seed).participants
    t1, t2 = _interviewed(p, "T1_"), _interviewed(p, "T2_")
    assert 150 <= len(p) <= 170
    assert 140 <= t1.sum() <= 160
    assert 115 <= t2.sum() <= 140
    assert not (t2 & ~t1).any()                               # nobody is followed up without a baseline
    never = ~t1
    assert never.sum() >= 1
    item_cols = [c for c in p.columns if c.startswith(("T1_", "T2_"))]
    assert p.loc[never, item_cols].isna().all().all()         # recruited, never interviewed: all items missing


def test_dropout_related_to_baseline_wellbeing(study):
    p = study.participants
    t1, t2 = _interviewed(p, "T1_"), _interviewed(p, "T2_")
    wb = _wemwbs(p, "T1_")
    assert wb[t1 & ~t2].mean() < wb[t1 & t2].mean() - 1


# ---- the maps name every variable written

def _mapped_spss_names(study_map: dict) -> dict[str, str]:
    names = dict(study_map["fixed"])
    for stem, cp in study_map.get("repeated", {}).items():
        for marker in study_map["timepoints"].values():
            names[marker.get("prefix", "") + stem + marker.get("suffix", "")] = cp
    for spss, spec in study_map.get("variables", {}).items():
        names[spss] = spec["name"]
    return names


def test_study_map_names_every_spss_column(study, maps):
    m = maps["participants"]
    assert m["format"] == "wide"
    assert list(m["timepoints"]) == ["baseline", "follow_up"]
    mapped = _mapped_spss_names(m)
    assert set(study.participants.columns) <= set(mapped), set(study.participants.columns) - set(mapped)
    # every repeated stem exists at both time points; every irregular name exists in the file
    for stem in m["repeated"]:
        assert {f"T1_{stem}", f"T2_{stem}"} <= set(study.participants.columns), stem
    assert set(m["variables"]) <= set(study.participants.columns)
    assert {v["timepoint"] for v in m["variables"].values()} <= set(m["timepoints"])


def test_study_map_produces_cpeval_names(maps):
    m = maps["participants"]
    assert m["fixed"] == {"ID": "participant_id", "TRUST": "trust_id", "TEAM": "team_id", "ARM": "arm",
                          "WORKER": "worker_id", "AGE": "age", "SEX": "gender"}
    assert sorted(m["repeated"].values()) == sorted(SU_ITEMS + list(CSRI.values()))
    assert {stem: m["repeated"][stem] for stem in CSRI} == CSRI
    assert sorted(v["name"] for v in m["variables"].values()) == sorted(CPIFS_SU)
    assert {"arm", "gender"} <= set(m["value_labels_as_text"])
    assert m["missing_codes"]["all"] == [-9, -8] and m["missing_codes"]["AGE"] == [999]


def test_workers_map_names_every_spss_column(study, maps):
    m = maps["workers"]
    assert m["format"] == "long" and m["timepoint"] == "follow_up"
    assert set(m["fixed"]) == set(study.workers.columns)
    values = list(m["fixed"].values())
    assert len(values) == len(set(values))
    assert {"worker_id", "trust_id", "team_id", "arm"} <= set(values)
    assert sorted(v for v in values if v.startswith("cpifs_w_")) == sorted(CPIFS_W)
    assert "arm" in m["value_labels_as_text"]


# ---- values: valid apart from the planted errors, which are listed exactly

def _planted_mask(study, dataset: str) -> pd.DataFrame:
    frame = getattr(study, dataset)
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for err in study.planted_errors.query("dataset == @dataset").itertuples():
        mask.loc[err.row - 1, err.variable] = True
    return mask


@pytest.mark.parametrize("dataset", ["participants", "workers"])
def test_values_valid_apart_from_planted_errors(study, dataset):
    frame = getattr(study, dataset)
    planted = _planted_mask(study, dataset)
    ranges = demo.valid_ranges(dataset)
    assert set(ranges) <= set(frame.columns)
    codes = {-9.0, -8.0}
    bad = []
    for col, (lo, hi) in ranges.items():
        x = frame[col].astype(float)
        allowed = x.isna() | (x.between(lo, hi) & (x == np.round(x)))
        if col == "AGE":
            allowed |= x == 999
        elif col.startswith(("T1_", "T2_", "CPIFSW_")):
            allowed |= x.isin(codes)
        else:
            assert x.notna().all(), f"{col} has missing values"
        wrong = ~allowed & ~planted[col]
        bad += [(col, i, v) for i, v in x[wrong].items()]
    assert bad == []
    # and every planted cell is really outside the valid values
    for col in ranges:
        for value in frame.loc[planted[col], col]:
            lo, hi = ranges[col]
            assert not (lo <= value <= hi and value == round(value)), (col, value)


def test_planted_errors_are_listed_exactly(study):
    errs = study.planted_errors
    assert len(errs) == 13                                     # 12 on the questionnaires, 1 on service use
    assert list(errs.columns)[:4] == ["dataset", "row", "id", "variable"]
    assert not errs.duplicated(["dataset", "row", "variable"]).any()
    for e in errs.itertuples():
        frame = getattr(study, e.dataset)
        id_col = "ID" if e.dataset == "participants" else "WORKER"
        assert frame.loc[e.row - 1, e.variable] == e.value
        assert frame.loc[e.row - 1, id_col] == e.id
    # a mix of instruments, both time points, and both files
    assert {"participants", "workers"} == set(errs["dataset"])
    assert {"baseline", "follow_up"} <= set(errs["timepoint"].dropna())
    prefixes = {v.split("_")[0] for v in errs["cpeval_variable"]}
    assert {"wemwbs", "rguk", "eq5d5l", "scope", "cpifs", "csri"} <= prefixes
    csri = errs[errs["variable"].str.contains("CSRI")]
    assert len(csri) == 1 and csri.iloc[0]["value"] < 0 and csri.iloc[0]["timepoint"] == "follow_up"
    assert csri.iloc[0]["cpeval_variable"] == CSRI[csri.iloc[0]["variable"][3:]]
    assert not errs.duplicated(["dataset", "row"]).any()      # at most one planted error per row


def test_item_missingness_is_a_few_percent(study):
    p = study.participants
    t1 = _interviewed(p, "T1_")
    items = p.loc[t1, [c for c in p.columns if c.startswith("T1_")]]
    assert 0.01 <= items.isna().mean().mean() <= 0.06
    assert 0.002 <= (items == -9).mean().mean() <= 0.02
    assert 0.002 <= (items == -8).mean().mean() <= 0.02
    assert 1 <= (p["AGE"] == 999).sum() <= 6
    # but most people answered every WEMWBS item
    wem = items[[f"T1_WEMWBS{k}" for k in range(1, 15)]]
    assert wem.notna().all(axis=1).mean() > 0.5


# ---- realism: levels close to mental-health service-user samples

def test_baseline_levels_are_realistic(study):
    p = study.participants
    wem = _wemwbs(p, "T1_")
    assert 37 <= wem.mean() <= 45 and 7 <= wem.std() <= 13
    rg = _rguk(p, "T1_")
    assert 9 <= rg.mean() <= 15
    eq = _clean(p, [f"T1_EQ5D_{d.upper()}" for d in EQ5D_DIMS], 1, 5).dropna()
    index = 1 - sum(np.asarray(ENGLAND_2018[d])[eq[f"T1_EQ5D_{d.upper()}"].astype(int) - 1] for d in EQ5D_DIMS)
    assert 0.5 <= index.mean() <= 0.7


def test_wemwbs_items_are_internally_consistent(study):
    items = _clean(study.participants, [f"T1_WEMWBS{k}" for k in range(1, 15)], 1, 5).dropna()
    k = items.shape[1]
    alpha = k / (k - 1) * (1 - items.var(ddof=1).sum() / items.sum(axis=1).var(ddof=1))
    assert 0.8 <= alpha <= 0.95


# ---- fidelity: higher in implementation teams, and related to follow-up social capital

def test_implementation_arm_has_higher_fidelity(study):
    w = study.workers
    by_arm_w = _cpifs_w_mean(w).groupby(w["ARM"]).mean()
    assert by_arm_w[1] > by_arm_w[2] + 1
    p = study.participants
    by_arm_su = _cpifs_su_mean(p).groupby(p["ARM"]).mean()
    assert by_arm_su[1] > by_arm_su[2] + 0.5


def test_fidelity_correlates_with_follow_up_rguk_within_arm(study):
    p = study.participants
    d = pd.DataFrame({"fidelity": _cpifs_su_mean(p), "rguk": _rguk(p, "T2_"), "arm": p["ARM"]}).dropna()
    assert len(d) > 100
    r = _within(d["fidelity"], d["arm"]).corr(_within(d["rguk"], d["arm"]))
    assert r > 0.1
    # the worker's own rating points the same way
    w = study.workers.set_index("WORKER")
    d["worker_fidelity"] = p.loc[d.index, "WORKER"].map(_cpifs_w_mean(w))
    d = d.dropna()
    assert _within(d["worker_fidelity"], d["arm"]).corr(_within(d["rguk"], d["arm"])) > 0


# ---- files

def test_write_demo_files_returns_every_path(written):
    assert set(written) == {"participants", "workers", "consensus", "implementation_costs"}
    assert written["implementation_costs"].name == "demo_implementation_costs.csv"
    assert written["participants"].name == "demo_study.sav" and written["workers"].name == "demo_workers.sav"
    assert written["consensus"].name == "demo_consensus.csv"
    assert all(path.is_file() and path.stat().st_size > 0 for path in written.values())


def test_consensus_ratings_three_raters_on_known_workers(study):
    ratings = study.consensus_ratings
    assert list(ratings.columns) == ["worker_id", "rater", "domain", "rating"]
    assert set(ratings["rater"]) == {"R1", "R2", "R3"}
    assert set(ratings["domain"]) == {"com", "ass", "pla", "par", "rel"}
    assert ratings["rating"].between(1, 9).all() and (ratings["rating"] % 1 == 0).all()
    assert set(ratings["worker_id"]) <= set(study.workers["WORKER"])
    assert not ratings.duplicated(["worker_id", "rater", "domain"]).any()


def test_written_study_file_keeps_values_labels_and_missing_codes(study, written):
    df, meta = pyreadstat.read_sav(str(written["participants"]), user_missing=True)
    assert list(df.columns) == list(study.participants.columns)
    pd.testing.assert_frame_equal(df, study.participants, check_dtype=False)
    labels = meta.column_names_to_labels
    assert all(labels[c] for c in df.columns)
    assert labels["T1_WEMWBS1"].startswith("Baseline") and labels["T2_WEMWBS1"].startswith("6 months")
    vl = meta.variable_value_labels
    assert vl["ARM"] == {1: "implementation", 2: "control"}
    assert vl["SEX"][1] == "male" and vl["SEX"][2] == "female" and 3 in vl["SEX"]
    assert vl["TRUST"][1] == "Trust A"
    assert vl["T1_WEMWBS1"][1] == "None of the time" and vl["T1_WEMWBS1"][5] == "All of the time"
    assert vl["T2_RGUK27"][-9] == "Refused / not asked" and vl["T2_RGUK27"][-8] == "Don't know"
    declared = {k: sorted(r["lo"] for r in v if r["lo"] == r["hi"]) for k, v in meta.missing_ranges.items()}
    item_cols = [c for c in df.columns if c.startswith(("T1_", "T2_"))]
    assert all(declared.get(c) == [-9, -8] for c in item_cols)
    assert declared["AGE"] == [999]
    assert all(len(v) <= 3 for v in meta.missing_ranges.values())
    # read without user-missing: the codes become system missing
    plain, _ = pyreadstat.read_sav(str(written["participants"]))
    assert not plain[item_cols].isin([-9, -8]).any().any()
    assert (plain["AGE"].dropna() < 999).all()
    assert (df[item_cols] == -9).sum().sum() > 0


def test_written_workers_file_keeps_values_labels_and_missing_codes(study, written):
    df, meta = pyreadstat.read_sav(str(written["workers"]), user_missing=True)
    pd.testing.assert_frame_equal(df, study.workers, check_dtype=False)
    assert meta.variable_value_labels["ARM"] == {1: "implementation", 2: "control"}
    assert meta.variable_value_labels["TEAM"][1] == "Trust A implementation team"
    assert all(meta.column_names_to_labels[c] for c in df.columns)
    for col in [c for c in df.columns if c.startswith("CPIFSW_")]:
        assert [r["lo"] for r in meta.missing_ranges[col]] == [-9, -8]


def test_write_into_a_file_path_is_a_cpeval_error(study, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    with pytest.raises(CpevalError, match="not_a_folder"):
        demo.write_demo_files(study, blocker)


def test_demo_map_paths_point_at_shipped_maps():
    paths = demo.demo_map_paths()
    assert paths["participants"].name == "demo_study_map.yaml" and paths["participants"].is_file()
    assert paths["workers"].name == "demo_workers_map.yaml" and paths["workers"].is_file()


# ---- CSRI service use and implementation costs

def test_csri_columns_written_with_labels_measure_and_missing_codes(study, written):
    df, meta = pyreadstat.read_sav(str(written["participants"]), user_missing=True)
    labels = meta.column_names_to_labels
    for stem in CSRI:
        t1, t2 = f"T1_{stem}", f"T2_{stem}"
        assert {t1, t2} <= set(df.columns)
        assert labels[t1].startswith("Baseline: CSRI") and "6 months before the baseline interview" in labels[t1]
        assert labels[t2].startswith("6 months: CSRI") and "since the baseline interview" in labels[t2]
        for col in (t1, t2):
            assert meta.variable_measure[col] == "scale"
            assert sorted(r["lo"] for r in meta.missing_ranges[col]) == [-9, -8]
            assert meta.variable_value_labels[col] == {-9: "Refused / not asked", -8: "Don't know"}
    assert "minutes" in labels["T1_CSRI_CSNMIN"]
    # the codes really occur in the service-use items and are missing when read plainly
    csri = df[_csri_cols("T1_") + _csri_cols("T2_")]
    assert (csri == -9).sum().sum() > 0 and (csri == -8).sum().sum() > 0
    plain, _ = pyreadstat.read_sav(str(written["participants"]))
    assert not plain[csri.columns].isin([-9, -8]).any().any()


@pytest.mark.parametrize("seed", [SEED, 7, 17])
def test_csri_missing_where_not_interviewed_and_otherwise_a_few_percent(seed):
    p = demo.generate_demo_study(seed).participants
    for prefix in ("T1_", "T2_"):
        present = _interviewed_without_csri(p, prefix)
        csri = p[_csri_cols(prefix)]
        assert csri[~present].isna().all().all(), prefix
        answered = csri[present]
        assert answered.notna().mean().min() >= 0.9                 # item non-response only
        assert 0.003 <= answered.isna().mean().mean() <= 0.06
        codes = answered.isin([-9, -8]).mean().mean()
        assert 0.002 <= codes <= 0.03
        assert answered.notna().all(axis=1).mean() > 0.7             # most people answered every item


@pytest.mark.parametrize("seed", [SEED, 1, 7, 123456])
def test_csri_counts_are_non_negative_integers_apart_from_the_planted_error(seed):
    s = demo.generate_demo_study(seed)
    p = s.participants
    planted = _planted_mask(s, "participants")
    cols = _csri_cols("T1_") + _csri_cols("T2_")
    x = p[cols]
    valid = x.isna() | x.isin([-9, -8]) | ((x >= 0) & (x == np.round(x)))
    assert valid.where(~planted[cols], True).all().all()
    assert (~valid).sum().sum() == 1 and planted[cols].sum().sum() == 1
    row = s.planted_errors.query("variable.str.startswith('T2_CSRI')", engine="python").iloc[0]
    assert p.loc[row["row"] - 1, row["variable"]] == row["value"] < 0
    # every service-use column has a valid range of 0 to no upper limit
    ranges = demo.valid_ranges("participants")
    assert all(ranges[c][0] == 0 and ranges[c][1] == np.inf for c in cols)


@pytest.mark.parametrize("prefix", ["T1_", "T2_"])
def test_csn_minutes_follow_the_contacts_item(study, prefix):
    p = study.participants
    contacts, minutes = p[f"{prefix}CSRI_CSN"], p[f"{prefix}CSRI_CSNMIN"]
    assert (minutes[contacts == 0] == 0).all()                      # no contacts: minutes recorded as 0
    assert (minutes[contacts.isin([-9, -8])] == -9).all()           # contacts refused / not known: not asked
    assert minutes[contacts.isna()].isna().all()
    used = minutes[(contacts > 0) & (minutes >= 0)]
    assert len(used) > 5 and used.between(30, 60).all()
    assert not ((contacts > 0) & (minutes == 0)).any()


def test_service_use_levels_are_realistic_and_skewed(study):
    p = study.participants
    t1 = _interviewed_without_csri(p, "T1_")
    x = p.loc[t1, _csri_cols("T1_")]
    x = x.where(x >= 0)
    mean = x.mean()
    assert 1.5 <= mean["T1_CSRI_GP"] <= 3.5
    assert 0.5 <= mean["T1_CSRI_GPTEL"] <= 1.6
    assert mean["T1_CSRI_GPHOME"] <= 0.3
    assert 0.5 <= mean["T1_CSRI_PN"] <= 1.6
    assert 6 <= mean["T1_CSRI_CMHT"] <= 10.5
    cmht = x["T1_CSRI_CMHT"].dropna()
    assert cmht.var() > 3 * cmht.mean() and cmht.max() > 3 * cmht.mean()   # overdispersed, long tail
    assert cmht.mean() > cmht.median()
    users = (x["T1_CSRI_CSN"].dropna() > 0).mean()
    assert 0.06 <= users <= 0.3


@pytest.mark.parametrize("seed", [SEED, 1, 17])
def test_service_use_is_higher_with_worse_health_and_wellbeing(seed):
    p = demo.generate_demo_study(seed).participants
    eq = _clean(p, [f"T1_EQ5D_{d.upper()}" for d in EQ5D_DIMS], 1, 5)
    index = 1 - sum(eq[f"T1_EQ5D_{d.upper()}"].map(lambda v, d=d: ENGLAND_2018[d][int(v) - 1] if v == v else np.nan)
                    for d in EQ5D_DIMS)
    gp = p[["T1_CSRI_GP", "T1_CSRI_GPTEL", "T1_CSRI_GPHOME", "T1_CSRI_PN"]]
    gp = gp.where(gp >= 0).sum(axis=1, min_count=4)
    assert gp.corr(index, method="spearman") < -0.15
    cmht = p["T1_CSRI_CMHT"].where(p["T1_CSRI_CMHT"] >= 0)
    assert cmht.corr(_wemwbs(p, "T1_"), method="spearman") < 0


def test_service_use_model_means_and_arm_ratios():
    """The model itself, on many people with standard-normal latents: stated means, six-month arm ratios."""
    n = 200_000
    rng = np.random.default_rng(0)
    chol = np.linalg.cholesky([[1, 0.4, 0.5], [0.4, 1, 0.25], [0.5, 0.25, 1]])   # W, S, H as in the demo
    lat = rng.standard_normal((n, 3)) @ chol.T
    latents = (lat, lat)
    present = (np.ones(n, dtype=bool), np.ones(n, dtype=bool))
    arm = np.where(np.arange(n) % 2 == 0, 1, 2)
    cols = demo._service_use(np.random.default_rng(1), latents, present, arm)
    x = pd.DataFrame(cols)
    x = x.where(x >= 0)
    # exp(-sigma^2 / 2) keeps the mean rate at the stated mean
    for stem, target in {"CSRI_GP": 2.5, "CSRI_GPTEL": 1.0, "CSRI_GPHOME": 0.1, "CSRI_PN": 1.0,
                         "CSRI_CMHT": 8.0}.items():
        assert x[f"T1_{stem}"].mean() == pytest.approx(target, rel=0.05), stem
    ratio = x.groupby(arm).mean()
    ratio = ratio.loc[1] / ratio.loc[2]
    assert ratio["T2_CSRI_CMHT"] == pytest.approx(1.10, abs=0.03)
    for stem in ("CSRI_GP", "CSRI_GPTEL"):
        assert ratio[f"T2_{stem}"] == pytest.approx(0.90, abs=0.03)
        assert ratio[f"T1_{stem}"] == pytest.approx(1.0, abs=0.03)     # no arm difference at baseline
    assert ratio["T1_CSRI_CMHT"] == pytest.approx(1.0, abs=0.03)
    assert (x["T1_CSRI_CSN"].dropna() > 0).mean() == pytest.approx(0.15, abs=0.02)


@pytest.mark.parametrize("seed", [SEED, 7])
def test_service_use_leaves_every_other_value_unchanged(seed, monkeypatch):
    """Service use and implementation costs have their own stream: without them, the rest is identical."""
    full = demo.generate_demo_study(seed)
    monkeypatch.setattr(demo, "_service_use", lambda rng, *a: {"X": rng.random(a[-1].size)})
    monkeypatch.setattr(demo, "_plant_csri_error", lambda rng, participants, planted: planted)
    monkeypatch.setattr(demo, "_implementation_costs", lambda rng, teams: pd.DataFrame())
    bare = demo.generate_demo_study(seed)
    before = bare.participants.drop(columns="X")
    csri = _csri_cols("T1_") + _csri_cols("T2_")
    assert list(full.participants.columns) == list(before.columns) + csri      # new columns appended at the end
    pd.testing.assert_frame_equal(full.participants.drop(columns=csri), before)
    pd.testing.assert_frame_equal(full.workers, bare.workers)
    pd.testing.assert_frame_equal(full.consensus_ratings, bare.consensus_ratings)
    pd.testing.assert_frame_equal(full.planted_errors.iloc[:len(bare.planted_errors)], bare.planted_errors)
    assert len(bare.planted_errors) == 12


@pytest.mark.parametrize("seed", [SEED, 7])
def test_implementation_costs_one_row_per_implementation_team(seed):
    s = demo.generate_demo_study(seed)
    costs = s.implementation_costs
    assert list(costs.columns) == ["team", "caseload", "price_year", "training", "supervision", "worker_time"]
    # teams are named by TEAM's value label: the team column after the demo map holds those labels
    team_labels = s.participant_meta["variable_value_labels"]["TEAM"]
    implementation_teams = sorted(team_labels[t] for t in s.participants.loc[s.participants["ARM"] == 1, "TEAM"].unique())
    assert sorted(costs["team"]) == implementation_teams and costs["team"].is_unique
    assert all(t.endswith("implementation team") for t in costs["team"])
    assert len(costs) == 5
    assert costs["caseload"].between(150, 300).all()
    assert (costs["price_year"] == "2013/14").all()
    assert costs["training"].between(2000, 3000).all()
    assert costs["supervision"].between(1500, 2500).all()
    assert costs["worker_time"].between(2500, 4000).all()
    per_user = costs[["training", "supervision", "worker_time"]].sum(axis=1) / costs["caseload"]
    assert per_user.between(15, 75).all()


def test_implementation_costs_csv_is_written(study, written):
    csv = pd.read_csv(written["implementation_costs"], dtype={"price_year": str})
    pd.testing.assert_frame_equal(csv, study.implementation_costs, check_dtype=False)


def test_demo_plan_costs_section_matches_the_demo_files(maps):
    base = analysis_dir()
    with open(base / "demo_plan.yaml", encoding="utf-8") as fh:
        costs = yaml.safe_load(fh)["costs"]
    assert costs["perspective"] == "NHS and personal social services"
    assert costs["price_year"] == "2013/14" and costs["recall_months"] == 6 and costs["horizon_months"] == 6
    unit_costs = pd.read_csv(base / costs["unit_costs"], dtype={"price_year": str})
    index = pd.read_csv(base / costs["price_index"], dtype={"price_year": str})
    assert set(unit_costs["price_year"]) | {costs["price_year"]} <= set(index["price_year"])
    services = costs["services"]
    assert set(services) == {"gp_surgery", "gp_telephone", "gp_home_visit", "practice_nurse", "cmht_contact",
                             "community_specialist_nurse"}
    assert set(services) <= set(unit_costs["service"])
    mapped = {col for spec in services.values() for col in spec.values()}
    assert mapped == set(CSRI.values()) == {v for v in maps["participants"]["repeated"].values()
                                            if v.startswith("csri_")}
    assert services["community_specialist_nurse"] == {"contacts": "csri_csn_contacts",
                                                      "minutes_per_contact": "csri_csn_minutes"}
    units = unit_costs.set_index("service")["unit"]
    assert all(units[s] == "contact" for s, spec in services.items() if set(spec) == {"contacts"})
    assert units["community_specialist_nurse"] in ("hour", "minute")
    assert costs["implementation_costs"] == demo.IMPLEMENTATION_COSTS_FILE
    assert costs["utility"] == "eq5d5l_index" and costs["effect"] == "rguk_total"
    assert costs["bootstrap"] == {"replicates": 2000, "seed": 2024}
    assert costs["thresholds"] == {"from": 0, "to": 50000, "step": 1000}
    assert costs["inb_thresholds"] == [20000, 30000]


# ---- through cpeval.io, once it exists

def _read_through_io(path, map_path):
    io = pytest.importorskip("cpeval.io", reason="cpeval.io is not importable yet (another engineer's module)")
    load_map = getattr(io, "load_variable_map", None)
    if load_map is None:
        pytest.skip("cpeval.io has no load_variable_map yet")
    result = io.read_data(path, variable_map=load_map(map_path))
    data = result[0] if isinstance(result, tuple) else getattr(result, "data", result)
    assert isinstance(data, pd.DataFrame)
    return data


def test_study_file_reads_through_cpeval_io(study, written):
    data = _read_through_io(written["participants"], demo.demo_map_paths()["participants"])
    n = len(study.participants)
    assert len(data) == 2 * n
    assert list(data.columns[:2]) == ["participant_id", "timepoint"]
    assert set(data["timepoint"]) == {"baseline", "follow_up"}
    assert set(data["arm"]) == {"implementation", "control"}
    assert set(data["gender"].dropna()) <= {"male", "female", "other / prefer not to say"}
    for col in ["trust_id", "team_id", "worker_id", "age", *SU_ITEMS, *CPIFS_SU]:
        assert col in data.columns, col
    assert not data[SU_ITEMS].isin([-9, -8]).any().any()
    assert data.loc[data["timepoint"] == "baseline", CPIFS_SU].isna().all().all()
    csri = list(CSRI.values())
    assert not data[csri].isin([-9, -8]).any().any()
    for tp in ("baseline", "follow_up"):
        assert data.loc[data["timepoint"] == tp, csri].notna().any().all(), tp


def test_workers_file_reads_through_cpeval_io(study, written):
    data = _read_through_io(written["workers"], demo.demo_map_paths()["workers"])
    assert len(data) == len(study.workers)
    assert set(data["timepoint"]) == {"follow_up"}
    assert set(data["arm"]) == {"implementation", "control"}
    for col in ["worker_id", "team_id", *CPIFS_W]:
        assert col in data.columns, col
