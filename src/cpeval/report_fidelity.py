"""Fidelity in the reports: sections of the study report, and a standalone per-team fidelity report.

Same three layers as ``cpeval.report``:

1. Table and figure functions (``team_domain_table``, ``team_profiles``, ``team_returns``,
   ``profile_figure_svg``) take a ``cpeval.fidelity.FidelityAnalysis`` and return tidy DataFrames or an SVG
   string; every number shown comes from them or straight from the analysis tables (``teams``, ``agreement``,
   ``reliability``, ``arm_comparison``, ``outcome_models``).
2. ``add_fidelity_sections(context, analysis)`` formats them into plain dicts and adds the fidelity sections to a
   study-report context (before its provenance section); ``render_fidelity_report(analysis, study=...)`` builds
   the standalone report a trust R&D office can hand to teams: a study-level summary page, then one printed page
   per team (its domain profile against the other teams of its arm, its band, the domains to act on, the
   completeness of its returns and how its service users' view compares with its workers' view).
3. The templates (``sections/fidelity_*.html.j2``, ``fidelity_report.html.j2``) place the formatted text; they
   never compute.

Number formats: CPIFS means, SDs, differences, Bland-Altman bias and limits, model estimates 2 decimals;
ICC and Cronbach's alpha 2; p values 3 decimals or "<0.001"; df 1 decimal; completeness as a whole percentage.

Domains to act on (the rule, printed in the report): a domain is listed for a team when its workers' or its
service users' mean is below the mid-point of the 1-9 scale (:data:`MIDPOINT`), or at least
:data:`GAP_BELOW_OTHERS` points below the median of the other teams of the same arm. Listed domains are ordered
by the lowest of the two means. This rule and any bands are reading aids of the report, not published cut-offs.

Privacy: teams are shown by their label only; no worker, rater or participant identifier is put into a context.
Free text from the analysis (notes) is scanned for the rater and worker identifiers of the analysis (as
``cpeval.report._Redactor`` does). Counts from 1 to k-1 are shown as "<k", and the statistics of a group with
fewer than k ratings are not shown (in tables or figures). Team counts are not suppressed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from markupsafe import Markup

from cpeval.fidelity import DOMAIN_LABELS, DOMAINS, ICC_TYPE, FidelityAnalysis
from cpeval.report import (
    DASH,
    figure_rc,
    figure_svg,
    _environment,
    _generated_text,
    _is_missing_number,
    _mpl_text,
    _natural_key,
    _Redactor,
    _suppressed,
    add_sections_before_provenance,
    check_suppress_below,
    sections_k,
    fmt_count,
    fmt_number,
    pretty,
)
from cpeval.report_compare import _fmt_df, _score_info, fmt_ci, fmt_p, split_notes

__all__ = [
    "add_fidelity_sections",
    "render_fidelity_report",
    "team_domain_table",
    "team_profiles",
    "team_returns",
    "profile_figure_svg",
    "MIDPOINT",
    "GAP_BELOW_OTHERS",
]

MIDPOINT = 5.0  # mid-point of the 1-9 CPIFS response scale
GAP_BELOW_OTHERS = 0.5  # points below the median of the other teams of the same arm
DOMAINS_ALL = (*DOMAINS, "total")
VERSION_NAMES = {"W": "Workers (CPIFS-W)", "SU": "Service users (CPIFS-SU)"}
VERSION_SHORT = {"W": "Workers", "SU": "Service users"}
SHORT_DOMAIN = {"com": "Community", "ass": "Assessment", "pla": "Planning", "par": "Partnership",
                "rel": "Relationships", "total": "Total"}
ACTION_RULE = (f"A domain is listed when the team's workers' or service users' mean is below {MIDPOINT:g}, the "
               f"mid-point of the 1\u20139 scale, or at least {GAP_BELOW_OTHERS:g} points below the median of the "
               "other teams of the same arm; listed domains are ordered from the lowest mean. This is a reading "
               "aid of this report, not a published standard.")
OBSERVATIONAL_CAUTION = (
    "These are observational associations within the implementation arm, not effects of fidelity: fidelity was "
    "not randomised, so teams, workers or service users with higher fidelity may differ in other ways that also "
    "affect the outcome. Do not read an estimate as what raising fidelity would achieve.")
AGREEMENT_NOTE = (
    "Each worker's CPIFS-W score is paired with the mean CPIFS-SU score of that worker's service users. ICC(A,1): "
    "two-way random effects, absolute agreement, single rater. Bland\u2013Altman bias = worker minus service "
    "users (positive: workers rate their practice higher than their service users do); 95% limits of agreement = "
    "bias \u00b1 1.96 SD of the differences.")
SU_MINUS_W_NOTE = ("Difference = service users' mean minus workers' mean: negative when service users see less of "
                   "the model in practice than the workers report.")

# team's own markers; the other teams of the arm are drawn in grey
_W_STYLE = ("#1f4e79", "o")
_SU_STYLE = ("#c55a11", "s")


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _team_label(team: Any) -> str:
    text = str(team)
    return f"Team {text}" if text.isdigit() else text


def _team_order(analysis: FidelityAnalysis) -> list[tuple[str, str]]:
    """(team, arm) pairs: the treatment arm first, then the control arm, then others; teams in natural order."""
    d = analysis.plan.design
    teams = analysis.teams[["team", "arm"]].drop_duplicates()
    arm_rank = {a: i for i, a in enumerate(d.arms)}
    pairs = [(str(t), str(a)) for t, a in zip(teams["team"], teams["arm"])]
    return sorted(dict.fromkeys(pairs), key=lambda p: (arm_rank.get(p[1], len(arm_rank)), p[1], _natural_key(p[0])))


def _ids(analysis: FidelityAnalysis) -> list[Any]:
    s = analysis.scores
    return [*s["rater_id"].dropna().tolist(), *s["worker_id"].dropna().tolist()]


def _shown(n: Any, k: int) -> bool:
    """A group's statistics are shown when it has values and is not a suppressed small group."""
    return not _is_missing_number(n) and int(n) > 0 and not _suppressed(n, k)


# ----------------------------------------------------------------------------------------------------------
# tables (tidy DataFrames, usable from a notebook)
# ----------------------------------------------------------------------------------------------------------


def team_domain_table(analysis: FidelityAnalysis) -> pd.DataFrame:
    """The team table of the analysis (``TEAM_COLUMNS``) in report order: arm, team, version (W, SU), domain."""
    order = {p: i for i, p in enumerate(_team_order(analysis))}
    t = analysis.teams.copy()
    t["_team"] = [order.get((str(a), str(b)), len(order)) for a, b in zip(t["team"], t["arm"])]
    t["_version"] = t["version"].map({"W": 0, "SU": 1}).fillna(2)
    t["_domain"] = t["domain"].map({d: i for i, d in enumerate(DOMAINS_ALL)}).fillna(len(DOMAINS_ALL))
    return t.sort_values(["_team", "_version", "_domain"], kind="stable").drop(
        columns=["_team", "_version", "_domain"]).reset_index(drop=True)


def team_profiles(analysis: FidelityAnalysis, *, suppress_below: int = 0) -> pd.DataFrame:
    """One row per team x domain (five domains and the total): each version's team mean and n, the median,
    minimum and maximum of the means of the other teams of the same arm (``others_*_w`` / ``_su``; teams with
    fewer than ``suppress_below`` ratings left out), the difference service users minus workers, and whether the
    domain is listed for action (``below_midpoint``, ``below_others``, ``action``; the rule is :data:`ACTION_RULE`).
    Means of groups with fewer than ``suppress_below`` ratings are NaN here."""
    k = check_suppress_below(suppress_below)
    t = analysis.teams
    rows = []
    for team, arm in _team_order(analysis):
        for domain in DOMAINS_ALL:
            rec: dict[str, Any] = {"team": team, "arm": arm, "domain": domain}
            for v, suffix in (("W", "w"), ("SU", "su")):
                cell = t[(t["team"].astype(str) == team) & (t["arm"].astype(str) == arm) & (t["version"] == v)
                         & (t["domain"] == domain)]
                n = int(cell["n"].iloc[0]) if not cell.empty and not _is_missing_number(cell["n"].iloc[0]) else 0
                mean = float(cell["mean"].iloc[0]) if not cell.empty and _shown(n, k) else math.nan
                rec[f"n_{suffix}"] = n
                rec[f"mean_{suffix}"] = mean
                others = t[(t["team"].astype(str) != team) & (t["arm"].astype(str) == arm) & (t["version"] == v)
                           & (t["domain"] == domain)]
                keep = [_shown(n_o, k) and not _is_missing_number(m) for n_o, m in zip(others["n"], others["mean"])]
                vals = others.loc[keep, "mean"].astype(float)
                rec[f"others_n_{suffix}"] = int(len(vals))
                rec[f"others_median_{suffix}"] = float(vals.median()) if len(vals) else math.nan
                rec[f"others_min_{suffix}"] = float(vals.min()) if len(vals) else math.nan
                rec[f"others_max_{suffix}"] = float(vals.max()) if len(vals) else math.nan
            rec["su_minus_w"] = rec["mean_su"] - rec["mean_w"]
            means = [m for m in (rec["mean_w"], rec["mean_su"]) if not math.isnan(m)]
            rec["lowest_mean"] = min(means) if means else math.nan
            rec["below_midpoint"] = bool(means) and min(means) < MIDPOINT
            gaps = [rec[f"mean_{s}"] - rec[f"others_median_{s}"] for s in ("w", "su")]
            gaps = [g for g in gaps if not math.isnan(g)]
            rec["gap_to_others"] = min(gaps) if gaps else math.nan
            rec["below_others"] = bool(gaps) and min(gaps) <= -GAP_BELOW_OTHERS + 1e-12
            rec["action"] = domain != "total" and (rec["below_midpoint"] or rec["below_others"])
            rows.append(rec)
    return pd.DataFrame(rows)


def team_returns(analysis: FidelityAnalysis) -> pd.DataFrame:
    """Completeness of each team's returns: one row per team x version with ``n_rated`` (raters with a row),
    ``n_total`` (raters with a total score), ``mean_completeness`` (mean share of the 17 domain items answered)
    and, for service users, ``n_unlinked`` (whose worker is not in the worker data)."""
    s = analysis.scores
    rows = []
    for team, arm in _team_order(analysis):
        for v in ("W", "SU"):
            g = s[(s["team"].astype(str) == team) & (s["arm"].astype(str) == arm) & (s["version"] == v)]
            comp = pd.to_numeric(g["completeness"], errors="coerce")
            rows.append({"team": team, "arm": arm, "version": v, "n_rated": int(len(g)),
                         "n_total": int(g["total"].notna().sum()),
                         "mean_completeness": float(comp.mean()) if comp.notna().any() else math.nan,
                         "n_unlinked": int((~g["worker_linked"].astype(bool)).sum()) if v == "SU" else 0})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------
# figure
# ----------------------------------------------------------------------------------------------------------


def profile_figure_svg(profile: pd.DataFrame, *, team: str, figure_id: str = "fig-fidelity") -> str:
    """One team's domain profile as inline SVG: for each domain (and the total) the range (bar) and median (tick)
    of the other teams of the same arm, and the team's workers' (circle) and service users' (square) means, on
    the 1-9 scale with a dashed line at the mid-point. ``profile`` is the team's rows of ``team_profiles``.
    Deterministic (Agg, fixed hash salt, no metadata, no clip paths). Returns "" when there is nothing to draw."""
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if profile.empty or profile[["mean_w", "mean_su", "others_median_w", "others_median_su"]].notna().sum().sum() == 0:
        return ""
    rc = figure_rc(figure_id, **{"axes.labelcolor": "black"})
    domains = list(profile["domain"])
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(8.4, 3.3))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        fig.subplots_adjust(left=0.075, right=0.915, bottom=0.13, top=0.84)
        try:
            ax.axhline(MIDPOINT, color="#888888", linewidth=0.9, linestyle=(0, (4, 3)), zorder=1)
            ax.text(len(domains) - 0.42, MIDPOINT, f"mid-point {MIDPOINT:g}", ha="left", va="center", fontsize=7.5,
                    color="#666666")
            for i, (_, r) in enumerate(profile.iterrows()):
                if i == len(domains) - 1 and r["domain"] == "total":
                    ax.axvline(i - 0.5, color="#cccccc", linewidth=0.8, zorder=0)
                for j, (suffix, (colour, marker)) in enumerate((("w", _W_STYLE), ("su", _SU_STYLE))):
                    x = i + (-0.14 if j == 0 else 0.14)
                    lo, hi, med = r[f"others_min_{suffix}"], r[f"others_max_{suffix}"], r[f"others_median_{suffix}"]
                    if not math.isnan(med):
                        ax.bar([x], [hi - lo if hi > lo else 0.04], bottom=[lo if hi > lo else lo - 0.02],
                               width=0.22, color="#dde2e7", edgecolor="#b8c0c8", linewidth=0.6, zorder=2)
                        ax.plot([x - 0.11, x + 0.11], [med, med], color="#5b6670", linewidth=1.6, zorder=3)
                    if not math.isnan(r[f"mean_{suffix}"]):
                        ax.plot([x], [r[f"mean_{suffix}"]], linestyle="none", marker=marker, markersize=7,
                                color=colour, markeredgecolor="white", markeredgewidth=0.8, zorder=4)
            ax.set_xticks(range(len(domains)), [_mpl_text(SHORT_DOMAIN.get(d, d)) for d in domains])
            ax.tick_params(axis="x", length=0, pad=6)
            ax.set_xlim(-0.5, len(domains) - 0.5)
            ax.set_ylim(1, 9)
            ax.set_yticks(range(1, 10))
            ax.set_ylabel("Mean score (1\u20139)")
            ax.grid(axis="y", color="#eceff2", linewidth=0.6)
            ax.set_axisbelow(True)
            handles = [
                Line2D([], [], linestyle="none", marker=_W_STYLE[1], color=_W_STYLE[0], markersize=7,
                       markeredgecolor="white", label=_mpl_text(f"{team}: workers")),
                Line2D([], [], linestyle="none", marker=_SU_STYLE[1], color=_SU_STYLE[0], markersize=7,
                       markeredgecolor="white", label="service users"),
                Patch(facecolor="#dde2e7", edgecolor="#b8c0c8", label="other teams of the arm: range"),
                Line2D([], [], color="#5b6670", linewidth=1.6, label="median"),
            ]
            fig.legend(handles=handles, loc="upper center", ncol=4, frameon=False, bbox_to_anchor=(0.5, 1.0),
                       fontsize=8, handletextpad=0.4, columnspacing=1.4)
            svg = figure_svg(fig, figure_id, f"Fidelity domain profile of {team}: workers' and service users' "
                                             "mean per domain against the range and median of the other teams of "
                                             "the same arm", unclip=True)
        finally:
            fig.clear()
    return svg


# ----------------------------------------------------------------------------------------------------------
# formatted pieces shared by both reports
# ----------------------------------------------------------------------------------------------------------


def _bands(analysis: FidelityAnalysis) -> dict:
    note = str(getattr(analysis.plan.fidelity, "bands_note", "") or "")
    return {"has_bands": bool(analysis.bands_text), "text": analysis.bands_text, "note": note}


def _below(value: Any, n: Any, k: int) -> bool:
    return _shown(n, k) and not _is_missing_number(value) and float(value) < MIDPOINT


def _team_rows(analysis: FidelityAnalysis, k: int) -> list[dict]:
    """Rows team x version with a formatted cell per domain (mean, SD, n, below-mid-point flag) and the band."""
    t = team_domain_table(analysis)
    out = []
    for team, arm in _team_order(analysis):
        versions = []
        for v in ("W", "SU"):
            g = t[(t["team"].astype(str) == team) & (t["arm"].astype(str) == arm) & (t["version"] == v)]
            cells = []
            band = DASH
            for domain in DOMAINS_ALL:
                r = g[g["domain"] == domain]
                if r.empty:
                    cells.append({"domain": domain, "mean": DASH, "sd": DASH, "n": DASH, "below": False})
                    continue
                r = r.iloc[0]
                shown = _shown(r["n"], k)
                cells.append({"domain": domain, "mean": fmt_number(r["mean"], 2) if shown else DASH,
                              "sd": fmt_number(r["sd"], 2) if shown else DASH, "n": fmt_count(r["n"], k),
                              "below": _below(r["mean"], r["n"], k)})
                if domain == "total" and shown and not _is_missing_number(r["band"]) and str(r["band"]):
                    band = str(r["band"])
            versions.append({"version": v, "name": VERSION_SHORT[v], "cells": cells, "band": band})
        out.append({"team": _team_label(team), "arm": pretty(arm), "versions": versions})
    return out


def _domains() -> list[dict]:
    return [{"id": d, "label": DOMAIN_LABELS[d], "short": SHORT_DOMAIN[d]} for d in DOMAINS_ALL]


# ----------------------------------------------------------------------------------------------------------
# study-report sections
# ----------------------------------------------------------------------------------------------------------


def _agreement_section(analysis: FidelityAnalysis, k: int, clean) -> dict:
    rows = []
    for _, r in analysis.agreement.iterrows():
        shown = _shown(r["n_pairs"], k)
        computed = shown and not _is_missing_number(r["icc"])
        note = clean(r["note"]) if not _is_missing_number(r["note"]) else ""
        if not shown and not note:
            note = f"fewer than {k} worker / service-user pairs: not shown" if k > 1 else "no pairs"
        rows.append({
            "domain": str(r["domain"]), "label": _cap(DOMAIN_LABELS.get(str(r["domain"]), str(r["domain"]))),
            "n_pairs": fmt_count(r["n_pairs"], k), "n_service_users": fmt_count(r["n_service_users"], k),
            "icc": fmt_number(r["icc"], 2) if computed else DASH,
            "icc_ci": fmt_ci(r["icc_conf_low"], r["icc_conf_high"], 2) if computed else DASH,
            "mean_worker": fmt_number(r["mean_worker"], 2) if shown else DASH,
            "mean_service_users": fmt_number(r["mean_service_users"], 2) if shown else DASH,
            "bias": fmt_number(r["bias"], 2) if shown else DASH,
            "sd_difference": fmt_number(r["sd_difference"], 2) if shown else DASH,
            "loa": fmt_ci(r["loa_low"], r["loa_high"], 2) if shown else DASH,
            "note": note, "is_total": str(r["domain"]) == "total",
        })
    return {"rows": rows, "note": AGREEMENT_NOTE}


def _reliability_section(analysis: FidelityAnalysis, k: int, clean) -> dict:
    groups = []
    for v in ("W", "SU"):
        g = analysis.reliability[analysis.reliability["version"] == v]
        rows = []
        for _, r in g.iterrows():
            shown = _shown(r["n"], k)
            computed = shown and not _is_missing_number(r["alpha"])
            note = clean(r["note"]) if not _is_missing_number(r["note"]) else ""
            if not shown and not note:
                note = f"fewer than {k} complete responses: not shown" if k > 1 else "no complete responses"
            domain = str(r["domain"])
            rows.append({"domain": domain, "label": _cap(DOMAIN_LABELS.get(domain, domain)),
                         "n_items": fmt_count(r["n_items"]), "n": fmt_count(r["n"], k),
                         "alpha": fmt_number(r["alpha"], 2) if computed else DASH,
                         "ci": fmt_ci(r["conf_low"], r["conf_high"], 2) if computed else DASH,
                         "note": note, "computed": computed})
        if rows:
            groups.append({"version": v, "name": VERSION_NAMES[v], "rows": rows})
    return {"groups": groups}


def _model_rows(frame: pd.DataFrame, k: int, clean, labels: Mapping[str, str], row_label: str = "outcome"
                ) -> list[dict]:
    rows = []
    for _, r in frame.iterrows():
        estimated = not _is_missing_number(r["estimate"])
        n = DASH
        if not _is_missing_number(r["n_participants"]):
            teams = "" if _is_missing_number(r["n_clusters"]) else f" ({fmt_count(r['n_clusters'])})"
            n = f"{fmt_count(r['n_participants'], k)}{teams}"
        outcome = str(r["outcome"])
        rows.append({
            "outcome": outcome, "label": labels.get(outcome, outcome), "term": str(r["term"]),
            "row_label": labels.get(outcome, outcome) if row_label == "outcome" else str(r["term"]),
            "model": str(r["model"]), "estimated": estimated,
            "estimate": fmt_number(r["estimate"], 2), "std_error": fmt_number(r["std_error"], 2),
            "ci": fmt_ci(r["conf_low"], r["conf_high"], 2), "df": _fmt_df(r["df"]),
            "df_method": str(r["df_method"]) if not _is_missing_number(r["df_method"]) and r["df_method"] else DASH,
            "p_value": fmt_p(r["p_value"]), "n": n,
            "notes": split_notes(clean(r["notes"])) if not _is_missing_number(r["notes"]) else [],
        })
    return rows


def add_fidelity_sections(context: dict, analysis: FidelityAnalysis, *, suppress_below: int = 0) -> None:
    """Add the fidelity sections to a study report context (in place).

    Parameters
    ----------
    context : a context from ``cpeval.report.build_study_context`` (arm-comparison sections may already be in it).
    analysis : a ``cpeval.fidelity.FidelityAnalysis`` (``analyse_fidelity``).
    suppress_below : k; counts from 1 to k-1 are shown as "<k" and the statistics of such groups are not shown.
        The larger of this and the context's own ``meta["suppress_below"]`` is used.

    Adds, before the provenance section (so after any arm-comparison sections): ``fidelity_teams`` (team x domain
    means, SD, n and band, with the band thresholds and the plan's note on them), ``fidelity_agreement`` (workers
    vs service users: ICC(A,1), Bland-Altman), ``fidelity_reliability`` (alpha per domain), ``fidelity_arms``
    (only when ``analysis.arm_comparison`` is not None), ``fidelity_outcomes`` (fidelity-outcome models, with the
    observational caution) and ``fidelity_notes``.
    """
    k = sections_k(context, suppress_below)
    redact = _Redactor(_ids(analysis))
    clean = lambda text: redact(text)  # noqa: E731
    labels, _ = _score_info(context)
    d = analysis.plan.design
    common = {"suppress_below": k, "bands": _bands(analysis), "midpoint": f"{MIDPOINT:g}"}

    teams = {**common, "domains": _domains(), "teams": _team_rows(analysis, k)}
    agreement = {**common, **_agreement_section(analysis, k, clean)}
    reliability = {**common, **_reliability_section(analysis, k, clean)}
    sections = [("fidelity_teams", "Fidelity by team and domain (CPIFS)", teams),
                ("fidelity_agreement", "Fidelity: workers\u2019 and service users\u2019 ratings compared", agreement),
                ("fidelity_reliability", "Fidelity scales: reliability (Cronbach\u2019s alpha)", reliability)]
    if analysis.arm_comparison is not None:
        arm_labels = {"cpifs_w_total": "CPIFS-W total (workers)", "cpifs_su_total": "CPIFS-SU total (service users)"}
        arms = {**common, "rows": _model_rows(analysis.arm_comparison, k, clean, arm_labels),
                "treatment": pretty(d.treatment), "control": pretty(d.control)}
        sections.append(("fidelity_arms", f"Fidelity: {pretty(d.treatment).lower()} versus "
                                          f"{pretty(d.control).lower()} teams", arms))
    arm_value = getattr(analysis.plan.fidelity, "arm", None) or d.treatment
    outcome_rows = _model_rows(analysis.outcome_models, k, clean, labels, row_label="term")
    groups = []
    for row in outcome_rows:
        if not groups or groups[-1]["outcome"] != row["outcome"]:
            groups.append({"outcome": row["outcome"], "label": row["label"], "rows": []})
        groups[-1]["rows"].append(row)
    outcomes = {**common, "groups": groups, "caution": OBSERVATIONAL_CAUTION, "arm": pretty(arm_value)}
    sections.append(("fidelity_outcomes", "Fidelity and outcomes (observational)", outcomes))
    if getattr(analysis, "consensus", None) is not None:
        sections.append(("fidelity_consensus", "Fidelity: researchers’ ratings of practice examples",
                         {**common, **consensus_section(analysis.consensus, k)}))
    qa_n = int(len(analysis.unlinked)) if analysis.qa is not None else 0
    notes = {**common, "notes": [clean(n) for n in analysis.notes or []],
             "n_unlinked": fmt_count(qa_n, k), "has_unlinked": qa_n > 0}
    sections.append(("fidelity_notes", "Fidelity: notes", notes))

    add_sections_before_provenance(context, sections)


# ----------------------------------------------------------------------------------------------------------
# standalone fidelity report
# ----------------------------------------------------------------------------------------------------------


def _pct(value: Any) -> str:
    return DASH if _is_missing_number(value) else f"{100.0 * float(value):.0f}%"


def _signed(value: Any) -> str:
    if _is_missing_number(value):
        return DASH
    text = fmt_number(value, 2)
    return text if text.startswith("-") or float(text) == 0 else f"+{text}"


def _team_page(i: int, team: str, arm: str, profile: pd.DataFrame, returns: pd.DataFrame, rows: dict,
               k: int) -> dict:
    label = _team_label(team)
    domains = profile[profile["domain"] != "total"]
    action = domains[domains["action"]].sort_values(["lowest_mean", "gap_to_others"], kind="stable")
    actions = []
    for _, r in action.iterrows():
        reasons = []
        for suffix, who in (("w", "workers"), ("su", "service users")):
            m, med = r[f"mean_{suffix}"], r[f"others_median_{suffix}"]
            if math.isnan(m):
                continue
            why = []
            if m < MIDPOINT:
                why.append(f"below the mid-point {MIDPOINT:g}")
            if not math.isnan(med) and m - med <= -GAP_BELOW_OTHERS + 1e-12:
                why.append(f"{fmt_number(med - m, 2)} below the other teams\u2019 median ({fmt_number(med, 2)})")
            if why:
                reasons.append(f"{who} {fmt_number(m, 2)}: {' and '.join(why)}")
        actions.append({"domain": r["domain"], "label": _cap(DOMAIN_LABELS[r["domain"]]), "reasons": reasons})
    shown = domains.dropna(subset=["lowest_mean"])
    lowest = (DOMAIN_LABELS[shown.sort_values("lowest_mean", kind="stable").iloc[0]["domain"]]
              if not shown.empty else None)
    comparison = []
    for _, r in profile.iterrows():
        comparison.append({"domain": r["domain"], "label": _cap(DOMAIN_LABELS[r["domain"]]),
                           "short": SHORT_DOMAIN[r["domain"]],
                           "w": fmt_number(r["mean_w"], 2), "su": fmt_number(r["mean_su"], 2),
                           "n_w": fmt_count(r["n_w"], k), "n_su": fmt_count(r["n_su"], k),
                           "diff": _signed(r["su_minus_w"]),
                           "others": f"{fmt_number(r['others_median_w'], 2)} / "
                                     f"{fmt_number(r['others_median_su'], 2)}",
                           "is_total": r["domain"] == "total",
                           "below_w": not math.isnan(r["mean_w"]) and r["mean_w"] < MIDPOINT,
                           "below_su": not math.isnan(r["mean_su"]) and r["mean_su"] < MIDPOINT,
                           "action": bool(r["action"])})
    ret = []
    for _, r in returns.iterrows():
        ret.append({"version": r["version"], "name": VERSION_SHORT[r["version"]],
                    "n_rated": fmt_count(r["n_rated"], k), "n_total": fmt_count(r["n_total"], k),
                    "completeness": _pct(r["mean_completeness"]) if _shown(r["n_rated"], k) else DASH,
                    "n_unlinked": fmt_count(r["n_unlinked"], k) if r["version"] == "SU" else DASH})
    bands = [{"name": v["name"], "band": v["band"],
              "total": next(c["mean"] for c in v["cells"] if c["domain"] == "total")} for v in rows["versions"]]
    diffs = profile[profile["domain"] != "total"]["su_minus_w"].dropna()
    if diffs.empty:
        view = "The two views cannot be compared for this team (a group too small to show or no ratings)."
    else:
        lower = int((diffs <= -0.5).sum())
        higher = int((diffs >= 0.5).sum())
        view = (f"Service users rate {lower} of the 5 domains at least 0.5 points lower than the workers do, "
                f"and {higher} at least 0.5 points higher.")
    return {
        "anchor": f"team-{i + 1}", "team": label, "arm": pretty(arm), "bands": bands,
        "figure_svg": Markup(profile_figure_svg(profile, team=label, figure_id=f"fig-fid-{i + 1}")),
        "actions": actions, "lowest": lowest, "comparison": comparison, "returns": ret, "view": view,
        "n_others": int(max(profile["others_n_w"].max(), profile["others_n_su"].max())),
    }


def render_fidelity_report(analysis: FidelityAnalysis, *, study: str, generated: str | None = None,
                           suppress_below: int = 5) -> str:
    """A standalone, self-contained HTML fidelity report to hand to teams (inline CSS and SVG, no network).

    A study-level summary page (team x domain means, how to read them, the band assumption), then one printed
    page per team: its domain profile against the other teams of its arm (figure), its band, the domains to act
    on (rule: :data:`ACTION_RULE`), the completeness of its returns, and its service users' view against its
    workers' view per domain. Teams are shown by label only. ``suppress_below`` (default 5, for circulation):
    counts from 1 to k-1 are shown as "<k" and the statistics of such groups are not shown. The same
    ``generated`` text gives the same bytes.
    """
    from cpeval import __version__

    k = check_suppress_below(suppress_below)
    profiles = team_profiles(analysis, suppress_below=k)
    returns = team_returns(analysis)
    team_rows = _team_rows(analysis, k)
    pages = []
    for i, ((team, arm), rows) in enumerate(zip(_team_order(analysis), team_rows)):
        prof = profiles[(profiles["team"] == team) & (profiles["arm"] == arm)]
        ret = returns[(returns["team"] == team) & (returns["arm"] == arm)]
        pages.append(_team_page(i, team, arm, prof, ret, rows, k))
    redact = _Redactor(_ids(analysis))
    d = analysis.plan.design
    context = {
        "meta": {"title": f"{study}: fidelity report", "study": study, "version": __version__,
                 "generated": _generated_text(generated), "suppress_below": k},
        "bands": _bands(analysis), "domains": _domains(), "teams": team_rows, "pages": pages,
        "midpoint": f"{MIDPOINT:g}", "gap": f"{GAP_BELOW_OTHERS:g}", "action_rule": ACTION_RULE,
        "su_minus_w_note": SU_MINUS_W_NOTE, "treatment": pretty(d.treatment),
        "n_teams": len(pages),
        "notes": [redact(n) for n in analysis.notes or [] if not str(n).startswith("bands (")],
    }
    return _environment().get_template("fidelity_report.html.j2").render(**context)


def consensus_section(consensus, k: int) -> dict:
    """Inter-rater agreement per domain and the unrated examples (counts only: no worker is named)."""
    rows = []
    for r in consensus.agreement.itertuples():
        computed = not _is_missing_number(r.icc)
        rows.append({
            "domain": DOMAIN_LABELS.get(r.domain, r.domain),
            "n_examples": fmt_count(r.n_examples, k), "n_raters": fmt_count(r.n_raters, 0),
            "icc": fmt_number(r.icc, 2) if computed else "\u2014",
            "ci": (f"{fmt_number(r.icc_conf_low, 2)} to {fmt_number(r.icc_conf_high, 2)}" if computed
                   else "\u2014"),
            "note": r.note,
        })
    scores = consensus.consensus
    by_domain = consensus.unrated.groupby("domain").size() if len(consensus.unrated) else pd.Series(dtype=int)
    return {"rows": rows, "icc_type": ICC_TYPE,
            "n_rated": fmt_count(len(scores), k), "mean_consensus": fmt_number(scores["consensus"].mean(), 2)
            if len(scores) else "\u2014",
            "n_unrated": fmt_count(len(consensus.unrated), k),
            "unrated": [{"domain": DOMAIN_LABELS.get(dom, dom), "n": fmt_count(by_domain.get(dom, 0), k)}
                        for dom in DOMAIN_LABELS]}
