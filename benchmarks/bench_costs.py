"""The two-stage cluster bootstrap of the demo study's costs and QALYs.

Run on demand:  python benchmarks/bench_costs.py [--replicates 2000] [--repeat 5]
Times, on the demo study (seed 2024, about 160 participants in 10 teams): the complete-case bootstrap of every
cost-effectiveness quantity (cost differences unadjusted and adjusted, QALY and primary-outcome differences, the
cost-effectiveness pairs and INB: 8 weighted least-squares fits or means per replicate), then the whole costs
analysis (service use to costs, implementation costs, the bootstrap, acceptability curve and 20 imputations each
bootstrapped). The issue's target: 2,000 replicates in under 2 seconds on 2 cores. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from make_outcomes_data import demo_files, demo_scored  # noqa: E402

from cpeval.costs import analyse_costs, bootstrap  # noqa: E402
from cpeval.plan import load_plan  # noqa: E402
from cpeval.resources import analysis_dir  # noqa: E402


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    files = demo_files()
    folder = Path(files["participants"]).parent
    shutil.copyfile(analysis_dir() / "demo_plan.yaml", folder / "demo_plan.yaml")
    plan = load_plan(folder / "demo_plan.yaml")
    import dataclasses

    plan = dataclasses.replace(plan, costs=dataclasses.replace(plan.costs, replicates=args.replicates))
    data = demo_scored(files)
    analysis = analyse_costs(data, plan)
    frame = analysis.frame
    n, teams = len(frame), frame["cluster"].nunique()
    boot = best_of(lambda: bootstrap(frame, plan.costs, has_effect=True), args.repeat)
    print(f"demo study: {n} participants in {teams} teams")
    print(f"{args.replicates} two-stage bootstrap replicates (complete case, every quantity): {boot:.3f} s "
          f"(best of {args.repeat})")
    whole = best_of(lambda: analyse_costs(data, plan), max(1, args.repeat // 2))
    imputations = plan.missing_data.imputations if plan.missing_data.enabled else 0
    print(f"whole costs analysis ({1 + imputations} bootstraps of {args.replicates}: complete case and "
          f"{imputations} imputations): {whole:.3f} s")


if __name__ == "__main__":
    main()
