"""Tests of the arm-comparison sections of the study report (cpeval.report_compare and its templates).

One Comparison is built from the demo study (seed 2024) for the whole module, with participant identifiers
relabelled to text ("CPX-1101") so that a leak would be unmistakable. Every number checked in the HTML is compared
with the Comparison's own tables (records, flow counts), formatted as the report formats them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil
from html import unescape
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from cpeval.baseline import flow_counts
from cpeval.compare import compare_arms
from cpeval.demo import generate_demo_study, write_demo_files
from cpeval.errors import CpevalError
from cpeval.outcomes import MODEL_DESCRIPTIONS
from cpeval.pipeline import run_scoring
from cpeval.plan import load_plan
from cpeval.report import build_study_context, fmt_count, fmt_number, render_study_report
from cpeval.report_compare import (
    MODEL_NAMES,
    add_comparison_sections,
    estimate_decimals,
    flow_stages,
    fmt_ci,
    fmt_p,
    forest_figure_svg,
    icc_table,
    results_table,
    split_notes,
)
from cpeval.resources import analysis_dir

FIXED = "2026-01-01 00:00 UTC"
ID_PREFIX = "CPX-"
SECTION_ORDER = ["structure", "scoring_quality", "distributions", "flow", "baseline", "results", "reliability",
                 "methods", "provenance"]


# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_compare")
    files = write_demo_files(generate_demo_study(seed=2024), folder)
    for name in ("demo_study_map.yaml", "demo_plan.yaml"):
        shutil.copyfile(analysis_dir() / name, folder / name)
    result = run_scoring(files["participants"], map_path=folder / "demo_study_map.yaml")
    plan = load_plan(folder / "demo_plan.yaml")
    pid = plan.design.participant
    result.data[pid] = [f"{ID_PREFIX}{int(v)}" for v in result.data[pid]]
    result.scoring.data[pid] = result.data[pid]
    comparison = compare_arms(result.data, plan, result.instruments or None)
    return dict(folder=folder, files=files, result=result, plan=plan, comparison=comparison)


def make_context(demo, comparison=None, *, context_k=0, k=0, with_ids=True):
    result, plan = demo["result"], demo["plan"]
    scoring = dataclasses.replace(result.scoring, qa=result.qa)
    context = build_study_context(scoring, plan.design, source_name="demo_study.sav", generated=FIXED,
                                  suppress_below=context_k)
    add_comparison_sections(context, comparison or demo["comparison"], suppress_below=k,
                            participant_ids=result.data[plan.design.participant] if with_ids else None)
    return context


def make_html(demo, comparison=None, **kwargs) -> str:
    return render_study_report(make_context(demo, comparison, **kwargs))


@pytest.fixture(scope="module")
def html(demo) -> str:
    return make_html(demo)


def section_html(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}"')
    return html[start:html.index("</section>", start)]


class _Tables(HTMLParser):
    """Rows of cell texts of every <table> (nested markup flattened, whitespace collapsed)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._table = None
        self._row = None
        self._cell = None
        self._n = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._n += 1
            self._table = attrs.get("id") or f"{attrs.get('class', '')}#{self._n}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "br" and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str) -> dict[str, list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def table_by_class(html: str, cls: str) -> list[list[str]]:
    found = [rows for key, rows in tables(html).items() if cls in key.split("#")[0].split()]
    assert len(found) == 1, f"expected one table of class {cls}, found {len(found)}"
    return found[0]


def visible_text(html: str) -> str:
    """Text a reader sees (tags and inline SVG markup removed, entities decoded)."""
    no_svg = re.sub(r"<svg\b.*?</svg>", " ", html, flags=re.S)
    no_style = re.sub(r"<style\b.*?</style>", " ", no_svg, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", no_style)).split())


# ----------------------------------------------------------------------------------------------------------
# formatting helpers
# ----------------------------------------------------------------------------------------------------------


def test_fmt_p_and_ci():
    assert fmt_p(0.0004) == "<0.001"
    assert fmt_p(0.001) == "0.001"
    assert fmt_p(0.0520531) == "0.052"
    assert fmt_p(1.0) == "1.000"
    assert fmt_p(np.nan) == "\u2014"
    assert fmt_ci(-0.027074, 4.792262, 2) == "-0.03 to 4.79"
    assert fmt_ci(-0.0004, 0.2, 3) == "0.000 to 0.200"  # no "-0.000"
    assert fmt_ci(np.nan, 1.0, 2) == "\u2014"


def test_split_notes_keeps_parentheses_together():
    text = "singular fit: x; between-within df used (a 8 df; b 88 df); 3 of 9 excluded"
    assert split_notes(text) == ["singular fit: x", "between-within df used (a 8 df; b 88 df)", "3 of 9 excluded"]
    assert split_notes("") == [] and split_notes(None) == []


def test_estimate_decimals_three_for_eq5d_index_else_two(demo):
    c = demo["comparison"]
    assert estimate_decimals(c, "eq5d5l_index") == 3
    for outcome in ("rguk_total", "wemwbs_total", "swemwbs_metric", "scope_overall"):
        assert estimate_decimals(c, outcome) == 2
    assert estimate_decimals(c, "scope_overall", declared=1) == 2
    assert estimate_decimals(c, "wemwbs_total", declared=3) == 3


# ----------------------------------------------------------------------------------------------------------
# table functions
# ----------------------------------------------------------------------------------------------------------


def test_flow_stages_equal_flow_counts(demo):
    c, plan, data = demo["comparison"], demo["plan"], demo["result"].data
    flow = flow_counts(data, plan.design, plan.outcomes, covariates=list(plan.covariates))
    stages = flow_stages(c).set_index(["arm", "stage"])
    for _, r in flow["by_arm"].iterrows():
        arm = r["arm"]
        assert stages.loc[(arm, "recruited"), "participants"] == r["participants_recruited"]
        assert stages.loc[(arm, "recruited"), "teams"] == r["teams_recruited"]
        assert stages.loc[(arm, "baseline"), "participants"] == r["participants_baseline"]
        assert stages.loc[(arm, "baseline"), "participants_excluded"] == (r["participants_recruited"]
                                                                           - r["participants_baseline"])
        assert stages.loc[(arm, "follow_up"), "participants"] == r["participants_follow_up"]
        assert stages.loc[(arm, "follow_up"), "participants_excluded"] == r["participants_lost"]
        assert stages.loc[(arm, "follow_up"), "teams_excluded"] == r["teams_lost"]
        a = flow["analysed"][(flow["analysed"]["outcome"] == plan.primary) & (flow["analysed"]["arm"] == arm)].iloc[0]
        assert stages.loc[(arm, "analysed"), "participants"] == a["analysed"]
        assert stages.loc[(arm, "analysed"), "teams"] == a["teams_analysed"]
        assert stages.loc[(arm, "analysed"), "participants_excluded"] == (
            a["missing_follow_up"] + a["missing_baseline"] + a["missing_covariates"])


def test_results_table_adds_standardised_ci_and_keeps_plan_order(demo):
    c = demo["comparison"]
    table = results_table(c)
    assert len(table) == len(c.records)
    assert list(dict.fromkeys(table["outcome"])) == demo["plan"].outcomes
    assert table["primary"].sum() == (c.records["outcome"] == demo["plan"].primary).sum()
    ok = table["effect_size"].notna()
    np.testing.assert_allclose(table.loc[ok, "effect_size_low"],
                               table.loc[ok, "conf_low"] / table.loc[ok, "effect_size_sd"])
    np.testing.assert_allclose(table.loc[ok, "effect_size_high"],
                               table.loc[ok, "conf_high"] / table.loc[ok, "effect_size_sd"])
    # the standardised CI contains the standardised effect
    assert (table.loc[ok, "effect_size_low"] <= table.loc[ok, "effect_size"]).all()
    assert (table.loc[ok, "effect_size"] <= table.loc[ok, "effect_size_high"]).all()


def test_icc_table_is_the_primary_model_icc(demo):
    c = demo["comparison"]
    icc = icc_table(c).set_index("outcome")
    primary = c.records[c.records["model"] == "primary"].set_index("outcome")
    assert list(icc.index) == demo["plan"].outcomes
    np.testing.assert_allclose(icc["icc"], primary.loc[icc.index, "icc"])
    np.testing.assert_allclose(icc["conf_high"], primary.loc[icc.index, "icc_conf_high"])


# ----------------------------------------------------------------------------------------------------------
# the rendered sections
# ----------------------------------------------------------------------------------------------------------


def test_sections_present_in_order(demo, html):
    context = make_context(demo)
    assert [s["id"] for s in context["sections"]] == SECTION_ORDER
    json.dumps(context)  # plain data
    positions = [html.index(f'<section id="{sid}"') for sid in SECTION_ORDER]
    assert positions == sorted(positions)
    for title in ("Participant flow (CONSORT for cluster trials)", "Baseline characteristics by arm",
                  "Results: implementation versus control", "Methods text for a paper"):
        assert title in unescape(html)


def test_add_comparison_sections_appends_without_provenance_and_refuses_twice(demo):
    context = {"meta": {"suppress_below": 0}, "summary": [], "sections": []}
    add_comparison_sections(context, demo["comparison"])
    assert [s["id"] for s in context["sections"]] == ["flow", "baseline", "results", "reliability", "methods"]
    with pytest.raises(ValueError, match="already in the context"):
        add_comparison_sections(context, demo["comparison"])
    with pytest.raises(CpevalError, match="suppress_below"):
        add_comparison_sections(make_context(demo), demo["comparison"], suppress_below=-1)


def test_results_tables_show_the_records_formatted(demo, html):
    c = demo["comparison"]
    results = section_html(html, "results")
    all_tables = tables(results)
    for outcome, group in c.records.groupby("outcome", sort=False):
        rows = all_tables[f"results-{outcome}"]
        d = 3 if outcome == "eq5d5l_index" else 2
        for _, r in group.iterrows():
            name = MODEL_NAMES[r["model"]]
            row = next(cells for cells in rows if cells and cells[0].startswith(name))
            if pd.isna(r["estimate"]):
                assert row[1].startswith("Not estimated")
                continue
            assert row[1] == fmt_number(r["estimate"], d)
            assert row[2] == f"{fmt_number(r['conf_low'], d)} to {fmt_number(r['conf_high'], d)}"
            assert row[3] == fmt_number(r["std_error"], d)
            assert row[4] == f"{r['df']:.1f} {r['df_method']}"
            assert row[5] == fmt_p(r["p_value"])
            assert row[6] == f"{r['n_participants_treatment']} ({r['n_clusters_treatment']})"
            assert row[7] == f"{r['n_participants_control']} ({r['n_clusters_control']})"
            lo, hi = r["conf_low"] / r["effect_size_sd"], r["conf_high"] / r["effect_size_sd"]
            assert row[8] == f"{r['effect_size']:.2f} ({fmt_number(lo, 2)} to {fmt_number(hi, 2)})"
            assert row[9] == fmt_number(r["effect_size_sd"], d)
            for note in split_notes(r["notes"]):
                assert note in unescape(results)
    # the primary outcome is marked, every model is explained
    caption = re.search(rf'<table class="data results" id="results-{demo["plan"].primary}">\s*<caption>(.*?)</caption>',
                        results, re.S).group(1)
    assert "primary outcome" in caption
    for model in c.records["model"].unique():
        assert MODEL_DESCRIPTIONS[model] in unescape(results)
    # the at-a-glance tile repeats the primary estimate
    primary = c.records[(c.records["outcome"] == demo["plan"].primary) & (c.records["model"] == "primary")].iloc[0]
    tile = make_context(demo)["summary"][-1]
    assert tile["value"] == fmt_number(primary["estimate"], 2)
    assert fmt_p(primary["p_value"]) in tile["detail"]


def test_p_values_below_0001_and_df_methods_are_labelled(demo):
    records = demo["comparison"].records.copy()
    records.loc[0, "p_value"] = 0.00002
    html = make_html(demo, dataclasses.replace(demo["comparison"], records=records))
    rows = tables(section_html(html, "results"))[f"results-{records.loc[0, 'outcome']}"]
    row = next(cells for cells in rows if cells and cells[0].startswith(MODEL_NAMES[records.loc[0, "model"]]))
    assert row[5] == "<0.001"


def test_forest_plot_has_one_marker_per_estimated_record(demo, html):
    c = demo["comparison"]
    results = section_html(html, "results")
    n_estimated = int(c.records["effect_size"].notna().sum())
    assert n_estimated > 0
    assert len(re.findall(r'<g id="fig-forest-est-\d+"', results)) == n_estimated
    svg = re.search(r"<svg\b.*?</svg>", results, re.S).group(0)
    assert "favours control" in svg and "favours implementation" in svg
    assert "Standardised effect" in svg
    # the value column prints each standardised effect with its CI
    table = results_table(c)
    for _, r in table[table["effect_size"].notna()].iterrows():
        assert f"{fmt_number(r['effect_size'], 2)} ({fmt_ci(r['effect_size_low'], r['effect_size_high'], 2)})" in svg
    assert forest_figure_svg(table) == forest_figure_svg(table)  # deterministic
    assert forest_figure_svg(table.iloc[0:0]) == ""


def test_icc_table_and_consort_note(demo, html):
    c = demo["comparison"]
    results = section_html(html, "results")
    rows = table_by_class(results, "icc")
    assert "sample size" in unescape(results)
    for _, r in c.records[c.records["model"] == "primary"].iterrows():
        row = next(cells for cells in rows if cells and f" {r['outcome']}" in cells[0])
        assert row[1] == fmt_number(r["icc"], 3)
        assert row[2] == f"{fmt_number(r['icc_conf_low'], 3)} to {fmt_number(r['icc_conf_high'], 3)}"


def test_flow_section_numbers_equal_flow_counts(demo, html):
    plan, data = demo["plan"], demo["result"].data
    flow = flow_counts(data, plan.design, plan.outcomes, covariates=list(plan.covariates))
    text = visible_text(section_html(html, "flow"))
    by_arm = flow["by_arm"]
    total = int(by_arm["participants_recruited"].sum())
    assert f"{int(by_arm['teams_recruited'].sum())} teams allocated, in 5 trusts" in text
    assert f"{total} participants recruited" in text
    for _, r in by_arm.iterrows():
        arm = r["arm"]
        pct_bl = 100 * r["participants_baseline"] / r["participants_recruited"]
        assert f"Allocated to {arm} {r['teams_recruited']} teams {r['participants_recruited']} participants recruited" \
            in text
        assert f"{r['participants_baseline']} participants ({pct_bl:.1f}%)" in text
        assert f"Lost to follow-up {r['participants_lost']} participants ({r['percent_lost']:.1f}%) " \
               f"{r['teams_lost']} teams lost" in text
    for _, a in flow["analysed"][flow["analysed"]["outcome"] == plan.primary].iterrows():
        assert (f"{a['analysed']} participants ({a['percent_analysed']:.1f}%) {a['teams_analysed']} teams") in text
        assert (f"Not in the primary analysis {a['missing_follow_up']} no score at follow-up "
                f"{a['missing_baseline']} no score at baseline {a['missing_covariates']} a covariate missing") in text
    # per-team losses table
    rows = table_by_class(section_html(html, "flow"), "flow-teams")
    for _, t in flow["by_team"].iterrows():
        row = next(cells for cells in rows if cells[0] == t["team"])
        assert row[1:] == [t["site"], str(t["recruited"]), str(t["baseline"]), str(t["follow_up"]), str(t["lost"]),
                           f"{t['percent_lost']:.1f}"]
    # analysed per outcome (exclusion reasons)
    rows = table_by_class(section_html(html, "flow"), "flow-analysed")
    arm_rows = [cells for cells in rows if cells and cells[0] in ("Implementation", "Control")]
    expected = [[r["arm"].capitalize(), str(r["recruited"]), str(r["missing_follow_up"]),
                 str(r["missing_baseline"]), str(r["missing_covariates"]), str(r["analysed"]),
                 f"{r['percent_analysed']:.1f}", f"{r['teams_analysed']} of {r['teams_recruited']}"]
                for _, r in flow["analysed"].iterrows()]
    assert arm_rows == expected


def test_baseline_section_numbers(demo, html):
    c = demo["comparison"]
    section = section_html(html, "baseline")
    rows = table_by_class(section, "baseline-table")
    base = c.baseline
    age = base[base["variable"] == "age"].set_index("arm")
    mean_row = next(cells for cells in rows if cells[0] == "Mean (SD)"
                    and cells[1] == f"{age.loc['implementation', 'mean']:.1f} ({age.loc['implementation', 'sd']:.1f})")
    assert mean_row[2] == f"{age.loc['control', 'mean']:.1f} ({age.loc['control', 'sd']:.1f})"
    assert mean_row[3] == f"{age.loc['implementation', 'smd']:.2f}"
    female = base[(base["variable"] == "gender") & (base["level"] == "female")].set_index("arm")
    row = next(cells for cells in rows if cells[0] == "female")
    assert row[1] == f"{int(female.loc['implementation', 'count'])} ({female.loc['implementation', 'percent']:.1f}%)"
    assert row[3] == fmt_number(female.loc["implementation", "smd"], 2)
    gender_head = next(cells for cells in rows if cells[0].startswith("Gender"))
    assert gender_head[-1] == f"{female.loc['implementation', 'smd_variable']:.2f}"
    # missing counts, EQ-5D index with 3 decimals
    eq = base[base["variable"] == "eq5d5l_index"].set_index("arm")
    assert f"{eq.loc['implementation', 'mean']:.3f} ({eq.loc['implementation', 'sd']:.3f})" in section
    assert "How the SMD is computed." in section and "Yang &amp; Dalton" in section
    # team (cluster) level table
    teams = table_by_class(section, "baseline-teams")
    impl = c.teams[(c.teams["level"] == "arm") & (c.teams["arm"] == "implementation")].iloc[0]
    row = next(cells for cells in teams if cells[0] == "Implementation teams")
    assert row == [row[0], str(impl["teams"]), str(impl["recruited"]),
                   f"{impl['recruited_mean']:.1f} ({impl['recruited_min']:.0f} to {impl['recruited_max']:.0f})",
                   str(impl["baseline"]),
                   f"{impl['baseline_mean']:.1f} ({impl['baseline_min']:.0f} to {impl['baseline_max']:.0f})"]


def test_reliability_section(demo, html):
    rel = demo["comparison"].reliability
    section = section_html(html, "reliability")
    text = unescape(section)
    computed = rel[rel["alpha"].notna()]
    for _, r in computed.iterrows():
        assert f"{r['alpha']:.2f}" in text and fmt_ci(r["conf_low"], r["conf_high"], 2) in text
    for note in set(rel.loc[rel["alpha"].isna(), "note"]):
        assert note in text
    rows = table_by_class(section, "reliability")
    assert sum(1 for cells in rows[1:] if len(cells) >= 5) == len(rel)  # one row per scale and time point


def test_methods_paragraph_in_a_labelled_box(demo, html):
    section = section_html(html, "methods")
    assert "Methods text to paste into a paper" in section
    assert unescape(re.search(r'<p class="paste-text">(.*?)</p>', section, re.S).group(1)) == \
        demo["comparison"].methods


def test_no_participant_identifiers_in_html(demo, html):
    ids = set(demo["result"].data[demo["plan"].design.participant])
    assert ID_PREFIX not in html
    numbers = {i[len(ID_PREFIX):] for i in ids}
    text = visible_text(html)
    assert not [n for n in numbers if re.search(rf"(?<![\d.,]){n}(?![\d.,])", text)]


def test_note_without_estimate_is_shown_and_ids_in_notes_are_redacted(demo):
    c = demo["comparison"]
    records = c.records.copy()
    i = records.index[(records["outcome"] == "wemwbs_total") & (records["model"] == "primary")][0]
    some_id = sorted(demo["result"].data[demo["plan"].design.participant])[0]
    for col in ("estimate", "std_error", "df", "conf_low", "conf_high", "p_value", "icc", "icc_conf_low",
                "icc_conf_high", "effect_size"):
        records.loc[i, col] = np.nan
    records.loc[i, "notes"] = f"only 1 team in the control arm with follow-up and baseline scores (see {some_id})"
    html = make_html(demo, dataclasses.replace(c, records=records))
    results = unescape(section_html(html, "results"))
    assert ("Not estimated: only 1 team in the control arm with follow-up and baseline scores "
            "(see [participant id])") in results
    assert some_id not in html
    n_estimated = int(records["effect_size"].notna().sum())
    assert len(re.findall(r'<g id="fig-forest-est-\d+"', results)) == n_estimated == int(c.records["effect_size"]
                                                                                         .notna().sum()) - 1
    assert "not estimated (see notes)" in results
    # the ICC table says why there is no ICC
    rows = table_by_class(section_html(html, "results"), "icc")
    row = next(cells for cells in rows if "wemwbs_total" in cells[0])
    assert row[1].startswith("Not estimated: only 1 team")


def test_suppress_below_hides_small_counts(demo, html):
    k = 20
    hidden = make_html(demo, k=k)
    flow = section_html(hidden, "flow")
    teams = table_by_class(flow, "flow-teams")
    by_team = demo["comparison"].flow["by_team"]
    for _, t in by_team.iterrows():
        row = next(cells for cells in teams if cells[0] == t["team"])
        assert row[2] == (f"<{k}" if 0 < t["recruited"] < k else str(t["recruited"]))
        assert row[5] == (f"<{k}" if 0 < t["lost"] < k else str(t["lost"]))
        assert row[6] == "\u2014"  # a percentage built on a suppressed count is not shown
    # flow boxes: a small participant count is suppressed, team counts are not
    text = visible_text(flow)
    assert f"<{k} participants" in text and "5 teams" in text
    # results: analysed participants (teams) per arm, "<k" only when small
    records = demo["comparison"].records
    rows = tables(section_html(hidden, "results"))["results-rguk_total"]
    primary = records[(records["outcome"] == "rguk_total") & (records["model"] == "primary")].iloc[0]
    row = next(cells for cells in rows if cells and cells[0] == MODEL_NAMES["primary"])
    assert row[6] == f"{fmt_count(primary['n_participants_treatment'], k)} ({primary['n_clusters_treatment']})"
    assert "Counts from 1 to 19" not in hidden  # the header follows the context's setting ...
    assert f"&lt;{k}: a count from 1 to {k - 1}, suppressed" in flow  # ... the comparison legends their own
    # baseline: counts below k suppressed; the group's statistics go with them
    base = table_by_class(section_html(hidden, "baseline"), "baseline-table")
    other = next(cells for cells in base if cells[0] == "other / prefer not to say")
    assert other[1] == f"<{k}" and other[2] == f"<{k}"
    # without suppression nothing is hidden
    assert f"<{k}" not in visible_text(section_html(html, "flow"))
    # the context's own setting is never weakened by a smaller argument
    stricter = make_html(demo, context_k=k, k=0)
    for sid in ("flow", "baseline", "results", "reliability", "methods"):
        assert section_html(stricter, sid) == section_html(hidden, sid)


def test_suppressed_group_statistics_are_hidden(demo):
    k = 1000  # more than any group's participants: every participant-level statistic is hidden
    html = make_html(demo, k=k)
    base = table_by_class(section_html(html, "baseline"), "baseline-table")
    for cells in base:
        if cells[0] in ("Mean (SD)", "Median [Q1, Q3]"):
            assert cells[1] == cells[2] == "\u2014"
    rel = table_by_class(section_html(html, "reliability"), "reliability")
    body = [cells for cells in rel if len(cells) >= 5 and cells[-3] != "Alpha"]
    assert body and all(cells[-3] == "\u2014" and cells[-4] == f"<{k}" for cells in body if cells[-4] != "0")


def test_same_input_gives_identical_bytes(demo, html):
    again = make_html(demo)
    assert again == html
    assert "<script" not in html and "http://" not in html and "https://" not in html and "url(" not in html


def test_report_command_includes_the_comparison(demo, tmp_path):
    from cpeval.cli import main

    out = tmp_path / "r.html"
    folder = demo["folder"]
    try:
        main(["report", str(demo["files"]["participants"]), "--map", str(folder / "demo_study_map.yaml"),
              "--plan", str(folder / "demo_plan.yaml"), "-o", str(out), "--timestamp", FIXED,
              "--suppress-below", "5"])
    except SystemExit as exc:  # pragma: no cover - main only exits on errors
        raise AssertionError(f"report exited with {exc.code}") from None
    html = out.read_text(encoding="utf-8")
    positions = [html.index(f'<section id="{sid}"') for sid in SECTION_ORDER]
    assert positions == sorted(positions)
    assert "Counts from 1 to 4" in html
    assert html.count('<g id="fig-forest-est-') == int(demo["comparison"].records["effect_size"].notna().sum())
    assert not math.isnan(float(demo["comparison"].records["estimate"].iloc[0]))
    assert fmt_count(int(demo["comparison"].flow["by_arm"]["participants_recruited"].sum())) in html
