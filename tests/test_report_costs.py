"""Tests of the costs sections of the study report (cpeval.report_costs and its templates).

One CostAnalysis is built for the whole module from a small synthetic long data set (8 teams, even teams in the
implementation arm, 12 participants each; 199 bootstrap replicates, 5 imputations), with participant identifiers
written as text ("CPX-1001") so that a leak would be unmistakable. Every number checked in the HTML is compared with
the CostAnalysis's own tables, parsed back from the cell text or formatted as the report formats them.
"""

from __future__ import annotations

import dataclasses
import re
from html import unescape
from html.parser import HTMLParser
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cpeval.costs import COST_RECORD_COLUMNS, analyse_costs
from cpeval.errors import CpevalError
from cpeval.plan import Design, MissingData, Plan, parse_cost_settings
from cpeval.qa import empty_qa
from cpeval.report import build_study_context, fmt_count, fmt_number, render_study_report
from cpeval.report_costs import (
    QUADRANT_WORDS,
    add_cost_sections,
    ce_plane_svg,
    ceac_svg,
    fmt_money,
    fmt_money_ci,
)

FIXED = "2026-01-01 00:00 UTC"
ID_PREFIX = "CPX-"
COST_SECTIONS = ["costs_use", "costs_results", "costs_methods"]
SCALE_COLUMNS = ["instrument", "instrument_name", "scale", "column", "label", "rule", "output_min", "output_max",
                 "n_rows", "n_scored", "n_complete", "n_prorated", "n_not_scored", "value_set", "verified", "notes"]
MINUS = "\u2212"


# ----------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------


def synthetic_data(seed: int = 5) -> pd.DataFrame:
    """Long data: 8 teams x 12 participants x 2 time points; the community specialist nurse is rare in control
    (a few users at baseline, none at follow-up); some follow-up GP contacts and utilities are missing."""
    rng = np.random.default_rng(seed)
    rows = []
    pid = 1001
    for team in range(8):
        arm = "implementation" if team % 2 == 0 else "control"
        for _ in range(12):
            u0 = float(np.clip(rng.normal(0.6, 0.2), -0.2, 1))
            e0 = float(rng.normal(20, 5))
            for tp in ("baseline", "follow_up"):
                gp = int(rng.poisson(3))
                cmht = int(rng.poisson(1.5 if arm == "implementation" else 1.0))
                nurse = int(rng.random() < (0.3 if arm == "implementation" else 0.04)) * int(rng.integers(1, 4))
                minutes = float(rng.integers(20, 60)) if nurse else 0.0
                follow = tp == "follow_up"
                u = float(np.clip(u0 + rng.normal(0.05 if arm == "implementation" else 0.0, 0.1), -0.2, 1)) \
                    if follow else u0
                e = e0 + rng.normal(2 if arm == "implementation" else 0, 3) if follow else e0
                rows.append(dict(participant_id=f"{ID_PREFIX}{pid}", team_id=team, arm=arm, timepoint=tp,
                                 csri_gp=gp, csri_cmht=cmht, csri_csn=nurse, csri_csnmin=minutes,
                                 eq5d5l_index=u, rguk_total=e))
            pid += 1
    data = pd.DataFrame(rows)
    follow_rows = data.index[data["timepoint"] == "follow_up"]
    data.loc[follow_rows[::9], "csri_gp"] = np.nan
    data.loc[follow_rows[3::11], "eq5d5l_index"] = np.nan
    return data


def synthetic_plan(replicates: int = 199) -> Plan:
    settings = parse_cost_settings({
        "unit_costs": "unit_costs_pssru_example.csv", "price_year": "2013/14", "price_index": "demo_price_index.csv",
        "services": {"gp_surgery": {"contacts": "csri_gp"}, "cmht_contact": {"contacts": "csri_cmht"},
                     "community_specialist_nurse": {"contacts": "csri_csn", "minutes_per_contact": "csri_csnmin"}},
        "implementation_costs": [{"team": 0, "training": 2000, "caseload": 200}, {"team": 2, "training": 2000},
                                 {"team": 4, "training": 2500}, {"team": 6, "training": 1000}],
        "bootstrap": {"replicates": replicates, "seed": 1}}, "analysis/x.yaml")
    return Plan(design=Design(site=None), primary="rguk_total", costs=settings,
                missing_data=MissingData(imputations=5, seed=2024))


@pytest.fixture(scope="module")
def study():
    data = synthetic_data()
    plan = synthetic_plan()
    analysis = analyse_costs(data, plan)
    return dict(data=data, plan=plan, analysis=analysis)


def make_context(study, analysis=None, *, context_k=0, k=0, with_ids=True):
    data, plan = study["data"], study["plan"]
    scoring = SimpleNamespace(data=data, qa=empty_qa(), scales=pd.DataFrame(columns=SCALE_COLUMNS), items={})
    context = build_study_context(scoring, plan.design, source_name="costs_study.sav", generated=FIXED,
                                  suppress_below=context_k)
    add_cost_sections(context, analysis or study["analysis"], suppress_below=k,
                      participant_ids=data[plan.design.participant] if with_ids else None)
    return context


def make_html(study, analysis=None, **kwargs) -> str:
    return render_study_report(make_context(study, analysis, **kwargs))


@pytest.fixture(scope="module")
def html(study) -> str:
    return make_html(study)


@pytest.fixture(scope="module")
def html_k10(study) -> str:
    return make_html(study, k=10)


def section_html(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}"')
    return html[start:html.index("</section>", start)]


class _Tables(HTMLParser):
    """Per <table> (keyed by its first class): caption text, header rows and body rows of cell texts (nested
    markup flattened, whitespace collapsed; <br> and block spans become a space)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, dict] = {}
        self._table = None
        self._part = None
        self._row = None
        self._cell = None
        self._caption = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            key = (attrs.get("class") or "").replace("data", "").split()[0]
            assert key not in self.tables, f"two tables of class {key}"
            self._table = {"caption": "", "head": [], "body": []}
            self.tables[key] = self._table
        elif tag == "caption" and self._table is not None:
            self._caption = []
        elif tag in ("thead", "tbody"):
            self._part = "head" if tag == "thead" else "body"
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag in ("br", "span") and self._cell is not None:
            self._cell.append(" ")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table[self._part].append(self._row)
            self._row = None
        elif tag == "caption" and self._caption is not None:
            self._table["caption"] = " ".join("".join(self._caption).split())
            self._caption = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        elif self._caption is not None:
            self._caption.append(data)


def tables(html: str) -> dict[str, dict]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


def visible_text(html: str) -> str:
    no_svg = re.sub(r"<svg\b.*?</svg>", " ", html, flags=re.S)
    no_style = re.sub(r"<style\b.*?</style>", " ", no_svg, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", no_style)).split())


def svg_texts(svg: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", t)) for t in re.findall(r"<text\b[^>]*>(.*?)</text>", svg, flags=re.S)]


def svg_group(svg: str, gid: str) -> str:
    """The markup of the group with id ``gid`` (up to its matching </g>)."""
    start = svg.index(f'id="{gid}"')
    start = svg.rindex("<g", 0, start)
    depth = 0
    for m in re.finditer(r"<g\b|</g>", svg[start:]):
        depth += 1 if m.group(0) == "<g" else -1
        if depth == 0:
            return svg[start:start + m.end()]
    raise AssertionError(f"group {gid} not closed")


def money(text: str) -> float:
    """'£1,234' -> 1234.0, '-£170' -> -170.0."""
    m = re.fullmatch(r"(-?)£([\d,]+(?:\.\d+)?)", text.strip())
    assert m, f"not a money value: {text!r}"
    return (-1 if m.group(1) else 1) * float(m.group(2).replace(",", ""))


def number(text: str) -> float:
    text = text.strip()
    return money(text) if "£" in text else float(text)


def interval(text: str) -> tuple[float, float]:
    low, high = text.split(" to ")
    return number(low), number(high)


def decimals_of(text: str) -> int:
    text = text.strip()
    return len(text.split(".")[1]) if "." in text else 0


# ----------------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------------


def test_fmt_money():
    assert fmt_money(1234.6) == "£1,235"
    assert fmt_money(999.4) == "£999"
    assert fmt_money(-170.2) == "-£170"
    assert fmt_money(-0.3) == "£0"  # no "-£0"
    assert fmt_money(45.6751, 2) == "£45.68"
    assert fmt_money(1_000_000) == "£1,000,000"
    assert fmt_money(float("nan")) == "—"
    assert fmt_money_ci(-169.9, 324.0) == "-£170 to £324"
    assert fmt_money_ci(None, 3) == "—"


def test_results_columns_are_the_documented_ones(study):
    assert list(study["analysis"].results.columns) == COST_RECORD_COLUMNS


# ----------------------------------------------------------------------------------------------------------
# structure
# ----------------------------------------------------------------------------------------------------------


def test_cost_sections_come_before_provenance(study, html):
    ids = [s["id"] for s in make_context(study)["sections"]]
    assert ids[-4:] == COST_SECTIONS + ["provenance"]
    positions = [html.index(f'<section id="{sid}"') for sid in COST_SECTIONS + ["provenance"]]
    assert positions == sorted(positions)
    toc = html[html.index('<nav class="toc"'):html.index("</nav>")]
    assert [t for t in re.findall(r'href="#([^"]+)"', toc)][-4:] == COST_SECTIONS + ["provenance"]


def test_without_provenance_sections_are_appended_and_not_added_twice(study):
    context = {"meta": {"suppress_below": 0}, "summary": [], "sections": []}
    add_cost_sections(context, study["analysis"])
    assert [s["id"] for s in context["sections"]] == COST_SECTIONS
    with pytest.raises(ValueError, match="already"):
        add_cost_sections(context, study["analysis"])


@pytest.mark.parametrize("bad", [-1, 2.5, True, "5"])
def test_bad_suppress_below_is_an_error(study, bad):
    context = {"meta": {"suppress_below": 0}, "summary": [], "sections": []}
    with pytest.raises(CpevalError, match="suppress_below"):
        add_cost_sections(context, study["analysis"], suppress_below=bad)


def test_sections_hold_only_plain_data(study):
    """Templates never compute: the context holds strings, numbers, lists and dicts (and the inline SVG)."""
    from markupsafe import Markup

    def walk(value, where):
        if isinstance(value, dict):
            for key, v in value.items():
                walk(v, f"{where}.{key}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        else:
            assert isinstance(value, (str, int, bool, Markup)) or value is None, f"{where}: {type(value)}"

    for section in make_context(study)["sections"]:
        if section["id"] in COST_SECTIONS:
            walk(section["data"], section["id"])


# ----------------------------------------------------------------------------------------------------------
# the results table
# ----------------------------------------------------------------------------------------------------------


def _kind(row: pd.Series) -> str:
    unit = str(row["unit"])
    return "money" if unit.startswith("£") else "qaly" if unit.lower().startswith("qaly") else "points"


def test_results_table_shows_the_records(study, html):
    analysis = study["analysis"]
    results = analysis.results
    table = tables(section_html(html, "costs_results"))["cost-results"]
    body = table["body"]
    # group rows (one cell) split the body: complete cases first, then multiple imputation
    groups: list[tuple[str, list[list[str]]]] = []
    for row in body:
        if len(row) == 1:
            groups.append((row[0], []))
        else:
            groups[-1][1].append(row)
    assert [g[0].split(" imputed")[0] for g in groups] == ["Complete cases",
                                                           "Multiple imputation (sensitivity analysis)"]
    for (label, rows), name in zip(groups, ["complete_case", "multiple_imputation"], strict=True):
        records = results[results["analysis"] == name].reset_index(drop=True)
        assert len(rows) == len(records), label
        for cells, (_, rec) in zip(rows, records.iterrows(), strict=True):
            assert cells[0].lower().startswith(str(rec["quantity"]).lower()), (cells[0], rec["quantity"])
            kind = _kind(rec)
            estimate = number(cells[1])
            tol = 0.5 if kind == "money" else 0.0005 if kind == "qaly" else 0.005
            assert estimate == pytest.approx(rec["estimate"], abs=tol), rec["quantity"]
            assert decimals_of(cells[1]) == {"money": 0, "qaly": 3, "points": 2}[kind]
            if kind == "money":
                assert cells[1].startswith(("£", "-£")) and ("," in cells[1]) == (abs(rec["estimate"]) >= 999.5)
            ratio = str(rec["quantity"]).startswith(("ICER", "incremental cost per"))
            if ratio:
                # the statement replaces the interval and the method: one cell spanning both
                assert len(cells) == 5
                assert cells[2] == unescape(str(rec["notes"])).strip()
                n_ref, n_comp = cells[3], cells[4]
            else:
                low, high = interval(cells[2])
                assert low == pytest.approx(rec["conf_low"], abs=tol)
                assert high == pytest.approx(rec["conf_high"], abs=tol)
                assert low <= estimate <= high
                method = cells[3]
                assert method == ("Cluster bootstrap, percentile" if name == "complete_case" else "Rubin’s rules, t")
                n_ref, n_comp = cells[4], cells[5]
            assert n_ref == f"{rec['n_participants_control']} ({rec['n_clusters_control']})"
            assert n_comp == f"{rec['n_participants_treatment']} ({rec['n_clusters_treatment']})"


def test_unadjusted_row_shows_both_arm_means(study, html):
    rec = study["analysis"].results.iloc[0]
    assert rec["quantity"].startswith("cost difference, unadjusted")
    text = visible_text(section_html(html, "costs_results"))
    assert (f"means: {fmt_money(rec['mean_control'])} reference, {fmt_money(rec['mean_treatment'])} comparator"
            in text)


def test_multiple_imputation_counts_are_given_once_and_suppressed(study, html, html_k10):
    counts = study["analysis"].imputed_counts
    assert counts["total_cost"] > 0 and counts["u1"] > 0
    text = visible_text(section_html(html, "costs_results"))
    assert f"total cost {counts['total_cost']}" in text
    assert f"utility at follow-up {counts['u1']}" in text
    assert "values imputed:" not in text  # the records' note (raw counts) is not repeated
    text10 = visible_text(section_html(html_k10, "costs_results"))
    for column, label in (("total_cost", "total cost"), ("u1", "utility at follow-up")):
        expected = "<10" if counts[column] < 10 else str(counts[column])
        assert f"{label} {expected}" in text10


# ----------------------------------------------------------------------------------------------------------
# arms: reference and comparator named everywhere
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("table", ["costs-use", "costs-summary", "cost-results", "inb", "quadrants"])
def test_every_arm_table_names_reference_and_comparator(html, table):
    found = tables(html)[table]
    header = " ".join([found["caption"]] + [c for row in found["head"] for c in row])
    assert "Control (reference)" in header or "control (reference)" in header
    assert "Implementation (comparator)" in header or "implementation (comparator)" in header


def test_arm_columns_are_reference_then_comparator(study, html):
    head = tables(html)["costs-use"]["head"][0]
    assert head[-2:] == ["Control (reference)", "Implementation (comparator)"]
    head = tables(html)["cost-results"]["head"][1]
    assert head == ["Control (reference)", "Implementation (comparator)"]


def test_both_figures_name_the_arms_and_their_roles(study):
    analysis = study["analysis"]
    for svg in (ce_plane_svg(analysis), ceac_svg(analysis)):
        texts = " ".join(svg_texts(svg))
        assert "(reference)" in texts and "(comparator)" in texts
        assert "implementation" in texts.lower() and "control" in texts.lower()
    plane = " ".join(svg_texts(ce_plane_svg(analysis)))
    assert f"Incremental QALYs (implementation (comparator) {MINUS} control (reference))" in plane


# ----------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------


def test_ce_plane_has_one_point_per_replicate_the_estimate_and_quadrant_shares(study, html):
    analysis = study["analysis"]
    svg = ce_plane_svg(analysis)
    assert svg.startswith("<svg") and 'aria-label="Cost-effectiveness plane' in svg
    reps = analysis.replicates
    finite = int((np.isfinite(reps["delta_qaly"]) & np.isfinite(reps["delta_cost"])).sum())
    assert svg_group(svg, "fig-ce-plane-replicates").count("<use") == finite == len(reps)
    assert svg_group(svg, "fig-ce-plane-estimate").count("<use") == 1
    texts = svg_texts(svg)
    quads = analysis.quadrants[analysis.quadrants["plane"] == "QALY"].set_index("quadrant")["share"]
    for quad, words in QUADRANT_WORDS.items():
        share = f"{100 * quads[quad]:.1f}% of replicates"
        assert any(words in t and share in t for t in texts) or (
            any(words in t for t in texts) and share in texts), quad
    for i, lam in enumerate(analysis.settings.inb_thresholds):
        assert svg.count(f'id="fig-ce-plane-threshold-{i}"') == 1
        assert sum(t == f"£{lam:,.0f}/QALY" for t in texts) == 1  # the line's own label
    assert "url(#" not in svg and "<clipPath" not in svg
    assert svg in html


def test_ce_plane_estimate_is_the_complete_case_point_estimate(study):
    """The marker sits where the axes put the complete-case incremental QALYs and cost (checked through the
    tick positions of the SVG: x and y are linear in data units)."""
    analysis = study["analysis"]
    results = analysis.results
    cc = results[results["analysis"] == "complete_case"].set_index("quantity")["estimate"]
    dq = cc["incremental QALYs (cost-effectiveness sample, adjusted)"]
    dc = cc["incremental cost (cost-effectiveness sample, adjusted)"]
    svg = ce_plane_svg(analysis)
    marker = svg_group(svg, "fig-ce-plane-estimate")
    x, y = (float(v) for v in re.search(r'<use[^>]*\bx="([-\d.]+)"[^>]*\by="([-\d.]+)"', marker).groups())
    # the axes through 0: the zero lines of axhline/axvline are the first two line2d paths after the grid; use
    # two replicates instead: map data -> SVG by a least-squares fit on the replicate points
    points = re.findall(r'<use[^>]*\bx="([-\d.]+)"[^>]*\by="([-\d.]+)"', svg_group(svg, "fig-ce-plane-replicates"))
    px = np.array([float(p[0]) for p in points])
    py = np.array([float(p[1]) for p in points])
    ax, bx = np.polyfit(analysis.replicates["delta_qaly"], px, 1)
    ay, by = np.polyfit(analysis.replicates["delta_cost"], py, 1)
    assert x == pytest.approx(ax * dq + bx, abs=0.05)
    assert y == pytest.approx(ay * dc + by, abs=0.05)


def test_ceac_has_one_point_per_threshold_and_labelled_lines(study, html):
    analysis = study["analysis"]
    svg = ceac_svg(analysis)
    assert svg_group(svg, "fig-ceac-curve").count("<use") == len(analysis.ceac) == 51
    texts = svg_texts(svg)
    for i, lam in enumerate(analysis.settings.inb_thresholds):
        assert svg.count(f'id="fig-ceac-threshold-{i}"') == 1
        assert texts.count(f"£{lam:,.0f}/QALY") == 1
    assert "Probability cost-effective" in texts
    assert "url(#" not in svg and "<clipPath" not in svg
    assert svg in html


def test_ceac_points_follow_the_probabilities(study):
    """y of each marker is linear in the probability (0 at the bottom, 1 at the top)."""
    analysis = study["analysis"]
    svg = ceac_svg(analysis)
    points = re.findall(r'<use[^>]*\bx="([-\d.]+)"[^>]*\by="([-\d.]+)"', svg_group(svg, "fig-ceac-curve"))
    py = np.array([float(p[1]) for p in points])
    prob = analysis.ceac["probability_cost_effective"].to_numpy()
    slope, intercept = np.polyfit(prob, py, 1)
    assert slope < 0  # SVG y grows downwards
    assert np.abs(slope * prob + intercept - py).max() < 0.05


def test_figures_are_empty_without_data(study):
    analysis = study["analysis"]
    empty = dataclasses.replace(analysis, replicates=analysis.replicates.iloc[0:0],
                                ceac=analysis.ceac.iloc[0:0])
    assert ce_plane_svg(empty) == "" and ceac_svg(empty) == ""
    html = make_html(study, empty)
    assert "no plane" in visible_text(section_html(html, "costs_results"))


# ----------------------------------------------------------------------------------------------------------
# net benefit, cost per effect, quadrants
# ----------------------------------------------------------------------------------------------------------


def test_inb_table_at_each_threshold_with_probability(study, html):
    analysis = study["analysis"]
    results, ceac = analysis.results, analysis.ceac
    rows = tables(html)["inb"]["body"]
    thresholds = analysis.settings.inb_thresholds
    assert len(rows) == 2 * len(thresholds)
    for lam in thresholds:
        label = f"£{lam:,.0f}/QALY"
        mine = [r for r in rows if r[0] == label]
        assert [r[1] for r in mine] == ["Complete cases", "Multiple imputation (sensitivity analysis)"]
        for r, name in zip(mine, ["complete_case", "multiple_imputation"], strict=True):
            rec = results[(results["analysis"] == name)
                          & (results["quantity"] == f"incremental net benefit at £{lam:,.0f} per QALY")].iloc[0]
            assert r[2] == fmt_money(rec["estimate"])
            assert r[3] == fmt_money_ci(rec["conf_low"], rec["conf_high"])
            assert interval(r[3])[0] <= money(r[2]) <= interval(r[3])[1]
        p = ceac.loc[np.isclose(ceac["threshold"], lam), "probability_cost_effective"].iloc[0]
        assert mine[0][4] == fmt_number(p, 2)
        assert mine[1][4] == "—"
        # the probability is the share of replicates with positive net benefit at lam
        reps = analysis.replicates
        assert p == pytest.approx(float(np.mean(lam * reps["delta_qaly"] - reps["delta_cost"] > 0)))


def test_cost_per_effect_statement_and_quadrant_table(study, html):
    analysis = study["analysis"]
    text = visible_text(section_html(html, "costs_results"))
    statement = analysis.cost_per_effect["statement"]
    assert statement in text
    assert f"adjusted incremental cost {fmt_money(analysis.cost_per_effect['delta_cost'])}" in text
    table = tables(html)["quadrants"]
    assert table["head"][0][2:] == ["Plane of QALYs", "Plane of rguk_total"]
    quads = analysis.quadrants
    for row in table["body"]:
        code = row[0].split("(")[1].rstrip(")")
        assert row[1].startswith(QUADRANT_WORDS[code])
        for plane, cell in zip(["QALY", "rguk_total"], row[2:], strict=True):
            share = quads[(quads["plane"] == plane) & (quads["quadrant"] == code)]["share"].iloc[0]
            assert cell == f"{100 * share:.1f}%"
    assert sum(float(r[2].rstrip("%")) for r in table["body"]) == pytest.approx(100, abs=0.25)


def test_icer_statement_in_the_plane_caption(study, html):
    caption = re.search(r'<figure class="figure ce-plane">.*?<figcaption>(.*?)</figcaption>',
                        section_html(html, "costs_results"), flags=re.S).group(1)
    assert study["analysis"].icer["statement"] in unescape(caption)


# ----------------------------------------------------------------------------------------------------------
# service use, costs, unit costs, implementation
# ----------------------------------------------------------------------------------------------------------


def test_service_use_table_numbers(study, html):
    analysis = study["analysis"]
    use = analysis.service_use
    body = tables(html)["costs-use"]["body"]
    period = None
    checked = 0
    for row in body:
        if len(row) == 1:
            period = "baseline" if row[0].startswith("Baseline") else "follow_up"
            continue
        service = re.search(r"\b(gp_surgery|cmht_contact|community_specialist_nurse)\b", row[0]).group(1)
        for offset, arm in ((2, "control"), (6, "implementation")):
            rec = use[(use["service"] == service) & (use["timepoint"] == period) & (use["arm"] == arm)].iloc[0]
            n, users, mean_use, mean_cost = row[offset:offset + 4]
            assert n == fmt_count(rec["n"])
            assert users == f"{rec['users']} ({100 * rec['users'] / rec['n']:.1f}%)"
            assert float(mean_use) == pytest.approx(rec["mean_quantity"], abs=0.005)
            mean, sd = mean_cost.split(" (")
            assert money(mean) == pytest.approx(rec["mean_cost"], abs=0.5)
            assert money(sd.rstrip(")")) == pytest.approx(rec["sd_cost"], abs=0.5)
            checked += 1
    assert checked == len(use)


def test_cost_summary_table_numbers_and_labels(study, html):
    summary = study["analysis"].cost_summary
    body = tables(html)["costs-summary"]["body"]
    labels = [r[0] for r in body if len(r) > 1]
    assert "Primary care" in labels and "All services" in labels
    assert labels[-1] == "Total cost over follow-up (services + implementation)"
    assert "Implementation (per participant)" in labels
    assert not any(label.startswith("cost_") or "_" in label for label in labels)
    total = summary[(summary["cost"] == "total_cost")].set_index("arm")
    last = body[-1]
    for offset, arm in ((1, "control"), (4, "implementation")):
        assert last[offset] == str(total.loc[arm, "n"])
        mean, sd = last[offset + 1].split(" (")
        assert money(mean) == pytest.approx(total.loc[arm, "mean"], abs=0.5)
        assert money(last[offset + 2]) == pytest.approx(total.loc[arm, "median"], abs=0.5)
    assert len([r for r in body if len(r) > 1]) == len(summary) // 2


def test_unit_costs_table_shows_price_year_and_inflation(study, html):
    analysis = study["analysis"]
    table = tables(html)["unit-costs"]
    assert "2013/14" in table["caption"] and "demo_price_index.csv" in table["caption"]
    assert "Unit cost at 2013/14 prices" in table["head"][0]
    rows = table["body"]
    assert len(rows) == len(analysis.unit_costs)
    for row, (_, rec) in zip(rows, analysis.unit_costs.iterrows(), strict=True):
        assert rec["service"] in row[0]
        assert row[2] == fmt_money(rec["cost"], 2)
        assert row[3] == rec["price_year"]
        assert float(row[4]) == pytest.approx(rec["inflation_factor"], abs=5e-5)
        assert money(row[5]) == pytest.approx(rec["unit_cost"], abs=0.005)
        assert row[6] == rec["source"]
    gp = analysis.unit_costs.set_index("service").loc["gp_surgery"]
    assert gp["price_year"] == "2013" and gp["inflation_factor"] == pytest.approx(101.5 / 100)


def test_implementation_table(study, html):
    impl = study["analysis"].implementation
    table = tables(html)["implementation-costs"]
    assert "(comparator)" in table["caption"]
    assert table["head"][0] == ["Team", "Training", "Total", "Spread over", "Caseload (n)", "Per participant"]
    for row, (_, rec) in zip(table["body"], impl.iterrows(), strict=True):
        assert row[0] == rec["team"]
        assert money(row[2]) == rec["total"]
        assert row[4] == fmt_count(rec["caseload"])
        assert money(row[5]) == pytest.approx(rec["per_participant"], abs=0.005)
    assert table["body"][0][3] == "team caseload (plan)"
    assert table["body"][1][3] == "study participants of the team"


def test_excluded_services_are_listed(study):
    analysis = dataclasses.replace(study["analysis"], excluded_services=["home_help", "day_centre"])
    text = visible_text(section_html(make_html(study, analysis), "costs_use"))
    assert "Left out: no unit cost" in text and "home_help, day_centre" in text
    assert "Left out: no unit cost" not in visible_text(section_html(make_html(study), "costs_use"))


# ----------------------------------------------------------------------------------------------------------
# privacy and suppression
# ----------------------------------------------------------------------------------------------------------


def test_small_counts_are_suppressed(study, html, html_k10):
    use = study["analysis"].service_use
    rare = use[(use["users"] > 0) & (use["users"] < 10)]
    assert len(rare)  # the synthetic data have a service with few users in control
    rec = rare.iloc[0]
    pct = f"{100 * rec['users'] / rec['n']:.1f}%"

    def cell(page):
        body = tables(page)["costs-use"]["body"]
        period = None
        for row in body:
            if len(row) == 1:
                period = "baseline" if row[0].startswith("Baseline") else "follow_up"
            elif period == rec["timepoint"] and rec["service"] in row[0]:
                return row[3 if rec["arm"] == "control" else 7]
        raise AssertionError("row not found")

    assert cell(html) == f"{rec['users']} ({pct})"
    assert cell(html_k10) == "<10"
    assert f"({pct})" not in visible_text(section_html(html_k10, "costs_use"))
    assert 'class="num suppressed">&lt;10</td>' in section_html(html_k10, "costs_use")
    # the larger of the context's k and the call's k is used
    assert cell(make_html(study, context_k=10, k=0)) == "<10"


def test_small_groups_hide_statistics(study):
    """With k above a group's n, its n is '<k' and its means are not shown."""
    html = make_html(study, k=45)
    body = tables(html)["costs-summary"]["body"]
    last = body[-1]  # total cost over follow-up: n = 43 and 42
    assert last[1:] == ["<45", "—", "—", "<45", "—", "—"]
    results = tables(html)["cost-results"]["body"]
    assert any(r[-2:] == ["<45 (4)", "<45 (4)"] for r in results if len(r) > 1)


def test_no_participant_identifier_in_the_html(study, html, html_k10):
    ids = set(study["data"]["participant_id"])
    for page in (html, html_k10):
        costs = "".join(section_html(page, s) for s in COST_SECTIONS)
        assert ID_PREFIX not in costs
        assert not any(i in page for i in ids)


def test_identifiers_in_free_text_are_redacted(study):
    some = study["data"]["participant_id"].iloc[5]
    analysis = dataclasses.replace(study["analysis"], notes=[f"participant {some} had an odd record"],
                                   methods=study["analysis"].methods + f" (see {some})")
    html = make_html(study, analysis)
    assert some not in html
    assert "[participant id] had an odd record" in visible_text(section_html(html, "costs_results"))
    assert "(see [participant id])" in visible_text(section_html(html, "costs_methods"))


def test_methods_text_is_the_analysis_paragraph(study, html):
    text = visible_text(section_html(html, "costs_methods"))
    assert study["analysis"].methods in text
    assert "Costs methods text to paste into a paper".upper() in text.upper()


def test_summary_tile(study):
    context = make_context(study)
    tile = context["summary"][-1]
    results = study["analysis"].results
    rec = results[(results["analysis"] == "complete_case")
                  & results["quantity"].str.startswith("cost difference, adjusted")].iloc[0]
    assert tile["label"] == f"Cost difference: implementation {MINUS} control"
    assert tile["value"] == fmt_money(rec["estimate"])
    assert fmt_money_ci(rec["conf_low"], rec["conf_high"]) in tile["detail"]
    assert f"comparator {MINUS} reference" in tile["detail"]
    inb = results[(results["analysis"] == "complete_case")
                  & (results["quantity"] == "incremental net benefit at £20,000 per QALY")].iloc[0]
    assert f"£20,000/QALY {fmt_money(inb['estimate'])}" in tile["detail"]


def test_same_input_gives_identical_bytes(study, html):
    again = make_html(study)
    assert again.encode("utf-8") == html.encode("utf-8")
