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


def demo_scored():
    folder = Path(tempfile.mkdtemp())
    files = write_demo_files(generate_demo_study(seed=2024), folder)
    return run_scoring(files["participants"], map_path=analysis_dir() / "demo_study_map.yaml").data


def main() -> None:
    plan = load_plan(analysis_dir() / "demo_plan.yaml")
    data = demo_scored()
    OUT.mkdir(parents=True, exist_ok=True)
    for outcome in ("rguk_total", "eq5d5l_index"):
        ancova_frame(data, plan, outcome).to_csv(OUT / f"ancova_{outcome}.csv", index=False)
        longitudinal_frame(data, plan, outcome).to_csv(OUT / f"long_{outcome}.csv", index=False)


if __name__ == "__main__":
    main()
