"""The demo study's full plan: cpeval's model fits beside the same fits in R lmerTest.

Run on demand:  python benchmarks/bench_compare.py [--repeat N]
Times, on the demo study (seed 2024, 5 outcomes): every primary and longitudinal model (data preparation and
Satterthwaite df included), the whole comparison (plus flow, baseline tables, reliability and 20 imputations per
outcome), and, when Rscript with lmerTest is on PATH, the same 10 lmer fits + summary() in R on the same analysis
frames (reading not timed). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from make_outcomes_data import demo_scored  # noqa: E402

from cpeval.compare import compare_arms  # noqa: E402
from cpeval.outcomes import ancova_frame, fit_longitudinal, fit_primary, longitudinal_frame  # noqa: E402
from cpeval.plan import load_plan  # noqa: E402
from cpeval.resources import analysis_dir  # noqa: E402

R_CODE = r"""
suppressPackageStartupMessages({library(lme4); library(lmerTest)})
args <- commandArgs(TRUE); dir <- args[1]; outcomes <- strsplit(args[2], ",")[[1]]; repeats <- as.integer(args[3])
frames <- lapply(outcomes, function(o) {
  a <- read.csv(file.path(dir, paste0("a_", o, ".csv"))); a <- a[complete.cases(a[, c("y", "y0", "age", "gender")]), ]
  l <- read.csv(file.path(dir, paste0("l_", o, ".csv"))); l <- l[complete.cases(l[, c("y", "age", "gender")]), ]
  a$gender <- factor(a$gender); l$gender <- factor(l$gender); list(a = a, l = l)})
best <- Inf
for (r in seq_len(repeats)) {
  t <- system.time(for (f in frames) {
    suppressMessages(summary(lmer(y ~ treated + y0 + age + gender + (1 | cluster), data = f$a)))
    suppressMessages(summary(lmer(y ~ treated * follow + age + gender + (1 | cluster) + (1 | participant), data = f$l)))
  })[["elapsed"]]
  best <- min(best, t)
}
cat(best, "\n")
"""


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    plan = load_plan(analysis_dir() / "demo_plan.yaml")
    data = demo_scored()

    def models():
        for outcome in plan.outcomes:
            fit_primary(data, plan, outcome)
            fit_longitudinal(data, plan, outcome)

    t_models = best_of(models, args.repeat)
    t_all = best_of(lambda: compare_arms(data, plan), max(1, args.repeat // 2))
    print(f"cpeval: 10 models (5 outcomes x primary + longitudinal): {t_models * 1000:8.1f} ms")
    print(f"cpeval: whole comparison incl. 100 imputed fits:        {t_all * 1000:8.1f} ms")
    if shutil.which("Rscript"):
        folder = Path(tempfile.mkdtemp())
        for outcome in plan.outcomes:
            ancova_frame(data, plan, outcome).to_csv(folder / f"a_{outcome}.csv", index=False)
            longitudinal_frame(data, plan, outcome).to_csv(folder / f"l_{outcome}.csv", index=False)
        script = folder / "bench.R"
        script.write_text(R_CODE)
        out = subprocess.run(["Rscript", str(script), str(folder), ",".join(plan.outcomes), str(args.repeat)],
                             capture_output=True, text=True, check=True)
        t_r = float(out.stdout.split()[-1])
        print(f"lmerTest: the same 10 models (lmer + summary):          {t_r * 1000:8.1f} ms")
        print(f"cpeval / lmerTest: {t_models / t_r:.2f}")
    else:
        print("Rscript not found: lmerTest not timed")


if __name__ == "__main__":
    main()
