"""cpeval.mixed: REML random-intercept models checked against R lme4 + lmerTest, closed forms and invariants.

Reference values: tests/data/lmer/reference.json, written by tests/r/lmer_reference.R (R 4.2.2, lme4 1.1.31,
lmerTest 3.1.3, nlme 3.1.162; the versions are also in the JSON's "meta") from the data sets and model list that
tests/make_lmer_data.py writes with fixed seeds (tests/data/lmer/*.csv, models.json). R is not called here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import cpeval.mixed as mixed
from cpeval.errors import CpevalError
from cpeval.mixed import MixedFit, fit_mixed

DATA = Path(__file__).parent / "data" / "lmer"
SPEC = json.loads((DATA / "models.json").read_text())
REF = json.loads((DATA / "reference.json").read_text())
MODELS = list(SPEC["models"])
FIXED_COLUMNS = ["estimate", "std_error", "df", "t_value", "p_value", "conf_low", "conf_high"]


def design(d: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """X as R's model.matrix names it: (Intercept), numeric terms, treatment dummies <var><level>, a:b products."""
    X = pd.DataFrame({"(Intercept)": np.ones(len(d))})
    for t in terms:
        if t in SPEC["factors"]:
            for lev in SPEC["factors"][t][1:]:
                X[f"{t}{lev}"] = (d[t] == lev).astype(float)
        elif ":" in t:
            a, b = t.split(":")
            X[t] = d[a].astype(float) * d[b].astype(float)
        else:
            X[t] = d[t].astype(float)
    return X


def load(name: str):
    m = SPEC["models"][name]
    d = pd.read_csv(DATA / f"{m['data']}.csv")
    return d, design(d, m["terms"]), [d[g].to_numpy() for g in m["groups"]], m["groups"]


def fit_model(name: str, **kw) -> MixedFit:
    d, X, groups, names = load(name)
    return fit_mixed(d["y"].to_numpy(), X, groups if len(groups) > 1 else groups[0], names, **kw)


def ref_fixed(name: str, index) -> pd.DataFrame:
    return pd.DataFrame(REF["models"][name]["fixed"]).T.loc[list(index)].astype(float)


# ------------------------------------------------------------------------------------ agreement with lmerTest
# lmerTest's df on a singular fit treat the zero variance as known; cpeval's default there is between-within, so
# the comparison with lmerTest uses singular_df="satterthwaite" (the default is checked separately below).
# Achieved (max over fixed effects and models): estimates 4e-6 of max(|est|, SE), SE 8e-6, df 1.5e-4 (nested_team0,
# where lme4 stops at theta 2.5e-4 instead of 0; elsewhere 6.5e-5), p 2e-6, variances 3e-6 of the total variance;
# cpeval's REML criterion is never above lme4's (lme4's optimiser tolerance explains the small differences).


@pytest.mark.parametrize("name", MODELS)
def test_fixed_effects_match_lmertest(name):
    fit = fit_model(name, singular_df="satterthwaite")
    ref = ref_fixed(name, fit.fixed.index)
    assert list(fit.fixed.columns) == FIXED_COLUMNS
    assert list(fit.fixed.index) == list(ref.index)
    scale = np.maximum(ref["estimate"].abs(), ref["std_error"])
    assert np.all((fit.fixed["estimate"] - ref["estimate"]).abs() <= 1e-4 * scale)
    assert np.allclose(fit.fixed["std_error"], ref["std_error"], rtol=1e-4, atol=0)
    assert np.allclose(fit.fixed["df"], ref["df"], rtol=0.01 if name != "nested_team0" else 0.002, atol=0)
    assert np.allclose(fit.fixed["t_value"], ref["t_value"], rtol=1e-4, atol=1e-6)
    assert np.all((fit.fixed["p_value"] - ref["p_value"]).abs() <= 1e-3)
    # vcov(fit) is (X' V^-1 X)^-1 at the REML estimates
    V = pd.DataFrame(REF["models"][name]["vcov"], index=REF["models"][name]["vcov_names"],
                     columns=REF["models"][name]["vcov_names"]).loc[fit.fixed.index, fit.fixed.index].to_numpy()
    assert np.allclose(fit.cov_fixed.to_numpy(), V, rtol=1e-4, atol=1e-4 * np.sqrt(np.outer(np.diag(V), np.diag(V))))
    assert np.allclose(np.sqrt(np.diag(fit.cov_fixed)), fit.fixed["std_error"])


@pytest.mark.parametrize("name", MODELS)
def test_variance_components_and_reml_criterion_match_lme4(name):
    fit = fit_model(name)
    r = REF["models"][name]
    assert list(fit.variances)[-1] == "residual"
    assert set(fit.variances) == set(r["variances"])
    total = sum(r["variances"].values())
    for k, v in r["variances"].items():
        assert abs(fit.variances[k] - v) <= 1e-4 * total, k
    # cpeval solves the REML problem exactly: never worse than lme4's optimiser, and at most a hair better
    assert fit.reml_criterion <= r["reml_criterion"] + 1e-6
    assert r["reml_criterion"] - fit.reml_criterion < 1e-4
    assert fit.n_obs == r["n_obs"]
    assert fit.n_groups == r["n_groups"] | {}  # same keys and counts
    assert fit.converged


@pytest.mark.parametrize("name", MODELS)
def test_singular_flag_matches_lme4(name):
    fit = fit_model(name)
    r = REF["models"][name]
    lme4_theta_min = min(r["theta"].values())
    if name == "nested_team0":
        # lme4's optimiser stops at theta 2.5e-4 (just above isSingular's 1e-4, so not flagged); the REML optimum
        # is exactly 0, which cpeval finds (its criterion is lower, see above) and reports as singular
        assert not r["singular"] and lme4_theta_min < 1e-3
        assert fit.singular and fit.variances["team"] == 0.0
    else:
        assert fit.singular == r["singular"]
    if fit.singular:
        zero = [g for g, v in fit.variances.items() if g != "residual" and v == 0.0]
        assert zero, "a singular fit found by cpeval is exactly on the boundary"
        for g in zero:
            assert f"singular fit: {g} variance estimated as zero" in fit.notes
    else:
        assert not any(n.startswith("singular") for n in fit.notes)


@pytest.mark.parametrize("name", MODELS)
def test_contrast_matches_lmertest_contest1d(name):
    fit = fit_model(name, singular_df="satterthwaite")
    r = REF["models"][name]["contrast"]
    c = fit.contrast(SPEC["models"][name]["contrast"])
    assert c["estimate"] == pytest.approx(r["estimate"], rel=1e-4, abs=1e-4 * r["std_error"])
    assert c["std_error"] == pytest.approx(r["std_error"], rel=1e-4)
    assert c["df"] == pytest.approx(r["df"], rel=0.01)
    assert c["p_value"] == pytest.approx(r["p_value"], abs=1e-3)
    assert c["t"] == c["t_value"] and c["p"] == c["p_value"]
    q = c["conf_high"] - c["estimate"]
    assert q == pytest.approx(c["std_error"] * float(mixed.stats.t.ppf(0.975, c["df"])))


@pytest.mark.parametrize("name", MODELS)
def test_icc_profile_interval_matches_r_profile(name):
    # reference: the same profile computed in R from lme4's own deviance function (lmer(devFunOnly = TRUE))
    fit = fit_model(name)
    r = REF["models"][name]["icc_team_profile"]
    ic = fit.icc("team")
    assert ic["icc"] == pytest.approx(r["icc"], abs=1e-5)
    assert ic["conf_low"] == pytest.approx(r["conf_low"], abs=1e-5)
    assert ic["conf_high"] == pytest.approx(r["conf_high"], abs=1e-5)
    assert ic["conf_low"] <= ic["icc"] <= ic["conf_high"]
    assert "profile" in ic["method"]


@pytest.mark.parametrize("name", [m for m in MODELS if not REF["models"][m]["singular"] and m != "nested_team0"])
def test_variance_parameter_covariance_matches_lmertest(name):
    # lmerTest's vcov_varpar is 2 H^-1 in (theta..., sigma), lme4's theta order (participant before team);
    # map cpeval's varpar_cov (in tau2..., sigma2) there with the delta method: theta = sqrt(tau2 / sigma2)
    fit = fit_model(name)
    phi = np.array(list(fit.variances.values()))
    k = phi.size - 1
    s2 = phi[-1]
    J = np.zeros((k + 1, k + 1))  # d(theta, sigma) / d(phi)
    for i in range(k):
        th = math.sqrt(phi[i] / s2)
        J[i, i] = 1 / (2 * th * s2)
        J[i, k] = -phi[i] / s2 ** 2 / (2 * th)
    J[k, k] = 1 / (2 * math.sqrt(s2))
    V = J @ fit.varpar_cov @ J.T
    if k == 2:
        P = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
        V = P @ V @ P.T
    R = np.array(REF["models"][name]["vcov_varpar"])
    assert np.allclose(V, R, rtol=1e-3, atol=1e-3 * np.sqrt(np.outer(np.diag(R), np.diag(R))))


def test_nested_arm_by_time_term():
    # the secondary model: all time points, people with a baseline row only kept
    d, X, groups, names = load("nested")
    assert d.groupby("participant").size().value_counts().to_dict() == {2: 123, 1: 27}
    fit = fit_mixed(d["y"], X, groups, names)
    ref = ref_fixed("nested", X.columns).loc["arm:time"]
    row = fit.fixed.loc["arm:time"]
    assert row["estimate"] == pytest.approx(ref["estimate"], rel=1e-5)
    assert row["std_error"] == pytest.approx(ref["std_error"], rel=1e-4)
    assert row["df"] == pytest.approx(ref["df"], rel=1e-3)
    assert row["p_value"] == pytest.approx(ref["p_value"], abs=1e-4)
    assert fit.df_method == "Satterthwaite" and not fit.singular
    assert fit.n_groups == {"team": 10, "participant": 150} and fit.n_obs == len(d)


# --------------------------------------------------------------------------------------------- singular fits


def test_singular_fit_default_uses_between_within_df_and_says_so():
    fit = fit_model("singular")
    ref = ref_fixed("singular", fit.fixed.index)
    assert fit.singular and fit.variances["team"] == 0.0
    assert fit.df_method == "between-within"
    # team-level terms (intercept, arm): 10 teams - 2; within-team x: 151 - 10 - 1 (nlme gives arm 8, x 140 too)
    assert fit.fixed["df"].to_dict() == {"(Intercept)": 8.0, "arm": 8.0, "x": 140.0}
    nlme = REF["models"]["singular"]["nlme_df"]
    assert fit.fixed.loc["arm", "df"] == nlme["arm"] and fit.fixed.loc["x", "df"] == nlme["x"]
    # estimates and SEs are lme4's; only df (and so p and CI) differ from lmerTest's 148 df
    assert np.allclose(fit.fixed["estimate"], ref["estimate"], rtol=1e-8)
    assert np.allclose(fit.fixed["std_error"], ref["std_error"], rtol=1e-8)
    assert ref.loc["arm", "df"] == pytest.approx(148.0)
    assert "singular fit: team variance estimated as zero" in fit.notes
    note = next(n for n in fit.notes if "between-within df used" in n)
    assert "team-level terms 8 df" in note and "arm 148.0" in note
    assert fit.contrast({"arm": 1})["df"] == 8.0
    assert fit.contrast({"arm": 1, "x": 1})["df"] == 8.0  # smallest df among the columns involved


def test_singular_fit_is_ols_for_single_grouping():
    # team variance 0: the fit is OLS, and Satterthwaite on the remaining sigma2 gives exactly n - p (lmerTest)
    d, X, groups, names = load("singular")
    fit = fit_mixed(d["y"], X, groups[0], names, singular_df="satterthwaite")
    beta, *_ = np.linalg.lstsq(X.to_numpy(), d["y"].to_numpy(), rcond=None)
    resid = d["y"].to_numpy() - X.to_numpy() @ beta
    n, p = X.shape
    s2 = resid @ resid / (n - p)
    assert np.allclose(fit.fixed["estimate"], beta, rtol=1e-10)
    assert fit.variances["residual"] == pytest.approx(s2, rel=1e-10)
    assert np.allclose(fit.cov_fixed, s2 * np.linalg.inv(X.T.to_numpy() @ X.to_numpy()), rtol=1e-8)
    assert np.allclose(fit.fixed["df"], n - p, rtol=1e-8)
    assert fit.df_method == "Satterthwaite"
    # varpar_cov: NaN for the zero team variance; var(sigma2-hat) = 2 sigma^4 / (n - p) as in OLS
    assert np.isnan(fit.varpar_cov[0]).all() and np.isnan(fit.varpar_cov[:, 0]).all()
    assert fit.varpar_cov[1, 1] == pytest.approx(2 * s2 ** 2 / (n - p), rel=1e-8)
    assert any("treat the zero variance as known" in n for n in fit.notes)


def test_nested_singular_fits_default_to_between_within():
    for name in ("nested_team0", "nested_part0"):
        fit = fit_model(name)
        nlme = REF["models"][name]["nlme_df"]
        assert fit.singular and fit.df_method == "between-within"
        for term in ("arm", "time", "arm:time", "age", "sexM"):
            assert fit.fixed.loc[term, "df"] == nlme[term], (name, term)
    # lmerTest gives the arm effect 200 df when the team variance is (nearly) zero
    assert ref_fixed("nested_team0", ["arm"]).loc["arm", "df"] > 199


def test_near_zero_interior_variance_counts_as_singular(monkeypatch):
    # lme4's isSingular: theta < 1e-4. Shift the threshold above small_icc's theta (0.062) to exercise it.
    monkeypatch.setattr(mixed, "_SINGULAR_THETA", 0.1)
    fit = fit_model("small_icc")
    assert fit.singular and fit.variances["team"] > 0
    assert any("nearly zero" in n for n in fit.notes)
    assert fit.df_method == "between-within"


def test_hessian_not_positive_definite_falls_back_to_between_within(monkeypatch):
    monkeypatch.setattr(mixed, "_HESS_TOL", 2.0)  # no Hessian passes: forces the fallback path
    fit = fit_model("balanced_x")
    assert fit.df_method == "between-within"
    assert any("Hessian" in n and "between-within df used" in n for n in fit.notes)
    assert fit.fixed["df"].to_dict() == {"(Intercept)": 8.0, "arm": 8.0, "x": 139.0}
    assert fit.contrast([0, 1, 0])["df"] == 8.0
    assert fit.varpar_cov is None


def test_small_icc_interior_is_not_singular():
    fit = fit_model("small_icc")
    assert not fit.singular and 0 < fit.variances["team"] < 0.01
    assert fit.df_method == "Satterthwaite"
    assert fit.icc("team")["conf_low"] == 0.0  # the profile interval reaches the boundary


# ----------------------------------------------------------------------------------- closed forms, invariants


def _balanced(seed: int, n_teams: int, size: int, tau: float, with_z: bool):
    rng = np.random.default_rng(seed)
    team = np.repeat(np.arange(n_teams), size)
    arm = (np.arange(n_teams) % 2)[team].astype(float)
    z = rng.normal(size=n_teams)[team]
    y = 1 + 0.5 * arm + 0.3 * z + rng.normal(0, tau, n_teams)[team] + rng.normal(size=team.size)
    X = pd.DataFrame({"(Intercept)": 1.0, "arm": arm} | ({"z": z} if with_z else {}))
    return y, X, team


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_teams=st.integers(4, 14), size=st.integers(2, 12),
       tau=st.sampled_from([0.0, 0.3, 1.0]), with_z=st.booleans())
def test_balanced_cluster_level_design_matches_anova(seed, n_teams, size, tau, with_z):
    # Balanced teams and team-level covariates only: REML = ANOVA estimates truncated at 0,
    # sigma2 = within-team mean square, sigma2 + m tau2 = residual mean square of the team-means regression x m,
    # and (interior) the Satterthwaite df of every team-level effect is exactly teams - p.
    y, X, team = _balanced(seed, n_teams, size, tau, with_z)
    p = X.shape[1]
    if n_teams - p < 1:
        return
    fit = fit_mixed(y, X, team, ["team"])
    means = pd.Series(y).groupby(team).mean().to_numpy()
    Xt = X.groupby(team).first().to_numpy()
    bt, *_ = np.linalg.lstsq(Xt, means, rcond=None)
    msb = size * np.sum((means - Xt @ bt) ** 2) / (n_teams - p)
    msw = np.sum((y - means[team]) ** 2) / (n_teams * (size - 1))
    if msb > msw * (1 + 1e-6):
        assert not fit.singular
        assert fit.variances["residual"] == pytest.approx(msw, rel=1e-6)
        assert fit.variances["team"] == pytest.approx((msb - msw) / size, rel=1e-5, abs=1e-9 * msw)
        assert np.allclose(fit.fixed["df"], n_teams - p, rtol=1e-6)
        assert np.allclose(fit.fixed["estimate"], bt, rtol=1e-7, atol=1e-9)
        assert np.allclose(fit.fixed["std_error"] ** 2, np.diag(np.linalg.inv(Xt.T @ Xt)) * msb / size, rtol=1e-6)
    elif msb < msw * (1 - 1e-6):
        assert fit.singular and fit.variances["team"] == 0.0
        resid = y - X.to_numpy() @ np.linalg.lstsq(X.to_numpy(), y, rcond=None)[0]
        assert fit.variances["residual"] == pytest.approx(resid @ resid / (len(y) - p), rel=1e-8)
        assert fit.df_method == "between-within"
        assert np.all(fit.fixed["df"] == n_teams - p)


def test_arm_df_is_teams_minus_two_and_minus_three():
    # the 10-team balanced reference set: y ~ arm -> 8 df; y ~ arm + team-level covariate -> 7 df (lmerTest agrees)
    assert fit_model("balanced_arm").fixed.loc["arm", "df"] == pytest.approx(8.0, rel=1e-9)
    assert fit_model("balanced_zteam").fixed.loc["arm", "df"] == pytest.approx(7.0, rel=1e-9)
    assert ref_fixed("balanced_zteam", ["arm"]).loc["arm", "df"] == pytest.approx(7.0, rel=1e-6)


def test_invariances_permutation_labels_scale_and_shift():
    d, X, groups, names = load("nested")
    y = d["y"].to_numpy()
    base = fit_mixed(y, X, groups, names)
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(y))
    relabel = [np.array([f"t{v}" for v in groups[0]])[perm], (groups[1] * 7 + 3)[perm]]
    f2 = fit_mixed(y[perm], X.iloc[perm].reset_index(drop=True), relabel, names)
    assert np.allclose(f2.fixed.to_numpy(), base.fixed.to_numpy(), rtol=1e-7)
    assert f2.reml_criterion == pytest.approx(base.reml_criterion, rel=1e-10)
    # y -> 3 y + 2: estimates scale (intercept shifts), variances x 9, df and p unchanged
    f3 = fit_mixed(3 * y + 2, X, groups, names)
    assert np.allclose(f3.fixed["estimate"].drop("(Intercept)"), 3 * base.fixed["estimate"].drop("(Intercept)"))
    assert f3.fixed.loc["(Intercept)", "estimate"] == pytest.approx(3 * base.fixed.loc["(Intercept)", "estimate"] + 2)
    assert np.allclose(f3.fixed["std_error"], 3 * base.fixed["std_error"], rtol=1e-7)
    assert np.allclose(f3.fixed["df"], base.fixed["df"], rtol=1e-6)
    for k in base.variances:
        assert f3.variances[k] == pytest.approx(9 * base.variances[k], rel=1e-6)
    # reparametrising X (arm coded -1/+1, intercept scaled by 2) leaves contrasts of the same quantity unchanged
    X4 = X.assign(**{"(Intercept)": 2.0, "arm": 2 * X["arm"] - 1})
    f4 = fit_mixed(y, X4, groups, names)
    assert f4.reml_criterion == pytest.approx(base.reml_criterion + np.log(16), rel=1e-9)  # |X'V^-1X| x det(B)^2
    c_base = base.contrast({"arm": 1})
    c4 = f4.contrast({"arm": 2})
    for key in ("estimate", "std_error", "df", "p_value"):
        assert c4[key] == pytest.approx(c_base[key], rel=1e-6)


def test_design_without_intercept_gives_the_same_model():
    # cell-means coding (no constant column, so no centring inside cpeval): same fit, contrasts equal
    d, X, groups, names = load("covariates")
    base = fit_mixed(d["y"], X, groups[0], names)
    Xc = X.drop(columns="(Intercept)").assign(control=1.0 - X["arm"]).rename(columns={"arm": "implementation"})
    cells = fit_mixed(d["y"], Xc, groups[0], names)
    assert cells.reml_criterion == pytest.approx(base.reml_criterion, rel=1e-10)  # X B with det(B) = -1
    diff = cells.contrast({"implementation": 1, "control": -1})
    for key in ("estimate", "std_error", "df", "p_value"):
        assert diff[key] == pytest.approx(base.fixed.loc["arm", key], rel=1e-7)
    assert cells.fixed.loc["control", "estimate"] == pytest.approx(base.fixed.loc["(Intercept)", "estimate"])


@pytest.mark.filterwarnings("ignore::Warning")
def test_statsmodels_agrees_where_it_is_right():
    import statsmodels.api as sm

    # interior, balanced: statsmodels' REML variance estimates match
    d, X, groups, names = load("balanced_x")
    fit = fit_mixed(d["y"], X, groups[0], names)
    md = sm.MixedLM(d["y"].to_numpy(), X.to_numpy(), groups=groups[0])
    res = md.fit(reml=True)  # (method=["lbfgs"] alone stops at cov_re 0 here, "converged", llf inf)
    assert fit.variances["residual"] == pytest.approx(res.scale, rel=1e-4)
    assert fit.variances["team"] == pytest.approx(float(np.asarray(res.cov_re)[0, 0]), rel=1e-3)
    assert np.allclose(fit.fixed["estimate"], res.fe_params, rtol=1e-4)
    # unbalanced: (X' V^-1 X)^-1 at statsmodels' own variance estimates gives lme4's SE, statsmodels' bse does not
    d, X, groups, names = load("unbalanced_arm")
    fit = fit_mixed(d["y"], X, groups[0], names)
    res = sm.MixedLM(d["y"].to_numpy(), X.to_numpy(), groups=groups[0]).fit(reml=True)
    tau2, s2 = float(np.asarray(res.cov_re)[0, 0]), res.scale
    Xa = X.to_numpy()
    info = sum(Xa[groups[0] == g].T @ np.linalg.inv(s2 * np.eye((groups[0] == g).sum()) + tau2)
               @ Xa[groups[0] == g] for g in np.unique(groups[0]))
    se_sm_vinv = np.sqrt(np.diag(np.linalg.inv(info)))
    assert np.allclose(se_sm_vinv, fit.fixed["std_error"], rtol=2e-4)  # seen: 4e-5
    assert abs(res.bse[1] / fit.fixed.loc["arm", "std_error"] - 1) > 2e-3  # seen: 3.3e-3 (1.1523 vs 1.1485)


def test_analytic_derivatives_match_finite_differences():
    d, X, groups, names = load("nested")
    fit = fit_mixed(d["y"], X, groups, names)
    prob = fit._state["prob"]
    n, p = prob.n, prob.p
    lam = np.array([0.3, 0.7])
    ev = prob.evaluate(lam, 2)

    def dev_np(x):  # non-profiled REML criterion in (lam_t, lam_p, sigma2)
        e = prob.evaluate(x[:2], 0)
        return e.dev - (n - p) * (1 + np.log(2 * np.pi * e.r2 / (n - p))) + (n - p) * np.log(2 * np.pi * x[2]) \
            + e.r2 / x[2]

    x0 = np.append(lam, ev.r2 / (n - p))
    h = 1e-4
    H = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            ei, ej = np.eye(3)[i] * h, np.eye(3)[j] * h
            H[i, j] = (dev_np(x0 + ei + ej) - dev_np(x0 + ei - ej) - dev_np(x0 - ei + ej) + dev_np(x0 - ei - ej)) / (
                4 * h * h)
    assert np.allclose(ev.hess, H, rtol=1e-5, atol=1e-4)
    for i in range(2):
        e = np.eye(2)[i] * 1e-6
        num = (prob.evaluate(lam + e, 0).dev - prob.evaluate(lam - e, 0).dev) / 2e-6
        assert ev.grad[i] == pytest.approx(num, rel=1e-6)


def test_icc_delta_method_and_result_fields():
    fit = fit_model("large_icc")
    prof = fit.icc("team")
    delta = fit.icc("team", method="delta")
    assert delta["icc"] == prof["icc"] == pytest.approx(fit.variances["team"] / sum(fit.variances.values()))
    assert 0 < delta["conf_low"] < delta["icc"] < delta["conf_high"] < 1
    assert "logit" in delta["method"]
    wider = fit.icc("team", conf_level=0.99)
    assert wider["conf_low"] <= prof["conf_low"] and wider["conf_high"] >= prof["conf_high"]
    sing = fit_model("singular").icc("team", method="delta")
    assert math.isnan(sing["conf_low"]) and "not available" in sing["method"]
    part0 = fit_model("nested_part0")  # participant variance 0: delta method on the remaining components
    d0 = part0.icc("team", method="delta")
    assert 0 < d0["conf_low"] < d0["icc"] < d0["conf_high"] < 1
    nested = fit_model("nested")
    ip = nested.icc("participant")
    assert ip["icc"] == pytest.approx(nested.variances["participant"] / sum(nested.variances.values()))
    assert ip["conf_low"] < ip["icc"] < ip["conf_high"]


def test_contrast_accepts_vectors_dicts_and_series():
    fit = fit_model("covariates")
    row = fit.fixed.loc["arm"]
    for L in ([0, 1, 0, 0, 0, 0, 0], np.eye(7)[1], {"arm": 1}, pd.Series({"arm": 1.0})):
        c = fit.contrast(L)
        for key in FIXED_COLUMNS:
            assert c[key] == pytest.approx(row[key], rel=1e-10)
    assert fit.contrast({"arm": 1}, conf_level=0.9)["conf_high"] < row["conf_high"]


def test_fixed_table_is_t_based():
    fit = fit_model("unbalanced_arm")
    r = fit.fixed.loc["arm"]
    q = float(mixed.stats.t.ppf(0.975, r["df"]))
    assert r["conf_low"] == pytest.approx(r["estimate"] - q * r["std_error"])
    assert r["p_value"] == pytest.approx(2 * mixed.stats.t.sf(abs(r["t_value"]), r["df"]))
    assert fit.conf_level == 0.95


def test_series_inputs_and_default_group_names():
    d, X, groups, names = load("nested")
    fit = fit_mixed(d["y"], X, [d["team"], d["participant"]])
    assert list(fit.variances) == ["team", "participant", "residual"]
    fit2 = fit_mixed(d["y"].to_numpy(), X, [groups[0], groups[1]])
    assert list(fit2.variances) == ["group1", "group2", "residual"]
    assert fit2.reml_criterion == pytest.approx(fit.reml_criterion)
    fit3 = fit_mixed(d["y"], X, d[["team", "participant"]])
    assert list(fit3.variances) == ["team", "participant", "residual"]
    fit4 = fit_mixed(d["y"], X, np.vstack(groups), names)
    assert fit4.reml_criterion == pytest.approx(fit.reml_criterion)
    single = fit_mixed(d["y"], X, d["team"])
    assert list(single.variances) == ["team", "residual"] and single.n_groups == {"team": 10}


def _dense_reml(y, X, Zs, variances):
    """-2 REML log-likelihood from the dense marginal covariance (independent of cpeval's closed forms)."""
    n, p = X.shape
    V = variances[-1] * np.eye(n) + sum(v * Z @ Z.T for v, Z in zip(variances[:-1], Zs))
    Vi = np.linalg.inv(V)
    XVX = X.T @ Vi @ X
    beta = np.linalg.solve(XVX, X.T @ Vi @ y)
    r = y - X @ beta
    return (np.linalg.slogdet(V)[1] + np.linalg.slogdet(XVX)[1] + r @ Vi @ r + (n - p) * np.log(2 * np.pi),
            beta, np.linalg.inv(XVX))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), nested=st.booleans(), tau=st.sampled_from([0.0, 0.2, 1.0, 4.0]))
def test_closed_forms_match_dense_algebra_and_optimum_is_global(seed, nested, tau):
    # small random designs with unequal team and participant sizes (some people with one row)
    rng = np.random.default_rng(seed)
    n_teams = int(rng.integers(4, 8))
    rows = []
    for t in range(n_teams):
        for j in range(int(rng.integers(1, 6))):
            b = rng.normal(0, 0.7)
            for _ in range(int(rng.integers(1, 4)) if nested else 1):
                rows.append((t, f"{t}-{j}", t % 2, rng.normal(), b))
    d = pd.DataFrame(rows, columns=["team", "pid", "arm", "x", "b"])
    u = rng.normal(0, tau, n_teams)
    y = 1 + 0.5 * d["arm"] + 0.3 * d["x"] + u[d["team"]] + d["b"] * nested + rng.normal(size=len(d))
    X = pd.DataFrame({"(Intercept)": 1.0, "arm": d["arm"].astype(float), "x": d["x"]})
    groups = [d["team"].to_numpy(), d["pid"].to_numpy()] if nested else d["team"].to_numpy()
    if nested and d["pid"].nunique() in (len(d), n_teams):
        return
    fit = fit_mixed(y.to_numpy(), X, groups, ["team", "pid"] if nested else ["team"])
    Zs = [pd.get_dummies(d["team"]).to_numpy(float)] + ([pd.get_dummies(d["pid"]).to_numpy(float)] if nested else [])
    phi = list(fit.variances.values())
    crit, beta, cov = _dense_reml(y.to_numpy(), X.to_numpy(), Zs, phi)
    assert fit.reml_criterion == pytest.approx(crit, rel=1e-9, abs=1e-8)
    assert np.allclose(fit.fixed["estimate"], beta, rtol=1e-7, atol=1e-9)
    assert np.allclose(fit.cov_fixed.to_numpy(), cov, rtol=1e-7, atol=1e-12)
    # no point of a grid of relative variances has a lower profiled criterion
    prob = fit._state["prob"]
    grid = [0.0, 1e-3, 0.01, 0.05, 0.1, 0.3, 0.6, 1.0, 2.0, 5.0, 20.0]
    pts = [np.array([a]) for a in grid] if not nested else [np.array([a, b]) for a in grid for b in grid]
    best = min(ev.dev for ev in (prob.evaluate(pt, 0) for pt in pts) if ev is not None)
    assert fit.reml_criterion <= best + 1e-9
    assert fit.converged


# -------------------------------------------------------------------------------------------- error messages


@pytest.fixture
def small():
    d, X, groups, names = load("balanced_x")
    return d["y"].to_numpy().copy(), X.copy(), groups[0].copy()


def _err(y, X, g, match, **kw):
    with pytest.raises(CpevalError, match=match):
        fit_mixed(y, X, g, **kw)


def test_errors_missing_values(small):
    y, X, g = small
    y2 = y.copy()
    y2[[3, 7]] = np.nan
    _err(y2, X, g, r"outcome 'y' has 2 missing or infinite value\(s\) \(rows 3, 7\)")
    _err(pd.Series(y2, name="wemwbs_total"), X, g, "outcome 'wemwbs_total' has 2 missing")
    X2 = X.copy()
    X2.loc[5, "x"] = np.nan
    _err(y, X2, g, r"X column 'x' has 1 missing or infinite value\(s\) \(row 5\)")
    g2 = g.astype(float)
    g2[0] = np.nan
    _err(y, X, g2, r"group labels 'team' have 1 missing value", group_names=["team"])


def test_errors_groups(small):
    y, X, g = small
    _err(y, X, np.ones_like(g), r"grouping factor 'team' has 1 level \(1\).*at least 2 groups", group_names=["team"])
    _err(y, X, np.arange(len(y)), "one row per group", group_names=["team"])
    _err(y, X, g[:-1], "have 149 values but there are 150 rows")
    _err(y, X, g, r"1 grouping factor\(s\) but 2 name\(s\)", group_names=["a", "b"])
    _err(y, X, g, "not 'residual'", group_names=["residual"])
    _err(y, X, [g, g, g], "one array of labels or two")
    # not nested: participant 1 in two teams
    inner = np.arange(len(y)) // 2
    inner[15] = inner[14]  # rows 14 and 15 are in teams 1 and 2
    inner[16] = inner[17] = 10_000
    _err(y, X, [g, inner], r"'participant' is not nested in 'team'.*appears in team 1, 2",
         group_names=["team", "participant"])
    _err(y, X, [g, g * 1], "single 'participant'", group_names=["team", "participant"])


def test_errors_design(small):
    y, X, g = small
    _err(y, X.assign(x=0.0), g, r"X column 'x' is 0 in every row")
    _err(y, X.assign(x=3.0), g, r"X column 'x' is constant \(3 in every row\).*only one constant column")
    _err(y, X.assign(x2=2 * X["x"] - X["arm"]), g, r"X column 'x2' is a linear combination of 'arm', 'x'")
    _err(y, X.assign(ctl=1 - X["arm"]), g, r"X column 'ctl' is a linear combination of '\(Intercept\)', 'arm'")
    _err(y, X.assign(site=["a"] * len(y)), g, r"X column 'site' is not numeric")
    _err(y, X.to_numpy(), g, "X must be a pandas DataFrame")
    _err(y, X.iloc[:, :0], g, "X has no columns")
    _err(y[:-1], X, g, "has 149 values but X has 150 rows")
    _err(np.full_like(y, 2.5), X, g, r"outcome 'y' is constant \(2.5 in all 150 rows\)")
    _err(X["x"].to_numpy() * 2 + 1, X, g, "exact linear function of the X columns")
    Xt = X.assign(**{f"t{j}": (g == j).astype(float) for j in range(2, 10)})  # 10 team-level columns, 10 teams
    _err(y, Xt, g, r"team-level fixed effect\(s\).*for 10 team unit\(s\)", group_names=["team"])
    _err(y, X, g, "conf_level must be between 0 and 1", conf_level=95)
    _err(y, X, g, "singular_df must be", singular_df="kr")


def test_errors_contrast_and_icc(small):
    y, X, g = small
    fit = fit_mixed(y, X, g, ["team"])
    with pytest.raises(CpevalError, match=r"L has 2 entries but there are 3 fixed effects"):
        fit.contrast([1, 0])
    with pytest.raises(CpevalError, match=r"unknown fixed effect\(s\) \['armm'\]"):
        fit.contrast({"armm": 1})
    with pytest.raises(CpevalError, match="L is all zero"):
        fit.contrast([0, 0, 0])
    with pytest.raises(CpevalError, match="icc: unknown group 'residual'"):
        fit.icc("residual")
    with pytest.raises(CpevalError, match="method must be 'profile' or 'delta'"):
        fit.icc("team", method="wald")
