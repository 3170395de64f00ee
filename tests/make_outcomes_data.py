"""Write the demo study's analysis frames for the outcome models, for tests/r/outcomes_reference.R.

Run from the repository root:  python tests/make_outcomes_data.py && Rscript tests/r/outcomes_reference.R
The frames are what cpeval.outcomes builds from the demo study (seed 2024): R fits the same models on them with
lme4/lmerTest, and tests/test_outcomes.py compares cpeval's records with R's numbers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from cpeval.demo import generate_demo_study, write_demo_files
from cpeval.outcomes import ancova_frame, longitudinal_frame
from cpeval.pipeline import run_scoring
from cpeval.plan import load_plan
from cpeval.resources import analysis_dir

OUT = Path(__file__).parent / "data" / "outcomes"


def demo_files():
    folder = Path(tempfile.mkdtemp())
    return write_demo_files(generate_demo_study(seed=2024), folder)


def demo_scored(files=None):
    files = files or demo_files()
    return run_scoring(files["participants"], map_path=analysis_dir() / "demo_study_map.yaml").data


def demo_fidelity_frames(files=None) -> dict:
    """The fidelity-outcome analysis frames (implementation arm) for rguk_total and scope_overall."""
    from cpeval.fidelity import analyse_fidelity, fidelity_outcome_frame

    files = files or demo_files()
    plan = load_plan(analysis_dir() / "demo_plan.yaml")
    su = demo_scored(files)
    workers = run_scoring(files["workers"], map_path=analysis_dir() / "demo_workers_map.yaml").data
    scores = analyse_fidelity(su, workers, plan).scores
    return {o: fidelity_outcome_frame(su, scores, plan, o, arm_value="implementation")
            for o in ("rguk_total", "scope_overall")}


def main() -> None:
    plan = load_plan(analysis_dir() / "demo_plan.yaml")
    data = demo_scored()
    OUT.mkdir(parents=True, exist_ok=True)
    for outcome in ("rguk_total", "eq5d5l_index"):
        ancova_frame(data, plan, outcome).to_csv(OUT / f"ancova_{outcome}.csv", index=False)
        longitudinal_frame(data, plan, outcome).to_csv(OUT / f"long_{outcome}.csv", index=False)
    for outcome, frame in demo_fidelity_frames().items():
        frame.to_csv(OUT / f"fidelity_{outcome}.csv", index=False)


if __name__ == "__main__":
    main()
