"""Analysis plans: the shipped demo plan, defaults, and every way a plan can be wrong."""

from __future__ import annotations

import pytest
import yaml

from cpeval.errors import CpevalError
from cpeval.plan import Design, MissingData, default_plan, load_plan
from cpeval.resources import analysis_dir


def write(tmp_path, content):
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(content, sort_keys=False) if not isinstance(content, str) else content)
    return path


def test_demo_plan_loads():
    plan = load_plan(analysis_dir() / "demo_plan.yaml")
    assert plan.design.study == "Connecting People Implementation Study (demo)"
    assert plan.design.arms == ["implementation", "control"]
    assert plan.design.timepoints == ["baseline", "follow_up"]
    assert plan.primary == "rguk_total"
    assert plan.outcomes == ["rguk_total", "wemwbs_total", "swemwbs_metric", "scope_overall", "eq5d5l_index"]
    assert plan.covariates == ("age", "gender")
    assert plan.missing_data == MissingData(enabled=True, imputations=20, seed=2024)
    assert plan.fidelity.measured_in_control is True
    assert [b["label"] for b in plan.fidelity.bands] == ["low", "moderate", "high"]
    assert "no published CPIFS cut-off" in plan.fidelity.bands_note
    assert plan.fidelity.outcomes == ("rguk_total", "wemwbs_total", "scope_overall")


def test_defaults_when_keys_are_absent(tmp_path):
    plan = load_plan(write(tmp_path, {"study": "S"}))
    assert plan.design == Design(study="S")
    assert plan.primary is None and plan.outcomes == [] and plan.covariates == ()
    assert default_plan("x").design.cluster == "team_id"


@pytest.mark.parametrize("content, message", [
    ({"sutdy": "S"}, "unknown key 'sutdy'; expected one of arm, cluster, costs, covariates, fidelity, missing_data, "
                     "outcomes, participant, report, site, study, timepoint"),
    ({"study": ""}, "key 'study' is ''; expected a non-empty text"),
    ({"arm": "arm"}, "key 'arm' is 'arm'; expected a mapping with keys column, treatment, control"),
    ({"arm": {"column": "arm", "treatment": "a"}}, "key 'arm.control' is None; expected a value (it is required)"),
    ({"arm": {"column": "arm", "treatment": "a", "control": "a"}},
     "key 'arm' is {'column': 'arm', 'treatment': 'a', 'control': 'a'}; expected two different values for treatment "
     "and control"),
    ({"outcomes": ["rguk_total"]}, "key 'outcomes' is ['rguk_total']; expected a mapping with primary (one score "
                                   "column) and optionally secondary (a list)"),
    ({"outcomes": {"primary": "a", "secondary": ["b", "a"]}},
     "key 'outcomes.secondary' is ['b', 'a']; expected outcomes other than the primary (a)"),
    ({"outcomes": {"primary": "a", "tertiary": ["b"]}}, "key 'outcomes.tertiary' is None; expected only primary and "
                                                        "secondary"),
    ({"covariates": "age"}, "key 'covariates' is 'age'; expected a list of column names"),
    ({"covariates": ["age", "age"]}, "key 'covariates' is ['age', 'age']; expected each name once"),
    ({"missing_data": {"imputations": 1}}, "key 'missing_data.imputations' is 1; expected a whole number from 2 to "
                                           "1000"),
    ({"missing_data": {"method": "locf"}}, "key 'missing_data.method' is None; expected only enabled, imputations, "
                                           "seed"),
    ({"fidelity": {"bands": [{"label": "low", "max": 5}, {"label": "high"}]}},
     "key 'fidelity.bands_note' is ''; expected a sentence saying where the bands come from (no CPIFS cut-off is "
     "published)"),
    ({"fidelity": {"cutoff": 7}}, "key 'fidelity.cutoff' is None; expected only arm, bands, bands_note, "
                                  "measured_in_control, outcomes"),
    ({"fidelity": {"measured_in_control": "yes"}}, "key 'fidelity.measured_in_control' is 'yes'; expected true or "
                                                   "false"),
])
def test_bad_plan_names_file_key_value_and_expectation(tmp_path, content, message):
    path = write(tmp_path, content)
    with pytest.raises(CpevalError) as err:
        load_plan(path)
    assert str(err.value) == f"{path}: {message}"


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(CpevalError, match="nope.yaml: plan file not found"):
        load_plan(tmp_path / "nope.yaml")
    with pytest.raises(CpevalError, match="plan.yaml: not valid YAML"):
        load_plan(write(tmp_path, "study: [unclosed\n"))
    with pytest.raises(CpevalError, match=r"key '\(top level\)' is 'list'; expected a mapping of plan keys"):
        load_plan(write(tmp_path, "- a\n- b\n"))
