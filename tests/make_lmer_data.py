"""Write the reference data sets for tests/test_mixed.py (tests/data/lmer/*.csv and models.json).

Run from the repository root (the outputs are committed; re-run only to change them, then re-run
tests/r/lmer_reference.R to refresh tests/data/lmer/reference.json):

    python tests/make_lmer_data.py
    Rscript tests/r/lmer_reference.R

Every data set comes from ``numpy.random.default_rng(seed)`` with the seed written below, so anyone can recompute
it. Some seeds were picked (by trying seeds in order) so that the data set has the property it is there to test;
the property is checked against lme4's fit in tests/test_mixed.py (through reference.json), not assumed:

- balanced      10 teams x 15 people, arm 5 + 5, a team-level covariate ``zteam`` and a person-level ``x``.
- unbalanced    12 teams of 3 to 30 people (196), arm 6 + 6: team sizes differ, so statsmodels' bse != lme4's SE.
- covariates    10 teams of 10 to 22 (151), baseline score, age, sex (F/M) and site (3 levels) as factors.
- small_icc     true ICC 0.02; the estimate is tiny (about 0.004) but interior (not zero): near-singular.
- large_icc     true ICC 0.3 (estimate about 0.23).
- extreme_icc   true ICC 0.998 (team SD 25 x residual SD): parameters on very different scales.
- singular      no true team variance, and lme4's REML estimate is exactly zero (a singular fit).
- nested        long data, baseline + 6 months, 150 people in 10 teams, about 20% with a baseline row only:
                y ~ arm * time + age + sex + (1 | team) + (1 | participant).
- nested_team0  as nested, but the team variance is estimated as zero.
- nested_part0  as nested, but the participant variance is estimated as zero.
- nested_extreme as nested, with a team SD 40 x the residual SD.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).resolve().parent / "data" / "lmer"

# seeds; the ones marked (picked) give the property named in the docstring
SEEDS = {
    "balanced": 101,
    "unbalanced": 102,
    "covariates": 103,
    "small_icc": 126,  # (picked)
    "large_icc": 105,
    "extreme_icc": 110,
    "singular": 106,  # (picked)
    "nested": 107,
    "nested_team0": 109,  # (picked)
    "nested_part0": 109,  # (picked)
    "nested_extreme": 111,
}


def _teams(sizes, rng, tau, sigma, mu=0.0):
    sizes = np.asarray(sizes)
    g = len(sizes)
    team = np.repeat(np.arange(1, g + 1), sizes)
    arm = np.repeat(np.tile([1, 0], g // 2 + 1)[:g], sizes)
    u = rng.normal(0.0, tau, g)
    e = rng.normal(0.0, sigma, sizes.sum())
    return team, arm, mu + u[team - 1] + e


def balanced(seed):
    rng = np.random.default_rng(seed)
    team, arm, noise = _teams([15] * 10, rng, 0.5, 1.0, 10.0)
    zt = np.round(rng.normal(0, 1, 10), 3)
    x = np.round(rng.normal(0, 1, team.size), 3)
    y = noise + 0.4 * arm + 0.3 * zt[team - 1] + 0.5 * x
    return pd.DataFrame({"team": team, "arm": arm, "zteam": zt[team - 1], "x": x, "y": np.round(y, 4)})


def unbalanced(seed):
    rng = np.random.default_rng(seed)
    sizes = [3, 5, 8, 10, 12, 14, 17, 20, 23, 26, 28, 30]
    order = rng.permutation(len(sizes))  # arm not aligned with size
    team, arm, noise = _teams(np.array(sizes)[order], rng, 1.5, 4.0, 20.0)
    y = noise + 1.0 * arm
    return pd.DataFrame({"team": team, "arm": arm, "y": np.round(y, 4)})


def covariates(seed):
    rng = np.random.default_rng(seed)
    sizes = np.array([10, 22, 14, 18, 12, 20, 11, 16, 13, 15])  # 151
    team, arm, noise = _teams(sizes, rng, 1.5, 6.0)
    n = team.size
    baseline = np.round(rng.normal(42, 9, n))
    age = rng.integers(19, 70, n)
    sex = np.where(rng.random(n) < 0.55, "F", "M")
    site = rng.choice(["north", "south", "west"], n)
    y = 15 + 0.6 * baseline + 1.2 * arm - 0.05 * age + 1.0 * (sex == "M") + np.where(site == "west", 2.0, 0) + noise
    return pd.DataFrame({"team": team, "arm": arm, "baseline": baseline, "age": age, "sex": sex, "site": site,
                         "y": np.round(y, 3)})


def _simple(seed, tau, sigma):
    rng = np.random.default_rng(seed)
    sizes = np.array([13, 17, 15, 12, 18, 14, 16, 15, 19, 12])
    team, arm, noise = _teams(sizes, rng, tau, sigma, 5.0)
    x = np.round(rng.normal(0, 1, team.size), 3)
    y = noise + 0.3 * arm + 0.4 * x
    return pd.DataFrame({"team": team, "arm": arm, "x": x, "y": np.round(y, 4)})


def small_icc(seed):
    return _simple(seed, np.sqrt(0.02), 1.0)


def large_icc(seed):
    return _simple(seed, np.sqrt(0.3 / 0.7), 1.0)


def extreme_icc(seed):
    return _simple(seed, 25.0, 1.0)


def singular(seed):
    return _simple(seed, 0.0, 1.0)


def _nested(seed, tau, tau_p, sigma):
    rng = np.random.default_rng(seed)
    sizes = np.array([16, 14, 15, 17, 13, 15, 14, 16, 15, 15])  # 150 people
    g = sizes.size
    team = np.repeat(np.arange(1, g + 1), sizes)
    arm = np.repeat(np.tile([1, 0], g // 2), sizes)
    n = team.size
    pid = np.arange(1001, 1001 + n)
    age = rng.integers(19, 70, n)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    u = rng.normal(0, tau, g)[team - 1]
    b = rng.normal(0, tau_p, n)
    rows = []
    follow = rng.random(n) >= 0.2  # about 20% have a baseline row only
    for t in (0, 1):
        e = rng.normal(0, sigma, n)
        y = 3.0 + 0.2 * t + 0.5 * arm * t - 0.01 * age + 0.3 * (sex == "M") + u + b + e
        keep = np.ones(n, bool) if t == 0 else follow
        rows.append(pd.DataFrame({"participant": pid, "team": team, "arm": arm, "time": t, "age": age,
                                  "sex": sex, "y": np.round(y, 4)})[keep])
    return pd.concat(rows).sort_values(["team", "participant", "time"]).reset_index(drop=True)


def nested(seed):
    return _nested(seed, 0.4, 0.8, 0.7)


def nested_team0(seed):
    return _nested(seed, 0.0, 0.8, 0.7)


def nested_part0(seed):
    return _nested(seed, 0.4, 0.0, 1.0)


def nested_extreme(seed):
    return _nested(seed, 40.0, 0.5, 1.0)


MAKERS = {"balanced": balanced, "unbalanced": unbalanced, "covariates": covariates, "small_icc": small_icc,
          "large_icc": large_icc, "extreme_icc": extreme_icc, "singular": singular, "nested": nested,
          "nested_team0": nested_team0, "nested_part0": nested_part0, "nested_extreme": nested_extreme}

NESTED_TERMS = ["arm", "time", "arm:time", "age", "sex"]
# model name -> data set, fixed-effect terms (R formula order), grouping factors (outer first), a contrast
MODELS = {
    "balanced_arm": {"data": "balanced", "terms": ["arm"], "groups": ["team"]},
    "balanced_zteam": {"data": "balanced", "terms": ["arm", "zteam"], "groups": ["team"]},
    "balanced_x": {"data": "balanced", "terms": ["arm", "x"], "groups": ["team"]},
    "unbalanced_arm": {"data": "unbalanced", "terms": ["arm"], "groups": ["team"]},
    "covariates": {"data": "covariates", "terms": ["arm", "baseline", "age", "sex", "site"], "groups": ["team"]},
    "small_icc": {"data": "small_icc", "terms": ["arm", "x"], "groups": ["team"]},
    "large_icc": {"data": "large_icc", "terms": ["arm", "x"], "groups": ["team"]},
    "extreme_icc": {"data": "extreme_icc", "terms": ["arm", "x"], "groups": ["team"]},
    "singular": {"data": "singular", "terms": ["arm", "x"], "groups": ["team"]},
    "nested": {"data": "nested", "terms": NESTED_TERMS, "groups": ["team", "participant"]},
    "nested_team0": {"data": "nested_team0", "terms": NESTED_TERMS, "groups": ["team", "participant"]},
    "nested_part0": {"data": "nested_part0", "terms": NESTED_TERMS, "groups": ["team", "participant"]},
    "nested_extreme": {"data": "nested_extreme", "terms": NESTED_TERMS, "groups": ["team", "participant"]},
}
FACTORS = {"sex": ["F", "M"], "site": ["north", "south", "west"]}  # first level = reference (R treatment coding)


def contrast_for(model: dict) -> dict:
    if "arm:time" in model["terms"]:
        return {"arm": 1.0, "arm:time": 1.0}  # arm difference at 6 months
    return {"(Intercept)": 1.0, "arm": 1.0}  # implementation-arm mean at covariates 0


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, make in MAKERS.items():
        make(SEEDS[name]).to_csv(OUT / f"{name}.csv", index=False)
    spec = {"factors": FACTORS,
            "models": {k: v | {"contrast": contrast_for(v)} for k, v in MODELS.items()}}
    (OUT / "models.json").write_text(json.dumps(spec, indent=2) + "\n")
    print(f"wrote {len(MAKERS)} data sets and models.json to {OUT}")


if __name__ == "__main__":
    main()
