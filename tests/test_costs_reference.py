"""cpeval.costs bootstrap pieces checked against R's boot package, closed forms and invariants.

Reference values: tests/data/costs/, written by tests/r/boot_reference.R (R 4.2.2 Patched 2022-11-10 r83330,
boot 1.3.28.1; the versions are in reference.json "meta" and in the first comment line of every CSV) from the
simulated data set boot_simple.csv (set.seed(20240611) in the script): 40 participants, 8 teams of 3 to 8 people,
4 teams per arm. R is not called here. Numbers are stored with 17 significant digits, so they round-trip exactly.

- boot_freq_R999.csv / boot_freq_R2000.csv: boot.array(b) of boot(d, stat, R, strata = d$arm) (seeds 1999, 2000);
- boot_t_R999.csv / boot_t_R2000.csv: b$t for the four statistics md (mean difference of cost), adj (coefficient of
  arm in lm(cost ~ arm + baseline_cost)), md_na and adj_na (the same on cost_na / baseline_na, which have missing
  values: mean(na.rm = TRUE) and lm's na.omit);
- reference.json: b$t0, boot.ci(b, conf, type = "perc") endpoints (conf 0.95, 0.9, 0.8), boot:::perc.ci on short
  vectors (extreme order statistics, interpolation, non-finite values), and the SD / mean / kurtosis of 20000
  replicate mean differences of a two-stage cluster bootstrap written in R (set.seed(4242)).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cpeval.costs import adjusted_difference, mean_difference, percentile_interval, two_stage_counts

DATA = Path(__file__).parent / "data" / "costs"
REF = json.loads((DATA / "reference.json").read_text())
D = pd.read_csv(DATA / "boot_simple.csv", comment="#")
N = len(D)
TREATED = D["arm"].to_numpy() == 1
STATS = ["md", "adj", "md_na", "adj_na"]
RUNS = ["R999", "R2000"]
CONFS = ["0.95", "0.9", "0.8"]

# exact agreement with R: same arithmetic up to summation order / QR vs normal equations; |values| are ~1e2-1e3
TOL_EXACT = 1e-10


def num(s) -> float:
    """A number as the R script wrote it (sprintf %.17g; "NA" for NA/NaN, "Inf", "-Inf")."""
    return math.nan if s == "NA" else float(s)


def freq(run: str) -> np.ndarray:
    return pd.read_csv(DATA / f"boot_freq_{run}.csv", comment="#").to_numpy()


def boot_t(run: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"boot_t_{run}.csv", comment="#")


def statistic(name: str, weights: np.ndarray) -> np.ndarray:
    """cpeval's version of the statistic R's boot computed under the name `name`."""
    cost = D["cost_na" if name.endswith("_na") else "cost"].to_numpy(dtype=float)
    if name.startswith("md"):
        return np.asarray(mean_difference(weights, cost, TREATED), dtype=float)
    base = D["baseline_na" if name.endswith("_na") else "baseline_cost"].to_numpy(dtype=float)
    return np.asarray(adjusted_difference(weights, cost, TREATED, base), dtype=float)


def sd_mc_se(x: np.ndarray) -> float:
    """Monte Carlo SE of the sample SD of x: SD * sqrt((kurtosis - 1) / (4 B)) (delta method; = SD / sqrt(2 B) for
    normal replicates), with the kurtosis estimated from x itself."""
    c = x - x.mean()
    kurt = np.mean(c**4) / np.mean(c**2) ** 2
    return float(x.std(ddof=1) * math.sqrt((kurt - 1) / (4 * len(x))))


def test_reference_files_are_consistent():
    # the data and the R output agree with each other and with the script's description (R 4.2.2, boot 1.3.28.1)
    assert REF["meta"]["boot"] == "1.3.28.1"
    assert N == REF["n"] == 40
    sizes = D.groupby("team", sort=False).size().to_numpy()
    assert sizes.tolist() == REF["team_sizes"]
    assert (D.groupby("team")["arm"].nunique() == 1).all()
    for run in RUNS:
        f = freq(run)
        assert f.shape == (REF["boot"][run]["R"], N)
        assert (f[:, TREATED].sum(axis=1) == TREATED.sum()).all()
        assert (f[:, ~TREATED].sum(axis=1) == (~TREATED).sum()).all()


# ---- a. statistics under R's resampling: the frequency array as weights reproduces b$t (and t0) ----

@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("name", STATS)
def test_replicates_match_boot_t(run, name):
    # reference: b$t of boot(d, stat, R, strata = d$arm), weights = boot.array(b); R 4.2.2, boot 1.3.28.1,
    # tests/r/boot_reference.R
    got = statistic(name, freq(run))
    want = boot_t(run)[name].to_numpy()
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL_EXACT)


@pytest.mark.parametrize("name", STATS)
def test_point_estimate_matches_boot_t0(name):
    # reference: b$t0 (the statistic on the original data) from tests/r/boot_reference.R, R 4.2.2, boot 1.3.28.1
    got = statistic(name, np.ones(N)).reshape(-1)
    assert got.shape == (1,)
    for run in RUNS:
        assert got[0] == pytest.approx(num(REF["boot"][run]["t0"][name]), abs=TOL_EXACT)


def test_single_replicate_rows_agree_with_matrix_form():
    # a (N,) weight vector gives the same value as that row of a (R, N) array
    f = freq("R999")[:5]
    for name in STATS:
        many = statistic(name, f)
        one = np.array([statistic(name, row).reshape(-1)[0] for row in f])
        np.testing.assert_allclose(one, many, rtol=0, atol=TOL_EXACT)


# ---- b. percentile intervals as boot.ci(type = "perc") ----

@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("conf", CONFS)
@pytest.mark.parametrize("name", STATS)
def test_percentile_interval_matches_boot_ci(run, conf, name):
    # reference: boot.ci(b, conf, type = "perc", index)$percent[4:5], R 4.2.2, boot 1.3.28.1,
    # tests/r/boot_reference.R. R = 999: (R + 1) * alpha is 25 / 975 (conf 0.95), 50 / 950 (0.9), 100 / 900 (0.8)
    # up to rounding of (1 - conf) / 2 (R then interpolates with a weight within 1e-13 of 0 or 1); R = 2000: 50.025
    # / 1950.975 etc., interpolated on the normal quantile scale.
    ref = REF["boot"][run]["perc"][name][conf]
    lo, hi = percentile_interval(boot_t(run)[name].to_numpy(), conf_level=float(conf))
    assert lo == pytest.approx(num(ref["lower"]), abs=TOL_EXACT)
    assert hi == pytest.approx(num(ref["upper"]), abs=TOL_EXACT)


def test_percentile_interval_default_conf_is_95():
    t = boot_t("R2000")["md"].to_numpy()
    assert percentile_interval(t) == pytest.approx(percentile_interval(t, conf_level=0.95), abs=0)


@pytest.mark.parametrize("case", REF["perc_cases"], ids=[c["name"] for c in REF["perc_cases"]])
def test_percentile_interval_short_vectors(case):
    # reference: boot:::perc.ci(t, conf) (the function boot.ci uses), R 4.2.2, boot 1.3.28.1,
    # tests/r/boot_reference.R: R = 19 at conf 0.95 uses the extreme order statistics (min, max; R warns), conf
    # 0.9 the 1st and 19th, other cases interpolate; NA, NaN and +-Inf are dropped before ordering.
    t = np.array([num(v) for v in case["t"]])
    lo, hi = percentile_interval(t, conf_level=case["conf"])
    assert lo == pytest.approx(num(case["lower"]), abs=TOL_EXACT)
    assert hi == pytest.approx(num(case["upper"]), abs=TOL_EXACT)


def test_percentile_interval_ignores_order_and_nonfinite():
    t = boot_t("R2000")["adj"].to_numpy()
    want = percentile_interval(t, conf_level=0.9)
    shuffled = np.random.default_rng(1).permutation(np.concatenate([t, [np.inf, np.nan, -np.inf]]))
    assert percentile_interval(shuffled, conf_level=0.9) == pytest.approx(want, abs=0)


# ---- c. two-stage counts with one participant per cluster = boot's stratified bootstrap ----

def analytic_stratified_sd(y: np.ndarray, treated: np.ndarray) -> float:
    """Exact SD of the stratified (ordinary) bootstrap mean difference: sqrt(sum_arms var_ml(y_arm) / n_arm), where
    var_ml has divisor n (each arm's mean is the mean of n_arm i.i.d. draws from the arm's empirical distribution)."""
    return math.sqrt(sum(np.var(y[g], ddof=0) / g.sum() for g in (treated, ~treated)))


def test_singleton_clusters_invariants_and_distribution():
    y = D["cost"].to_numpy(dtype=float)
    B = 20000
    counts = np.asarray(two_stage_counts(np.arange(N), D["arm"].to_numpy(), B, np.random.default_rng(11)))
    assert counts.shape == (B, N)
    assert np.issubdtype(counts.dtype, np.integer)
    assert (counts >= 0).all()
    # every replicate keeps each stratum's size exactly (boot's strata = arm)
    assert (counts[:, TREATED].sum(axis=1) == TREATED.sum()).all()
    assert (counts[:, ~TREATED].sum(axis=1) == (~TREATED).sum()).all()
    # per participant: count ~ Binomial(n_arm, 1 / n_arm): mean 1, variance 1 - 1 / n_arm. Tolerance 4.5 SE of the
    # Monte Carlo mean (SE = sqrt(var / B)); 40 such checks at 4.5 SE have a family-wise false-alarm rate < 3e-4.
    n_arm = np.where(TREATED, TREATED.sum(), (~TREATED).sum())
    var = 1 - 1 / n_arm
    z = (counts.mean(axis=0) - 1) / np.sqrt(var / B)
    assert np.abs(z).max() < 4.5
    np.testing.assert_allclose(counts.var(axis=0, ddof=1), var, rtol=0.06)  # SE of a variance ~ var * 1.1%: > 5 SE

    md = np.asarray(mean_difference(counts, y, TREATED), dtype=float)
    exact_sd = analytic_stratified_sd(y, TREATED)
    # reference: closed form above (no R). Tolerance: 4 Monte Carlo SE of an SD estimate from B = 20000 replicates,
    # SE = SD * sqrt((kurtosis - 1) / (4 B)) ~ SD / sqrt(2 B) ~ 0.5% of SD.
    assert abs(md.std(ddof=1) - exact_sd) < 4 * sd_mc_se(md)
    # the stratified bootstrap mean difference is unbiased for the sample mean difference: 4 SE of the mean
    t0 = float(np.asarray(mean_difference(np.ones(N), y, TREATED)).reshape(-1)[0])
    assert abs(md.mean() - t0) < 4 * exact_sd / math.sqrt(B)


def test_boot_sd_agrees_with_closed_form():
    # reference sanity: the SD of R's b$t[, "md"] (boot, R = 2000, R 4.2.2, boot 1.3.28.1,
    # tests/r/boot_reference.R) agrees with the same closed form, within 4 Monte Carlo SE (~6% of SD for R = 2000)
    t = boot_t("R2000")["md"].to_numpy()
    exact_sd = analytic_stratified_sd(D["cost"].to_numpy(dtype=float), TREATED)
    assert abs(t.std(ddof=1) - exact_sd) < 4 * sd_mc_se(t)


# ---- d. two-stage cluster bootstrap with the real teams ----

def cluster_multiplicities(counts: np.ndarray, clusters: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate and cluster: total count, cluster size, and total / size (times the cluster was drawn)."""
    labels, codes = np.unique(clusters, return_inverse=True)
    onehot = np.zeros((N, len(labels)), dtype=np.int64)
    onehot[np.arange(N), codes] = 1
    totals = counts @ onehot
    sizes = onehot.sum(axis=0)
    return totals, sizes, totals / sizes


@pytest.fixture(scope="module")
def team_counts():
    clusters = D["team"].to_numpy()
    counts = np.asarray(two_stage_counts(clusters, D["arm"].to_numpy(), 20000, np.random.default_rng(2024)))
    return clusters, counts


def test_two_stage_counts_invariants(team_counts):
    clusters, counts = team_counts
    B = counts.shape[0]
    assert counts.shape == (B, N)
    assert np.issubdtype(counts.dtype, np.integer)
    assert (counts >= 0).all()
    totals, sizes, mult = cluster_multiplicities(counts, clusters)
    # stage 2 draws exactly size_c participants from cluster c each time c is drawn at stage 1: a cluster's total
    # count is a whole multiple of its size (and participants of undrawn clusters have count 0)
    assert np.array_equal(mult, np.round(mult))
    mult = np.round(mult).astype(int)
    team_arm = D.groupby("team")["arm"].first().reindex(np.unique(clusters)).to_numpy()
    for a in (0, 1):
        in_arm = team_arm == a
        g = in_arm.sum()
        # stage 1 draws as many clusters as the stratum has, with replacement, only from that stratum
        assert (mult[:, in_arm].sum(axis=1) == g).all()
        assert ((mult[:, in_arm] > 0).sum(axis=1) <= g).all()
        # total count per stratum = sum of the sizes of the sampled clusters (counted with multiplicity)
        assert np.array_equal(counts[:, D["arm"].to_numpy() == a].sum(axis=1), mult[:, in_arm] @ sizes[in_arm])
    # the stratum totals vary (unequal team sizes), unlike boot's ordinary stratified bootstrap
    assert counts[:, TREATED].sum(axis=1).std() > 0
    # participants outside the drawn clusters are never counted
    codes = np.unique(clusters, return_inverse=True)[1]
    assert ((counts > 0) <= (mult[:, codes] > 0)).all()


def test_two_stage_counts_distribution(team_counts):
    # stage 1: (times each cluster drawn) ~ Multinomial(G, 1/G): mean 1, variance 1 - 1/G; stage 2: given m draws
    # of a cluster of size k, a participant's count ~ Binomial(m k, 1/k). So E[count] = 1 and
    # Var[count] = (1 - 1/k) + (1 - 1/G). Tolerance: 4.5 SE of the Monte Carlo mean (see the singleton test).
    clusters, counts = team_counts
    B = counts.shape[0]
    _, sizes, mult = cluster_multiplicities(counts, clusters)
    k = sizes[np.unique(clusters, return_inverse=True)[1]]
    var = (1 - 1 / k) + (1 - 1 / 4)
    z = (counts.mean(axis=0) - 1) / np.sqrt(var / B)
    assert np.abs(z).max() < 4.5
    np.testing.assert_allclose(counts.var(axis=0, ddof=1), var, rtol=0.06)
    zm = (mult.mean(axis=0) - 1) / np.sqrt((1 - 1 / 4) / B)
    assert np.abs(zm).max() < 4.5


def test_two_stage_sd_matches_r(team_counts):
    # reference: SD and mean of 20000 replicate mean differences of the two-stage cluster bootstrap written in R in
    # tests/r/boot_reference.R (set.seed(4242); R 4.2.2). Both sides are Monte Carlo estimates of the same
    # bootstrap SD; the SE of each is SD * sqrt((kurtosis - 1) / (4 B)) (about SD / sqrt(2 B) = 0.5% of SD here; R's
    # is stored as sd_mc_se), so their difference has SE sqrt(se_R^2 + se_py^2); tolerance 4 SE (~2.7% of SD).
    # The replicate means (not equal to t0: with unequal team sizes each arm mean is a ratio) agree within 4 SE too.
    _, counts = team_counts
    y = D["cost"].to_numpy(dtype=float)
    md = np.asarray(mean_difference(counts, y, TREATED), dtype=float)
    ref = REF["two_stage"]
    r_sd, r_se, r_mean = num(ref["sd"]), num(ref["sd_mc_se"]), num(ref["mean"])
    assert abs(md.std(ddof=1) - r_sd) < 4 * math.hypot(r_se, sd_mc_se(md))
    mean_se = math.hypot(r_sd / math.sqrt(ref["replicates"]), md.std(ddof=1) / math.sqrt(len(md)))
    assert abs(md.mean() - r_mean) < 4 * mean_se


def test_two_stage_equal_team_sizes_closed_form():
    # with equal cluster sizes k (here 8 teams of 5, 4 per arm) each arm's resampled mean is the mean of G i.i.d.
    # cluster sums, so Var = mean_c(var_ml within c) / (G k) + var_ml(cluster means) / G per arm, exactly
    # (law of total variance; var_ml has divisor n). Reference: this closed form (no R); tolerance 4 MC SE as above.
    y = D["cost"].to_numpy(dtype=float)
    arm = D["arm"].to_numpy()
    teams = np.empty(N, dtype=int)
    for a in (0, 1):
        idx = np.flatnonzero(arm == a)
        teams[idx] = 10 * a + np.arange(len(idx)) // 5
    var = 0.0
    for a in (0, 1):
        groups = [y[teams == t] for t in np.unique(teams[arm == a])]
        G, k = len(groups), len(groups[0])
        var += np.mean([np.var(g) for g in groups]) / (G * k) + np.var([g.mean() for g in groups]) / G
    counts = np.asarray(two_stage_counts(teams, arm, 20000, np.random.default_rng(77)))
    assert (counts[:, arm == 1].sum(axis=1) == 20).all() and (counts[:, arm == 0].sum(axis=1) == 20).all()
    md = np.asarray(mean_difference(counts, y, TREATED), dtype=float)
    assert abs(md.std(ddof=1) - math.sqrt(var)) < 4 * sd_mc_se(md)


def test_two_stage_counts_reproducible():
    clusters, arm = D["team"].to_numpy(), D["arm"].to_numpy()
    a = two_stage_counts(clusters, arm, 50, np.random.default_rng(5))
    b = two_stage_counts(clusters, arm, 50, np.random.default_rng(5))
    assert np.array_equal(a, b)
