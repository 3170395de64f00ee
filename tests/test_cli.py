"""The CLI end to end, as a user runs it: exit codes, messages, files written, the demo."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from cpeval.cli import main

TIMESTAMP = "2026-01-01 00:00 UTC"


def run(capsys, *args):
    """Run the CLI in-process; returns (exit code, stdout, stderr)."""
    try:
        main(list(map(str, args)))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo") / "study"
    try:
        main(["demo", "-o", str(folder), "--seed", "7", "--timestamp", TIMESTAMP])
    except SystemExit as exc:  # pragma: no cover - main only exits on errors
        raise AssertionError(f"demo exited with {exc.code}") from None
    return folder


# ---------------------------------------------------------------------------------------------- instruments


def test_instruments_list_names_every_instrument_and_flags_unverified(capsys):
    code, out, _ = run(capsys, "instruments", "list")
    assert code == 0
    for inst_id in ("wemwbs", "swemwbs", "eq5d5l", "eq5d3l", "cpifs_w", "cpifs_su", "rguk", "scope", "icecap_a"):
        assert f"\n{inst_id} " in "\n" + out
    assert "unverified part" in out
    assert "swemwbs_metric" in out


def test_instruments_show_prints_items_rules_and_unverified_parts(capsys):
    code, out, _ = run(capsys, "instruments", "show", "wemwbs")
    assert code == 0
    assert "wemwbs_14" in out and "cheerful" in out
    assert "wemwbs_total           prorated_sum 14 items, at most 3 missing, range 14-70 [UNVERIFIED]" in out
    assert "unverified (documented defaults" in out
    code, out, _ = run(capsys, "instruments", "show", "icecap_a")
    assert "value set (none shipped: --value-set required)" in out


def test_unknown_instrument_is_a_user_error(capsys):
    code, out, err = run(capsys, "instruments", "show", "wembws")
    assert code == 2
    assert err.strip().startswith("cpeval: error: unknown instrument 'wembws'; expected one of cpifs_su")
    assert "Traceback" not in err


# ---------------------------------------------------------------------------------------------------- score


def _long_csv(tmp_path):
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"participant_id": [f"P{i:03d}" for i in range(20)], "timepoint": "baseline"})
    for i in range(1, 15):
        frame[f"wemwbs_{i}"] = rng.integers(1, 6, 20)
    frame.loc[4, "wemwbs_2"] = 9  # out of range
    path = tmp_path / "wellbeing.csv"
    frame.to_csv(path, index=False)
    return path, frame


def test_score_csv_to_sav_with_labels_and_qa(tmp_path, capsys):
    path, frame = _long_csv(tmp_path)
    out, qa = tmp_path / "scored.sav", tmp_path / "qa.csv"
    code, stdout, err = run(capsys, "score", path, "-o", out, "--qa", qa)
    assert code == 0, err
    assert "rows out: 20 (no row dropped)" in stdout
    assert "instruments scored: swemwbs, wemwbs" in stdout
    assert "values flagged: out_of_range 1" in stdout
    scored, meta = pyreadstat.read_sav(out)
    expected_total = frame[[f"wemwbs_{i}" for i in range(1, 15)]].sum(axis=1).astype(float)
    expected_total[4] = np.nan  # item 2 is out of range -> 13 items -> prorated
    answered = frame.loc[4, [f"wemwbs_{i}" for i in range(1, 15) if i != 2]].sum()
    expected_total[4] = answered / 13 * 14
    np.testing.assert_allclose(scored["wemwbs_total"], expected_total)
    assert meta.column_names_to_labels["wemwbs_total"] == "WEMWBS total (14-70)"
    assert meta.variable_value_labels["wemwbs_1"][5.0] == "All of the time"
    qa_table = pd.read_csv(qa)
    assert qa_table[["row", "variable", "value", "reason"]].values.tolist() == [[5, "wemwbs_2", 9, "out_of_range"]]


@pytest.mark.parametrize("args, message", [
    (["score", "{tmp}/missing.csv", "-o", "{tmp}/o.csv"], "missing.csv"),
    (["score", "{csv}", "-o", "{tmp}/o.xlsx"], "o.xlsx: output must end in .csv or .sav"),
    (["score", "{csv}", "-o", "{tmp}/nowhere/o.csv"], "folder {tmp}/nowhere does not exist"),
    (["score", "{csv}", "-o", "{tmp}/o.csv", "--instrument", "eq5d5l"],
     "instrument eq5d5l: none of its item columns (eq5d5l_mo ... eq5d5l_vas) is in the data"),
    (["score", "{csv}", "-o", "{tmp}/o.csv", "--value-set", "eq5d5l"],
     "--value-set 'eq5d5l': expected INSTRUMENT=FILE.csv"),
    (["report", "{csv}", "-o", "{tmp}/r.html"], "design column(s) team_id, arm, trust_id not in the data"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    csv, _ = _long_csv(tmp_path)
    argv = [a.format(tmp=tmp_path, csv=csv) for a in args]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("cpeval: error: ")
    assert message.format(tmp=tmp_path) in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_real_entry_point_has_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "cpeval.cli", "score", str(tmp_path / "none.sav"), "-o",
                             str(tmp_path / "o.csv")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and result.stderr.startswith("cpeval: error:")


def test_click_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "score")
    assert code == 2 and "Missing argument 'INPUT'" in err


# ------------------------------------------------------------------------------------------------------ demo


def test_demo_writes_every_file(demo_dir):
    names = {p.name for p in demo_dir.iterdir()}
    assert {"demo_study.sav", "demo_workers.sav", "demo_study_map.yaml", "demo_plan.yaml", "report.html",
            "demo_study_scored.sav", "demo_study_qa.csv", "demo_workers_scored.sav", "fidelity_report.html",
            "demo_consensus.csv"} <= names
    html = (demo_dir / "report.html").read_text()
    for section in ("structure", "flow", "results", "fidelity_teams", "fidelity_outcomes", "fidelity_consensus",
                    "provenance"):
        assert f'id="{section}"' in html


def test_demo_scored_data_accounts_for_every_row(demo_dir):
    wide, _ = pyreadstat.read_sav(demo_dir / "demo_study.sav")
    scored, meta = pyreadstat.read_sav(demo_dir / "demo_study_scored.sav")
    assert len(scored) == 2 * len(wide)  # one row per person and time point, none dropped
    for column in ("wemwbs_total", "swemwbs_metric", "rguk_total", "scope_overall", "eq5d5l_index"):
        assert column in scored.columns
    assert scored["eq5d5l_index"].dropna().between(-0.285, 1).all()
    assert meta.column_names_to_labels["eq5d5l_index"] == "EQ-5D-5L index"
    qa = pd.read_csv(demo_dir / "demo_study_qa.csv")
    assert {"user_missing", "out_of_range"} <= set(qa["reason"])


def test_demo_report_is_what_report_command_gives_on_the_same_file(demo_dir, tmp_path, capsys):
    again, fidelity = tmp_path / "again.html", tmp_path / "fidelity.html"
    code, _, err = run(capsys, "report", demo_dir / "demo_study.sav", "--map", demo_dir / "demo_study_map.yaml",
                       "--plan", demo_dir / "demo_plan.yaml", "--workers", demo_dir / "demo_workers.sav",
                       "--workers-map", demo_dir / "demo_workers_map.yaml", "--fidelity-report", fidelity,
                       "--consensus", demo_dir / "demo_consensus.csv", "-o", again, "--timestamp", TIMESTAMP)
    assert code == 0, err
    assert again.read_bytes() == (demo_dir / "report.html").read_bytes()
    assert fidelity.read_bytes() == (demo_dir / "fidelity_report.html").read_bytes()
    code, _, err = run(capsys, "report", demo_dir / "demo_study.sav", "--map", demo_dir / "demo_study_map.yaml",
                       "--fidelity-report", fidelity, "-o", again)
    assert code == 2 and "--fidelity-report needs --workers" in err


def test_demo_is_deterministic_for_a_seed(demo_dir, tmp_path, capsys):
    code, _, err = run(capsys, "demo", "-o", tmp_path / "second", "--seed", "7", "--timestamp", TIMESTAMP)
    assert code == 0, err
    for name in ("report.html", "demo_study_qa.csv", "fidelity_report.html"):
        assert (tmp_path / "second" / name).read_bytes() == (demo_dir / name).read_bytes()
    code, _, _ = run(capsys, "demo", "-o", tmp_path / "third", "--seed", "8", "--timestamp", TIMESTAMP)
    assert (tmp_path / "third" / "report.html").read_bytes() != (demo_dir / "report.html").read_bytes()


def test_demo_report_shows_no_participant_identifiers(demo_dir):
    html = (demo_dir / "report.html").read_text()
    scored, _ = pyreadstat.read_sav(demo_dir / "demo_study_scored.sav")
    ids = set(scored["participant_id"].astype(str))
    assert not [i for i in ids if f">{i}<" in html or f" {i} " in html]
    assert "<script src" not in html and "http://" not in html and "https://" not in html


def test_study_definitions_folder_replaces_a_shipped_instrument(tmp_path, capsys):
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "wemwbs.yaml").write_text(
        "id: wemwbs\nname: WEMWBS (our 3-item pilot)\nsource: study protocol\nresponse: {min: 1, max: 5}\n"
        "items:\n  - {id: '1', label: optimistic}\n  - {id: '2', label: useful}\n  - {id: '3', label: relaxed}\n"
        "scales:\n  - {id: total, label: Pilot total, rule: sum, items: all, range: [3, 15]}\n")
    code, out, _ = run(capsys, "instruments", "show", "wemwbs", "--instruments-dir", folder)
    assert code == 0 and "WEMWBS (our 3-item pilot)" in out and str(folder / "wemwbs.yaml") in out
    path, frame = _long_csv(tmp_path)
    code, out, err = run(capsys, "score", path, "--instruments-dir", folder, "--instrument", "wemwbs",
                         "-o", tmp_path / "o.csv")
    assert code == 0, err
    scored = pd.read_csv(tmp_path / "o.csv")
    expected = frame[["wemwbs_1", "wemwbs_2", "wemwbs_3"]].sum(axis=1).astype(float)
    expected[4] = np.nan  # wemwbs_2 = 9 there: out of range, and a plain sum allows no missing item
    np.testing.assert_array_equal(scored["wemwbs_total"], expected)


def test_value_set_option_and_icecap_without_tariff(tmp_path, capsys):
    frame = pd.DataFrame({"eq5d5l_mo": [1, 2], "eq5d5l_sc": [1, 1], "eq5d5l_ua": [1, 1], "eq5d5l_pd": [1, 1],
                          "eq5d5l_ad": [1, 1], "icecap_a_stability": [4, 3], "icecap_a_attachment": [4, 3],
                          "icecap_a_autonomy": [4, 3], "icecap_a_achievement": [4, 3], "icecap_a_enjoyment": [4, 3]})
    data = tmp_path / "eq.csv"
    frame.to_csv(data, index=False)
    (tmp_path / "xw.csv").write_text("state,value\n11111,1\n21111,0.883\n")
    code, out, err = run(capsys, "score", data, "--value-set", f"eq5d5l={tmp_path / 'xw.csv'}",
                         "-o", tmp_path / "o.csv")
    assert code == 0, err
    assert "[xw.csv (user-supplied)]" in out
    assert ("warning: icecap_a: items present but not scored: its index needs a tariff table "
            "(--value-set icecap_a=FILE.csv); none is shipped") in out
    scored = pd.read_csv(tmp_path / "o.csv")
    assert list(scored["eq5d5l_index"]) == [1.0, 0.883]
    assert list(scored["eq5d5l_index_value_set"]) == ["xw.csv (user-supplied)"] * 2
    code, _, err = run(capsys, "score", data, "--instrument", "icecap_a", "-o", tmp_path / "o.csv")
    assert code == 2 and "icecap_a: scale icecap_a_index needs a tariff/value set table" in err


def test_report_on_a_long_csv_without_map_or_plan(tmp_path, capsys):
    rng = np.random.default_rng(11)
    rows = []
    for team in range(4):
        for person in range(6):
            for tp in ("baseline", "follow_up"):
                row = {"participant_id": f"T{team}P{person}", "team_id": f"team {team}", "trust_id": f"trust {team // 2}",
                       "arm": "implementation" if team % 2 == 0 else "control", "timepoint": tp}
                row.update({f"wemwbs_{i}": int(rng.integers(1, 6)) for i in range(1, 15)})
                rows.append(row)
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    code, out, err = run(capsys, "report", path, "-o", tmp_path / "r.html", "--timestamp", TIMESTAMP)
    assert code == 0, err
    html = (tmp_path / "r.html").read_text()
    assert "WEMWBS total (14-70)" in html and "team 3" in html
    assert "T0P1" not in html  # participant ids never shown


# ---------------------------------------------------------------------------------------------------- compare


def test_compare_writes_json_with_every_part_and_csv_records(demo_dir, tmp_path, capsys):
    import json

    args = [demo_dir / "demo_study.sav", "--map", demo_dir / "demo_study_map.yaml", "--plan",
            demo_dir / "demo_plan.yaml"]
    code, out, err = run(capsys, "compare", *args, "-o", tmp_path / "results.json")
    assert code == 0, err
    result = json.loads((tmp_path / "results.json").read_text())
    assert {"flow", "baseline_table", "team_table", "results", "reliability", "methods"} <= set(result)
    keys = ["outcome", "model", "term", "estimate", "std_error", "df", "df_method", "conf_low", "conf_high",
            "p_value", "n_participants", "n_clusters", "icc", "notes"]
    assert all(set(keys) <= set(r) for r in result["results"])
    assert {r["outcome"] for r in result["results"]} == {"rguk_total", "wemwbs_total", "swemwbs_metric",
                                                         "scope_overall", "eq5d5l_index"}
    assert all({"scale", "timepoint", "n", "alpha", "conf_low", "conf_high"} <= set(r) for r in result["reliability"])
    assert "Satterthwaite" in result["methods"]
    primary = [r for r in result["results"] if r["outcome"] == "rguk_total" and r["model"] == "primary"][0]
    # small-sample df: about teams - 2, never hundreds (Satterthwaite, or between-within on a singular fit)
    assert primary["df_method"] in ("Satterthwaite", "between-within") and primary["df"] < 20
    assert "rguk_total       primary" in out
    code, _, err = run(capsys, "compare", *args, "-o", tmp_path / "results.csv")
    assert code == 0, err
    table = pd.read_csv(tmp_path / "results.csv")
    assert list(table.columns[:14]) == keys and len(table) == len(result["results"])


def test_compare_user_errors(demo_dir, tmp_path, capsys):
    plan = tmp_path / "plan.yaml"
    plan.write_text("study: x\noutcomes: {primary: rguk_totl}\n")
    args = [demo_dir / "demo_study.sav", "--map", demo_dir / "demo_study_map.yaml"]
    code, _, err = run(capsys, "compare", *args, "--plan", plan, "-o", tmp_path / "r.json")
    assert code == 2 and "column 'rguk_totl' is not in the data" in err
    plan.write_text("study: x\n")
    code, _, err = run(capsys, "compare", *args, "--plan", plan, "-o", tmp_path / "r.json")
    assert code == 2 and "no outcomes in the plan" in err
    code, _, err = run(capsys, "compare", *args, "--plan", plan, "-o", tmp_path / "r.txt")
    assert code == 2 and "r.txt: output must end in .json or .csv" in err


# --------------------------------------------------------------------------------------------------- fidelity


def test_fidelity_command_writes_every_table(demo_dir, tmp_path, capsys):
    import json

    args = [demo_dir / "demo_study.sav", "--map", demo_dir / "demo_study_map.yaml", "--workers",
            demo_dir / "demo_workers.sav", "--workers-map", demo_dir / "demo_workers_map.yaml",
            "--consensus", demo_dir / "demo_consensus.csv", "--plan", demo_dir / "demo_plan.yaml"]
    code, out, err = run(capsys, "fidelity", *args, "-o", tmp_path / "fidelity.json")
    assert code == 0, err
    result = json.loads((tmp_path / "fidelity.json").read_text())
    assert result["bands"] == "low <= 4.99 < moderate <= 6.99 < high"
    assert "bands (an assumption of the plan, not published thresholds)" in out
    totals = [t for t in result["teams"] if t["domain"] == "total"]
    assert len({t["team"] for t in totals}) == 10 and {t["version"] for t in totals} == {"W", "SU"}
    assert {r["outcome"] for r in result["arm_comparison"]} == {"cpifs_w_total", "cpifs_su_total"}
    assert all("observational comparison" in r["notes"] for r in result["fidelity_outcome_models"])
    agreement = result["consensus"]["agreement"]
    assert [a["domain"] for a in agreement] == ["com", "ass", "pla", "par", "rel"]
    assert all(a["n_raters"] == 3 and 0 < a["icc"] < 1 for a in agreement)
    rated = pd.read_csv(demo_dir / "demo_consensus.csv").groupby(["worker_id", "domain"]).ngroups
    assert len(result["consensus"]["scores"]) == rated
    n_workers = len(pyreadstat.read_sav(demo_dir / "demo_workers.sav")[0])
    assert len(result["consensus"]["unrated"]) == n_workers * 5 - rated  # every worker x domain rated or listed
    code, _, err = run(capsys, "fidelity", *args, "-o", tmp_path / "teams.csv")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "teams.csv")) == len(result["teams"])
    code, _, err = run(capsys, "fidelity", *args[:3], "--plan", demo_dir / "demo_plan.yaml", "-o", tmp_path / "f.json")
    assert code == 2 and "--workers is required" in err
