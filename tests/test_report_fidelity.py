"""Fidelity in the reports (cpeval.report_fidelity): study-report sections and the standalone per-team report."""

from __future__ import annotations

import dataclasses
import re
import shutil
from html import unescape
from html.parser import HTMLParser

import pandas as pd
import pytest

from cpeval.demo import generate_demo_study, write_demo_files
from cpeval.errors import CpevalError
from cpeval.fidelity import DOMAIN_LABELS, analyse_fidelity
from cpeval.pipeline import run_scoring
from cpeval.plan import load_plan
from cpeval.report import add_section, build_study_context, fmt_count, fmt_number, render_study_report
from cpeval.report_compare import fmt_ci, fmt_p
from cpeval.report_fidelity import (
    GAP_BELOW_OTHERS,
    MIDPOINT,
    add_fidelity_sections,
    render_fidelity_report,
    team_profiles,
    team_returns,
)
from cpeval.resources import analysis_dir

FIXED = "2026-01-01 00:00 UTC"
PID = "PIDX-"  # participant ids get this prefix, worker ids WKRX-: easy to find if they leak into the HTML
WID = "WKRX-"
FID_SECTIONS = ["fidelity_teams", "fidelity_agreement", "fidelity_reliability", "fidelity_arms",
                "fidelity_outcomes", "fidelity_notes"]


# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------


def _prefix(series: pd.Series, prefix: str) -> pd.Series:
    return pd.Series([pd.NA if pd.isna(v) else f"{prefix}{int(v) if isinstance(v, float) else v}" for v in series],
                     index=series.index, dtype=object)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo_report_fidelity")
    files = write_demo_files(generate_demo_study(seed=2024), folder)
    for name in ("demo_study_map.yaml", "demo_workers_map.yaml", "demo_plan.yaml"):
        shutil.copyfile(analysis_dir() / name, folder / name)
    result = run_scoring(files["participants"], map_path=folder / "demo_study_map.yaml")
    workers = run_scoring(files["workers"], map_path=folder / "demo_workers_map.yaml").data.copy()
    plan = load_plan(folder / "demo_plan.yaml")
    pid = plan.design.participant
    su = result.data.copy()
    su[pid] = _prefix(su[pid], PID)
    su["worker_id"] = _prefix(su["worker_id"], WID)
    workers["worker_id"] = _prefix(workers["worker_id"], WID)
    result.scoring.data[pid] = su[pid]
    analysis = analyse_fidelity(su, workers, plan)
    return dict(result=result, plan=plan, analysis=analysis, su=su, workers=workers)


def make_context(demo, analysis=None, *, k=0, context_k=0):
    result, plan = demo["result"], demo["plan"]
    scoring = dataclasses.replace(result.scoring, qa=result.qa)
    context = build_study_context(scoring, plan.design, source_name="demo_study.sav", generated=FIXED,
                                  suppress_below=context_k)
    add_fidelity_sections(context, analysis or demo["analysis"], suppress_below=k)
    return context


@pytest.fixture(scope="module")
def study_html(demo) -> str:
    return render_study_report(make_context(demo))


@pytest.fixture(scope="module")
def fid_html(demo) -> str:
    return render_fidelity_report(demo["analysis"], study="Demo study", generated=FIXED)


def section_html(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}"')
    return html[start:html.index("</section>", start)]


class _Tables(HTMLParser):
    """Rows of cell texts of every <table> (nested markup flattened, whitespace collapsed), by table class."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.tables.append((attrs.get("class", ""), []))
        elif tag == "tr" and self.tables:
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
            self.tables[-1][1].append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables(html: str, cls: str) -> list[list[list[str]]]:
    parser = _Tables()
    parser.feed(html)
    return [rows for c, rows in parser.tables if cls in c.split()]


def visible_text(html: str) -> str:
    html = re.sub(r"<svg\b.*?</svg>", " ", html, flags=re.S)
    return unescape(re.sub(r"<[^>]+>", " ", html))


# ----------------------------------------------------------------------------------------------------------
# study report sections
# ----------------------------------------------------------------------------------------------------------


def test_sections_present_and_ordered(demo):
    context = make_context(demo)
    ids = [s["id"] for s in context["sections"]]
    assert ids[-1] == "provenance"
    assert ids[-1 - len(FID_SECTIONS):-1] == FID_SECTIONS


def test_sections_follow_comparison_sections(demo):
    result, plan = demo["result"], demo["plan"]
    context = build_study_context(dataclasses.replace(result.scoring, qa=result.qa), plan.design,
                                  source_name="demo_study.sav", generated=FIXED)
    n = len(context["sections"])
    add_section(context, "methods", "Methods text", {}, position=n - 1)  # as add_comparison_sections does
    add_fidelity_sections(context, demo["analysis"])
    ids = [s["id"] for s in context["sections"]]
    assert ids.index("methods") < ids.index("fidelity_teams") < ids.index("fidelity_notes") < ids.index("provenance")


def test_no_arm_section_without_arm_comparison(demo):
    analysis = dataclasses.replace(demo["analysis"], arm_comparison=None)
    ids = [s["id"] for s in make_context(demo, analysis)["sections"]]
    assert "fidelity_arms" not in ids and "fidelity_outcomes" in ids


def test_team_table_numbers_equal_analysis(demo, study_html):
    teams = demo["analysis"].teams
    (rows,) = tables(section_html(study_html, "fidelity_teams"), "fidelity-teams")
    body = [r for r in rows[1:]]
    seen = 0
    current = None
    for r in body:
        if r[0] in ("Workers", "Service users"):
            version, cells = r[0], r[1:]
        else:
            current = re.sub(r" (Implementation|Control)$", "", r[0])
            version, cells = r[1], r[2:]
        v = "W" if version == "Workers" else "SU"
        g = teams[(teams["team"] == current) & (teams["version"] == v)].set_index("domain")
        for domain, cell in zip(("com", "ass", "pla", "par", "rel", "total"), cells):
            t = g.loc[domain]
            assert cell == f"{fmt_number(t['mean'], 2)}SD {fmt_number(t['sd'], 2)} \u00b7 n {fmt_count(t['n'])}"
            seen += 1
        assert cells[6] == g.loc["total", "band"]
    assert seen == len(teams)


def test_band_assumption_text(demo, study_html, fid_html):
    analysis = demo["analysis"]
    assert analysis.bands_text
    for html in (section_html(study_html, "fidelity_teams"), fid_html):
        text = visible_text(html)
        assert "Assumption, not a published cut-off" in text
        assert analysis.bands_text in text
        assert analysis.plan.fidelity.bands_note in text


def test_agreement_and_reliability_numbers(demo, study_html):
    analysis = demo["analysis"]
    (rows,) = tables(section_html(study_html, "fidelity_agreement"), "fidelity-agreement")
    data = [r for r in rows[1:] if len(r) == 10]
    assert len(data) == len(analysis.agreement)
    for r, (_, a) in zip(data, analysis.agreement.iterrows()):
        assert r[0].lower() == DOMAIN_LABELS[a["domain"]].lower()
        assert r[1:] == [fmt_count(a["n_pairs"]), fmt_count(a["n_service_users"]), fmt_number(a["icc"], 2),
                         fmt_ci(a["icc_conf_low"], a["icc_conf_high"], 2), fmt_number(a["mean_worker"], 2),
                         fmt_number(a["mean_service_users"], 2), fmt_number(a["bias"], 2),
                         fmt_number(a["sd_difference"], 2), fmt_ci(a["loa_low"], a["loa_high"], 2)]
    (rows,) = tables(section_html(study_html, "fidelity_reliability"), "fidelity-reliability")
    data = [r for r in rows[1:] if len(r) == 6]
    assert len(data) == len(analysis.reliability)
    for r, (_, a) in zip(data, analysis.reliability.iterrows()):
        assert r[2:5] == [fmt_count(a["n"]), fmt_number(a["alpha"], 2), fmt_ci(a["conf_low"], a["conf_high"], 2)]


def test_arms_and_outcome_models(demo, study_html):
    analysis = demo["analysis"]
    (rows,) = tables(section_html(study_html, "fidelity_arms"), "fidelity-arms")
    data = [r for r in rows[1:] if len(r) == 7]
    assert len(data) == len(analysis.arm_comparison)
    for r, (_, m) in zip(data, analysis.arm_comparison.iterrows()):
        assert r[1:4] == [fmt_number(m["estimate"], 2), fmt_ci(m["conf_low"], m["conf_high"], 2),
                          fmt_number(m["std_error"], 2)]
        assert r[4] == f"{fmt_number(m['df'], 1)} {m['df_method']}"
        assert r[5] == fmt_p(m["p_value"])
        assert r[6] == f"{m['n_participants']} ({m['n_clusters']})"
    sec = section_html(study_html, "fidelity_outcomes")
    assert "Observational, not randomised" in sec
    assert sec.index('class="caution"') < sec.index("<table")  # the caution comes first
    data = [r for t in tables(sec, "fidelity-outcomes") for r in t[1:] if len(r) == 7]
    models = analysis.outcome_models[analysis.outcome_models["estimate"].notna()]
    assert len(data) == len(models)
    for r, (_, m) in zip(data, models.iterrows()):
        assert r[0] == m["term"]
        assert r[1:3] == [fmt_number(m["estimate"], 2), fmt_ci(m["conf_low"], m["conf_high"], 2)]
        assert r[5] == fmt_p(m["p_value"])


def test_study_sections_suppress_small_counts(demo):
    html = render_study_report(make_context(demo, k=6))
    sec = section_html(html, "fidelity_teams")
    teams = demo["analysis"].teams
    small = teams[(teams["n"] > 0) & (teams["n"] < 6)]
    assert not small.empty
    assert "n <span class=\"suppressed\" title=\"Suppressed small count\">&lt;6</span>" in sec
    for _, t in small.iterrows():  # the mean of a suppressed group is not shown anywhere in its row
        assert f"SD {fmt_number(t['sd'], 2)} &middot; n &lt;6" not in sec
    big = render_study_report(make_context(demo, k=0))
    assert "&lt;6" not in section_html(big, "fidelity_teams")


def test_bad_suppress_below(demo):
    with pytest.raises(CpevalError):
        add_fidelity_sections(make_context(demo), demo["analysis"], suppress_below=-1)
    with pytest.raises(CpevalError):
        render_fidelity_report(demo["analysis"], study="x", suppress_below=True)


# ----------------------------------------------------------------------------------------------------------
# standalone report
# ----------------------------------------------------------------------------------------------------------


def test_one_page_per_team(demo, fid_html):
    teams = sorted(demo["analysis"].teams["team"].unique())
    pages = re.findall(r'<section id="team-\d+" class="report-section team-page">\s*<p class="kicker">.*?</p>\s*'
                       r"<h2>(.*?)</h2>", fid_html, flags=re.S)
    assert sorted(unescape(p) for p in pages) == teams
    assert fid_html.count('class="report-section team-page"') == len(teams)
    assert "page-break-before: always" in fid_html and "break-before: page" in fid_html
    assert fid_html.count("<svg ") == len(teams)  # one profile figure per team
    assert "http://" not in fid_html and "https://" not in fid_html  # self-contained


def test_no_identifiers_in_either_report(demo, study_html, fid_html):
    su, workers = demo["su"], demo["workers"]
    assert su[demo["plan"].design.participant].astype(str).str.startswith(PID).all()
    assert workers["worker_id"].astype(str).str.startswith(WID).all()
    for html in (study_html, fid_html):
        assert PID not in html
        assert WID not in html


def test_standalone_numbers_equal_analysis(demo, fid_html):
    analysis = demo["analysis"]
    k = 5
    teams = analysis.teams
    profiles = team_profiles(analysis, suppress_below=k)
    returns = team_returns(analysis)
    pages = re.findall(r'(<section id="team-\d+" class="report-section team-page">.*?</section>)', fid_html, re.S)
    for page in pages:
        name = unescape(re.search(r"<h2>(.*?)</h2>", page).group(1))
        (views,) = tables(page, "fid-views")
        for r in views[1:]:
            label = r[0].replace(" act", "")
            domain = next(d for d, lab in DOMAIN_LABELS.items() if lab.lower() == label.lower())
            for v, cell in (("W", r[1]), ("SU", r[3])):
                t = teams[(teams["team"] == name) & (teams["version"] == v) & (teams["domain"] == domain)].iloc[0]
                assert cell == (fmt_number(t["mean"], 2) if t["n"] >= k else "\u2014")
            p = profiles[(profiles["team"] == name) & (profiles["domain"] == domain)].iloc[0]
            if pd.notna(p["su_minus_w"]):
                assert r[5].lstrip("+") == fmt_number(p["su_minus_w"], 2)
            assert ("act" in r[0].split()) == bool(p["action"])
        (ret,) = tables(page, "fid-returns")
        for r, v in zip(ret[1:], ("W", "SU")):
            q = returns[(returns["team"] == name) & (returns["version"] == v)].iloc[0]
            assert r[1] == fmt_count(q["n_rated"], k) and r[2] == fmt_count(q["n_total"], k)
            rows = analysis.scores[(analysis.scores["team"] == name) & (analysis.scores["version"] == v)]
            assert q["n_rated"] == len(rows)
            assert r[3] == f"{100 * rows['completeness'].mean():.0f}%"


def test_action_rule(demo):
    profiles = team_profiles(demo["analysis"], suppress_below=5)
    domains = profiles[profiles["domain"] != "total"]
    for _, p in domains.iterrows():
        means = [m for m in (p["mean_w"], p["mean_su"]) if pd.notna(m)]
        gaps = [p[f"mean_{s}"] - p[f"others_median_{s}"] for s in ("w", "su")
                if pd.notna(p[f"mean_{s}"]) and pd.notna(p[f"others_median_{s}"])]
        expected = bool(means and min(means) < MIDPOINT) or bool(gaps and min(gaps) <= -GAP_BELOW_OTHERS + 1e-12)
        assert p["action"] == expected
    assert domains["action"].any() and not domains["action"].all()
    # the other teams are the other teams of the same arm
    p = profiles[profiles["domain"] == "com"].iloc[0]
    arm_teams = profiles[(profiles["domain"] == "com") & (profiles["arm"] == p["arm"])]
    assert p["others_n_w"] <= len(arm_teams) - 1


def test_standalone_suppression(demo):
    analysis = demo["analysis"]
    teams = analysis.teams
    k = 8
    html = render_fidelity_report(analysis, study="Demo study", generated=FIXED, suppress_below=k)
    small = teams[(teams["domain"] == "total") & (teams["n"] > 0) & (teams["n"] < k)]
    assert not small.empty
    (summary,) = tables(section_html(html, "summary"), "fidelity-teams")
    current = None
    checked = 0
    for r in summary[1:]:
        if r[0] not in ("Workers", "Service users"):
            current, r = re.sub(r" (Implementation|Control)$", "", r[0]), r[1:]
        v = "W" if r[0] == "Workers" else "SU"
        t = teams[(teams["team"] == current) & (teams["version"] == v) & (teams["domain"] == "total")].iloc[0]
        if 0 < t["n"] < k:
            assert r[7] == f"<{k}" and r[6] == "\u2014" and r[8] == "\u2014"  # n, total mean and band hidden
            checked += 1
        else:
            assert r[7] == fmt_count(t["n"]) and r[6] == fmt_number(t["mean"], 2)
    assert checked == len(small)
    assert f"counts from 1 to {k - 1} shown as &lt;{k}" in html
    unsuppressed = render_fidelity_report(analysis, study="Demo study", generated=FIXED, suppress_below=0)
    assert "&lt;8" not in unsuppressed and "Prepared for circulation" not in unsuppressed


def test_default_suppression_is_five(demo, fid_html):
    assert "counts from 1 to 4 shown as &lt;5" in fid_html


def test_deterministic_bytes(demo, fid_html, study_html):
    again = render_fidelity_report(demo["analysis"], study="Demo study", generated=FIXED)
    assert again.encode() == fid_html.encode()
    assert render_study_report(make_context(demo)).encode() == study_html.encode()
