"""`cpeval costs` end to end on the demo study's files, and its user errors (exit 2, one line, no traceback)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from cpeval.cli import main
from cpeval.demo import generate_demo_study, write_demo_files
from cpeval.resources import analysis_dir
from test_cli import run  # noqa: E402  (tests/ is on sys.path: conftest.py)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The demo files as `cpeval demo` writes them, with the plan and maps beside them (the plan names the
    implementation-cost CSV relative to itself; the unit costs and price index come from cpeval's analysis/)."""
    folder = tmp_path_factory.mktemp("costs")
    demo = generate_demo_study(seed=2024)
    files = write_demo_files(demo, folder)
    for name in ("demo_study_map.yaml", "demo_plan.yaml"):
        shutil.copyfile(analysis_dir() / name, folder / name)
    return folder, files, demo


@pytest.fixture(scope="module")
def costs_json(study, tmp_path_factory):
    folder, files, _ = study
    out = tmp_path_factory.mktemp("out")
    args = ["costs", files["participants"], "--map", folder / "demo_study_map.yaml", "--plan",
            folder / "demo_plan.yaml", "-o", out / "costs.json", "--participant-costs", out / "pc.csv",
            "--qa", out / "qa.csv"]
    try:
        main(list(map(str, args)))
    except SystemExit as exc:  # pragma: no cover
        raise AssertionError(f"cpeval costs exited with {exc.code}") from None
    return out


def test_costs_json_has_every_table_labelled(costs_json):
    result = json.loads((costs_json / "costs.json").read_text())
    assert (result["reference"], result["comparator"]) == ("control", "implementation")
    assert result["price_year"] == "2013/14"
    assert result["bootstrap"]["replicates"] == 2000
    quantities = {(r["analysis"], r["quantity"]) for r in result["results"]}
    assert ("complete_case", "cost difference, adjusted for baseline service cost") in quantities
    assert ("multiple_imputation", "incremental net benefit at £30,000 per QALY") in quantities
    # implementation costs: one row per implementation team, total = the sum of the three components
    impl = pd.DataFrame(result["implementation_costs"])
    assert len(impl) == 5 and set(impl["arm"]) == {"implementation"}
    assert (impl["training"] + impl["supervision"] + impl["worker_time"]).tolist() == pytest.approx(impl["total"])
    assert impl["per_participant"].tolist() == pytest.approx((impl["total"] / impl["caseload"]).tolist())
    assert {r["role"] for r in result["service_use"]} == {"reference", "comparator"}
    # CEAC at the INB thresholds is there, and probabilities are shares
    ceac = pd.DataFrame(result["ceac"]).set_index("threshold")["probability_cost_effective"]
    assert {20000, 30000} <= set(ceac.index) and ceac.between(0, 1).all()


def test_participant_costs_cover_every_participant_and_period(costs_json, study):
    _, _, demo = study
    pc = pd.read_csv(costs_json / "pc.csv")
    assert len(pc) == 2 * len(demo.participants)  # every recruited participant, baseline and follow-up
    assert set(pc["timepoint"]) == {"baseline", "follow_up"}
    parts = [c for c in pc.columns if c.startswith("cost_")]
    complete = pc.dropna(subset=["service_cost"])
    assert complete[parts].sum(axis=1).to_numpy() == pytest.approx(complete["service_cost"].to_numpy())


def test_planted_negative_service_use_is_in_the_qa_list(costs_json, study):
    _, _, demo = study
    planted = demo.planted_errors[demo.planted_errors["variable"].str.startswith("T2_CSRI")].iloc[0]
    qa = pd.read_csv(costs_json / "qa.csv")
    hit = qa[(qa["participant_id"] == planted["id"]) & (qa["reason"] == "out_of_range")
             & qa["variable"].str.startswith("csri_")]
    assert len(hit) == 1 and float(hit["value"].iloc[0]) == planted["value"]


def test_costs_csv_output_is_the_results(study, tmp_path, capsys):
    folder, files, _ = study
    code, out, err = run(capsys, "costs", files["participants"], "--map", folder / "demo_study_map.yaml", "--plan",
                         folder / "demo_plan.yaml", "-o", tmp_path / "costs.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "costs.csv")
    assert table.columns[:5].tolist() == ["analysis", "key", "quantity", "unit", "sample"]
    assert "probability cost-effective at £20,000 per QALY" in out


def test_plan_without_costs_is_a_user_error(study, tmp_path, capsys):
    folder, files, _ = study
    plan = tmp_path / "plan.yaml"
    plan.write_text("study: x\n")
    code, _, err = run(capsys, "costs", files["participants"], "--map", folder / "demo_study_map.yaml", "--plan",
                       plan, "-o", tmp_path / "c.json")
    assert code == 2
    assert err.strip() == (f"cpeval: error: {plan}: no costs section; expected costs: {{unit_costs: ..., "
                           "price_year: ..., services: ...} (docs/costs.md)")
    assert "Traceback" not in err


def test_unpriced_service_is_a_user_error_naming_it(study, tmp_path, capsys):
    folder, files, _ = study
    text = (folder / "demo_plan.yaml").read_text().replace("gp_home_visit: {contacts", "day_centre: {contacts")
    plan = folder / "plan_unpriced.yaml"
    plan.write_text(text)
    code, _, err = run(capsys, "costs", files["participants"], "--map", folder / "demo_study_map.yaml", "--plan",
                       plan, "-o", tmp_path / "c.json")
    assert code == 2
    assert "service(s) day_centre (costs.services) have no unit cost" in err
    assert "Traceback" not in err


def test_participant_costs_as_sav_carry_labels_with_the_price_year(study, tmp_path, capsys):
    import pyreadstat

    folder, files, _ = study
    code, _, err = run(capsys, "costs", files["participants"], "--map", folder / "demo_study_map.yaml", "--plan",
                       folder / "demo_plan.yaml", "-o", tmp_path / "c.csv", "--participant-costs", tmp_path / "pc.sav")
    assert code == 0, err
    frame, meta = pyreadstat.read_sav(tmp_path / "pc.sav")
    assert meta.column_names_to_labels["service_cost"] == ("Cost of all services in the recall period (GBP, "
                                                           "2013/14 prices)")
    assert len(frame) == 2 * frame["participant_id"].nunique()
