"""Mixed-model speed: cpeval.mixed.fit_mixed (REML + Satterthwaite df) against R lme4 + lmerTest.

Run on demand:  python benchmarks/bench_mixed.py [--no-r] [--statsmodels] [--repeat N]
Cases: y ~ arm + baseline + x + (1 | team) on 150 people in 10 teams and on 100,000 people in 500 teams, and the
secondary model y ~ arm * time + x + (1 | team) + (1 | participant) on 150 people at 2 time points (20% with a
baseline row only). Goals (issue: mixed models): no slower than lmerTest at 150 people (about 40 ms there) and at
most half of lmerTest's time at 100,000 people (about 1.7 s).

cpeval is timed from the design matrix to the finished MixedFit (fixed-effects table with Satterthwaite df
included), best of N runs. When Rscript is on PATH, lmerTest is timed inside R on the same data (written to a
temporary CSV, reading not timed): system.time around lmer(REML = TRUE) + summary() (which computes the
Satterthwaite df), best of N. --statsmodels also times statsmodels MixedLM.fit(reml=True) (no df, single grouping
only) for scale. Not part of the test suite: timings are never asserted in tests.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cpeval.mixed import fit_mixed


def make_single(n: int, teams: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    team = np.sort(rng.integers(0, teams, n))
    arm = (team % 2).astype(float)
    baseline = rng.normal(40, 9, n).round()
    x = rng.normal(size=n).round(3)
    y = 10 + 1.0 * arm + 0.6 * baseline + 0.5 * x + rng.normal(0, 1.5, teams)[team] + rng.normal(0, 6, n)
    return pd.DataFrame({"team": team + 1, "arm": arm, "baseline": baseline, "x": x, "y": y.round(4)})


def make_nested(people: int, teams: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    team = np.sort(rng.integers(0, teams, people))
    arm = (team % 2).astype(float)
    x = rng.normal(size=people).round(3)
    u, b = rng.normal(0, 0.4, teams)[team], rng.normal(0, 0.8, people)
    follow = rng.random(people) >= 0.2
    parts = []
    for t in (0, 1):
        keep = np.ones(people, bool) if t == 0 else follow
        y = 3 + 0.2 * t + 0.5 * arm * t + 0.3 * x + u + b + rng.normal(0, 0.7, people)
        parts.append(pd.DataFrame({"team": team + 1, "participant": np.arange(people) + 1, "arm": arm, "time": t,
                                   "x": x, "y": y.round(4)})[keep])
    return pd.concat(parts, ignore_index=True)


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


R_TEMPLATE = r"""
suppressPackageStartupMessages(library(lmerTest))
d <- read.csv("{csv}")
f <- {formula}
fit <- lmer(f, data = d, REML = TRUE); s <- summary(fit)   # warm-up
times <- replicate({repeat}, system.time({{ fit <- lmer(f, data = d, REML = TRUE); s <- summary(fit) }})[["elapsed"]])
cat(sprintf("%.6f\n", min(times)))
cat(sprintf("%.6f %.6f\n", coef(s)["arm", "Std. Error"], coef(s)["arm", "df"]))
"""


def time_r(d: pd.DataFrame, formula: str, repeat: int) -> tuple[float, str] | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        d.to_csv(csv, index=False)
        script = Path(tmp) / "bench.R"
        script.write_text(R_TEMPLATE.format(csv=csv.as_posix(), formula=formula, repeat=repeat))
        res = subprocess.run(["Rscript", str(script)], capture_output=True, text=True)
        if res.returncode != 0:
            print("  R failed:", res.stderr.strip().splitlines()[-1:] or res.stderr)
            return None
        lines = res.stdout.split("\n")
        return float(lines[0]), lines[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-r", action="store_true", help="do not time lmerTest")
    ap.add_argument("--statsmodels", action="store_true", help="also time statsmodels MixedLM (single grouping)")
    ap.add_argument("--repeat", type=int, default=0, help="runs per case (default: 20 small, 3 large)")
    args = ap.parse_args()

    cases = [
        ("150 people, 10 teams", make_single(150, 10), ["team"], ["arm", "baseline", "x"], 20),
        ("100,000 people, 500 teams", make_single(100_000, 500), ["team"], ["arm", "baseline", "x"], 3),
        ("150 people x 2 times, nested", make_nested(150, 10), ["team", "participant"],
         ["arm", "time", "arm:time", "x"], 20),
    ]
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, pandas {pd.__version__}")
    for label, d, gnames, terms, rep in cases:
        rep = args.repeat or rep
        X = pd.DataFrame({"(Intercept)": np.ones(len(d))})
        for t in terms:
            a, _, b = t.partition(":")
            X[t] = d[a].astype(float) * (d[b].astype(float) if b else 1.0)
        y = d["y"].to_numpy()
        groups = [d[g].to_numpy() for g in gnames]
        g_arg = groups if len(groups) > 1 else groups[0]
        fit = fit_mixed(y, X, g_arg, gnames)
        t_py = best_of(lambda: fit_mixed(y, X, g_arg, gnames), rep)
        arm = fit.fixed.loc["arm"]
        print(f"\n{label} ({len(d)} rows), best of {rep}")
        print(f"  cpeval fit_mixed      {t_py * 1000:9.1f} ms   arm SE {arm['std_error']:.6f} df {arm['df']:.4f} "
              f"({fit.df_method}{', singular' if fit.singular else ''})")
        if not args.no_r:
            formula = "y ~ " + " + ".join(terms) + " + " + " + ".join(f"(1 | {g})" for g in gnames)
            r = time_r(d, formula, rep)
            if r is None:
                print("  lmerTest              (Rscript not available)")
            else:
                print(f"  lmerTest lmer+summary {r[0] * 1000:9.1f} ms   arm SE / df {r[1]}   "
                      f"(cpeval / lmerTest = {t_py / r[0]:.2f})")
        if args.statsmodels and len(gnames) == 1:
            import warnings

            import statsmodels.api as sm

            def sm_fit():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return sm.MixedLM(y, X.to_numpy(), groups=groups[0]).fit(reml=True)

            t_sm = best_of(sm_fit, min(rep, 3))
            print(f"  statsmodels MixedLM   {t_sm * 1000:9.1f} ms   (no small-sample df)")


if __name__ == "__main__":
    main()
