"""Costs sections of the study report: service use and costs by arm, cost-effectiveness (results, CE plane,
acceptability curve, net benefit) and a methods paragraph, from a ``cpeval.costs.CostAnalysis``.

Same three layers as ``cpeval.report`` and ``cpeval.report_compare``:

1. Figure functions (``ce_plane_svg``, ``ceac_svg``) take the ``CostAnalysis``'s own tables (``replicates``,
   ``quadrants``, ``ceac``, ``results``) and return deterministic inline SVG; every number shown comes straight from
   the ``CostAnalysis`` (``service_use``, ``cost_summary``, ``unit_costs``, ``implementation``, ``results``,
   ``ceac``, ``quadrants``, ``cost_per_effect``, ``imputed_counts``, ``notes``, ``methods``).
2. ``add_cost_sections(context, analysis)`` formats them into plain dicts and adds three sections to a context from
   ``cpeval.report.build_study_context`` (before its provenance section): ``costs_use``, ``costs_results`` and
   ``costs_methods``, plus an "At a glance" tile with the adjusted cost difference and the net benefit.
3. The partials ``sections/costs_*.html.j2`` place the formatted text; they never compute.

Arms: control is the **reference** and implementation the **comparator** (the plan's ``arm.control`` and
``arm.treatment``); every difference is comparator minus reference, and every table and figure says so.

Number formats: money in pounds with thousands separators and no decimals (£1,234; -£170), except unit costs and
per-participant implementation costs (2 decimals); QALYs 3 decimals; points of the primary outcome 2 decimals;
mean service use 2 decimals; probabilities 2 decimals; quadrant shares as percentages with 1 decimal.

Privacy: the tables of a ``CostAnalysis`` that the report reads hold no participant identifiers (only counts, team
names and statistics; ``analysis.qa`` is only counted); free text (notes, statements, the methods paragraph) is
passed through the report's identifier scan when ``participant_ids`` is given. Counts of participants from 1 to k-1
are shown as "<k" (k = the larger of ``suppress_below`` and the context's own setting), percentages built on them
are hidden, and means, SDs and medians of a group with fewer than k values are not shown. Team counts are not
suppressed (as in the study structure section).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from cpeval.report import (
    DASH,
    _is_missing_number,
    _mpl_text,
    _Redactor,
    _suppressed,
    add_sections_before_provenance,
    sections_k,
    figure_rc,
    figure_svg,
    fmt_count,
    fmt_number,
    fmt_pct,
    pretty,
)
from cpeval.report_compare import split_notes

__all__ = [
    "add_cost_sections",
    "ce_plane_svg",
    "ceac_svg",
    "fmt_money",
    "fmt_money_ci",
    "arm_labels",
    "QUADRANT_WORDS",
]

ANALYSIS_NAMES = {"complete_case": "Complete cases",
                  "multiple_imputation": "Multiple imputation (sensitivity analysis)"}
ANALYSIS_ORDER = ["complete_case", "multiple_imputation"]
# what each quadrant of the cost-effectiveness plane means (east: more effective; north: more costly)
QUADRANT_WORDS = {
    "NE": "more costly, more effective",
    "NW": "more costly, less effective",
    "SE": "less costly, more effective",
    "SW": "less costly, less effective",
}
QUADRANT_NAMES = {"NE": "North-east", "NW": "North-west", "SE": "South-east", "SW": "South-west"}
COST_LABELS = {
    "service_cost": "All services",
    "implementation_cost": "Implementation (per participant)",
    "total_cost": "Total cost over follow-up (services + implementation)",
}
IMPUTED_LABELS = {
    "total_cost": "total cost",
    "baseline_cost": "baseline service cost",
    "u0": "utility at baseline",
    "u1": "utility at follow-up",
}
UNIT_PLURALS = {"contact": "contacts", "hour": "hours", "minute": "minutes", "day": "days"}
IMPLEMENTATION_FIXED = ("team", "arm", "total", "caseload", "per_participant", "spread_over")
INTERVAL_SHORT = {
    "two-stage cluster bootstrap, percentile": "Cluster bootstrap, percentile",
    "Rubin's rules over imputations (bootstrap within-imputation variance), t interval": "Rubin\u2019s rules, t",
}
CE_PLANE_NOTE = (
    "Each point is one bootstrap replicate of the incremental cost and incremental QALYs (complete cases, adjusted "
    "for baseline cost and utility). A point below a threshold line has a positive net benefit at that threshold."
)
CEAC_NOTE = (
    "For each willingness-to-pay threshold, the share of bootstrap replicates in which the comparator has a "
    "positive incremental net benefit (threshold \u00d7 incremental QALYs \u2212 incremental cost)."
)

# greyscale-distinguishable styles: threshold lines differ by dash pattern
_LINE_STYLES = [(0, (6, 3)), (0, (1.5, 2)), (0, (6, 2, 1.5, 2)), (0, (10, 3))]
_REPLICATE_COLOUR = "#5b7fa6"
_ESTIMATE_COLOUR = "#111111"
_THRESHOLD_COLOUR = "#7a4300"


# ----------------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------------


def fmt_money(value: Any, decimals: int = 0) -> str:
    """Pounds with thousands separators: 1234.5 -> '£1,235', -170.2 -> '-£170'; missing -> '—'."""
    if _is_missing_number(value):
        return DASH
    text = f"{abs(float(value)):,.{decimals}f}"
    negative = float(value) < 0 and any(ch not in "0.," for ch in text)  # no "-£0"
    return f"{'-' if negative else ''}\u00a3{text}"


def fmt_money_ci(low: Any, high: Any, decimals: int = 0) -> str:
    """'£a to £b' (the word avoids a dash being read as a minus sign); missing -> '—'."""
    if _is_missing_number(low) or _is_missing_number(high):
        return DASH
    return f"{fmt_money(low, decimals)} to {fmt_money(high, decimals)}"


def _fmt_threshold(value: Any) -> str:
    return f"{fmt_money(value)}/QALY"


def _fmt_share(value: Any) -> str:
    return DASH if _is_missing_number(value) else f"{100 * float(value):.1f}%"


def arm_labels(plan: Any) -> dict[str, str]:
    """Display labels of the two arms with their roles: {'reference': 'Control (reference)', 'comparator': ...}."""
    d = plan.design
    return {"reference": f"{pretty(d.control)} (reference)", "comparator": f"{pretty(d.treatment)} (comparator)",
            "reference_lower": f"{pretty(d.control).lower()} (reference)",
            "comparator_lower": f"{pretty(d.treatment).lower()} (comparator)",
            "difference": f"{pretty(d.treatment).lower()} (comparator) \u2212 {pretty(d.control).lower()} (reference)",
            "short": f"{pretty(d.treatment).lower()} \u2212 {pretty(d.control).lower()}",
            "roles": "comparator \u2212 reference"}


def _unit_kind(unit: Any, quantity: str) -> str:
    """'money', 'qaly' or 'points' from the record's unit (else from its wording)."""
    text = "" if _is_missing_number(unit) else str(unit).strip()
    if text.startswith("\u00a3"):
        return "money"
    if text.lower().startswith("qaly"):
        return "qaly"
    if text:
        return "points"
    q = quantity.lower()
    if "net benefit" in q or q.startswith(("cost", "incremental cost", "icer")):
        return "money"
    return "qaly" if "qaly" in q else "points"


def _fmt_value(value: Any, kind: str) -> str:
    if kind == "money":
        return fmt_money(value)
    return fmt_number(value, 3 if kind == "qaly" else 2)


def _fmt_interval(low: Any, high: Any, kind: str) -> str:
    if kind == "money":
        return fmt_money_ci(low, high)
    if _is_missing_number(low) or _is_missing_number(high):
        return DASH
    decimals = 3 if kind == "qaly" else 2
    return f"{fmt_number(low, decimals)} to {fmt_number(high, decimals)}"


def _sentence(text: str) -> str:
    """First letter upper case, unless the text starts with a column name ('rguk_total difference ...')."""
    text = str(text or "").strip()
    if not text or "_" in text.split(" ", 1)[0]:
        return text
    return text[:1].upper() + text[1:]


def _n_teams(n: Any, teams: Any, k: int) -> str:
    """'42 (4)': participants (teams); team counts are not suppressed."""
    if _is_missing_number(n):
        return DASH
    t = "" if _is_missing_number(teams) else f" ({fmt_count(teams)})"
    return f"{fmt_count(n, k)}{t}"


def _cleaner(redact: _Redactor | None):
    return (lambda text: redact(text)) if redact is not None else (lambda text: str(text or ""))


def _is_ratio(row: Mapping) -> bool:
    return str(row.get("key", "")) in ("icer", "cost_per_effect")


# ----------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------



def _money_tick(value: float, _pos: Any = None) -> str:
    return fmt_money(value)


def _nice_limit(reach: float) -> float:
    """A round axis limit a quarter beyond ``reach`` (> 0), leaving room for the quadrant boxes in the corners."""
    reach = reach * 1.25
    magnitude = 10 ** math.floor(math.log10(reach))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * magnitude >= reach:
            return step * magnitude
    return 10 * magnitude


def _estimate(results: pd.DataFrame, key: str) -> float:
    rows = results[(results["analysis"] == "complete_case") & (results["key"] == key)]
    return math.nan if rows.empty else float(rows["estimate"].iloc[0])


def ce_plane_svg(analysis: Any, *, figure_id: str = "fig-ce-plane") -> str:
    """The cost-effectiveness plane as inline SVG text.

    One small translucent point per bootstrap replicate (``analysis.replicates``: ``delta_qaly`` on x,
    ``delta_cost`` on y; an SVG group with id ``<figure_id>-replicates``), the point estimate (the complete-case
    incremental QALYs and cost of ``analysis.results``; group ``<figure_id>-estimate``), axes through 0, one line
    through the origin per net-benefit threshold (cost = threshold x QALYs; group ``<figure_id>-threshold-<i>``,
    labelled "£20,000/QALY"), and the quadrant shares of ``analysis.quadrants`` (plane "QALY") in the corners.
    Symmetric axes around 0, so every quadrant has room. Deterministic and without clip paths (everything is drawn
    inside the limits). Returns "" when there are no finite replicates.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    reps = analysis.replicates
    if reps is None or len(reps) == 0 or not {"delta_qaly", "delta_cost"} <= set(reps.columns):
        return ""
    x = reps["delta_qaly"].to_numpy(dtype=float)
    y = reps["delta_cost"].to_numpy(dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size == 0:
        return ""
    labels = arm_labels(analysis.plan)
    est_x = _estimate(analysis.results, "delta_qaly")
    est_y = _estimate(analysis.results, "delta_cost")
    reach_x = max(float(np.abs(x).max()), abs(est_x) if math.isfinite(est_x) else 0.0, 1e-6)
    reach_y = max(float(np.abs(y).max()), abs(est_y) if math.isfinite(est_y) else 0.0, 1.0)
    xlim, ylim = _nice_limit(reach_x), _nice_limit(reach_y)
    quads = analysis.quadrants
    shares = {}
    if quads is not None and len(quads):
        q = quads[quads["plane"] == "QALY"]
        shares = dict(zip(q["quadrant"], q["share"], strict=True))

    rc = figure_rc(figure_id)
    width, height = 7.6, 5.9
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        fig.subplots_adjust(left=0.14, right=0.97, bottom=0.17, top=0.98)
        try:
            ax.set_xlim(-xlim, xlim)
            ax.set_ylim(-ylim, ylim)
            ax.axhline(0, color="#333333", linewidth=0.9, zorder=1)
            ax.axvline(0, color="#333333", linewidth=0.9, zorder=1)
            ax.scatter(x, y, s=5, color=_REPLICATE_COLOUR, alpha=0.35, linewidths=0, zorder=2, gid="replicates")
            handles = [Line2D([], [], linestyle="none", marker="o", markersize=4, color=_REPLICATE_COLOUR,
                              alpha=0.6, label=_mpl_text(f"Bootstrap replicates ({x.size:,})"))]
            if math.isfinite(est_x) and math.isfinite(est_y):
                ax.plot([est_x], [est_y], linestyle="none", marker="D", markersize=7, color=_ESTIMATE_COLOUR,
                        markerfacecolor="white", markeredgewidth=1.6, zorder=4, gid="estimate")
                handles.append(Line2D([], [], linestyle="none", marker="D", markersize=7, color=_ESTIMATE_COLOUR,
                                      markerfacecolor="white", markeredgewidth=1.6, label="Point estimate"))
            for i, lam in enumerate(analysis.settings.inb_thresholds):
                lam = float(lam)
                if lam <= 0:
                    continue
                style = _LINE_STYLES[i % len(_LINE_STYLES)]
                # the part of cost = lam * qaly inside the limits (drawn unclipped)
                x0, x1 = max(-xlim, -ylim / lam), min(xlim, ylim / lam)
                ax.plot([x0, x1], [lam * x0, lam * x1], color=_THRESHOLD_COLOUR, linewidth=1.1, linestyle=style,
                        zorder=3, gid=f"threshold-{i}")
                handles.append(Line2D([], [], color=_THRESHOLD_COLOUR, linewidth=1.1, linestyle=style,
                                      label=_mpl_text(f"Threshold {_fmt_threshold(lam)}")))
                # label right of the line in the south-west quadrant, below the corner boxes of the north and
                # above the one of the south-west, each threshold at its own height
                ly = -ylim * (0.32 + 0.14 * i)
                lx = max(ly / lam, x0)
                ax.annotate(_mpl_text(_fmt_threshold(lam)), xy=(lx, lam * lx), xytext=(5, 0),
                            textcoords="offset points", ha="left", va="center", fontsize=7.5,
                            color=_THRESHOLD_COLOUR, zorder=5, gid=f"threshold-label-{i}",
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 0.6})
            corners = {"NE": (0.985, 0.985, "right", "top"), "NW": (0.015, 0.985, "left", "top"),
                       "SE": (0.985, 0.015, "right", "bottom"), "SW": (0.015, 0.015, "left", "bottom")}
            for quad, (cx, cy, ha, va) in corners.items():
                share = _fmt_share(shares.get(quad))
                ax.text(cx, cy, f"{QUADRANT_NAMES[quad]}: {QUADRANT_WORDS[quad]}\n{share} of replicates",
                        transform=ax.transAxes, ha=ha, va=va, fontsize=7.8, color="#1d2329", zorder=6,
                        linespacing=1.3, gid=f"quadrant-{quad}",
                        bbox={"facecolor": "#f4f6f8", "edgecolor": "#c9d0d6", "pad": 2.5, "alpha": 0.8})
            ax.yaxis.set_major_formatter(FuncFormatter(_money_tick))
            ax.xaxis.set_major_locator(MaxNLocator(7, symmetric=True))
            ax.yaxis.set_major_locator(MaxNLocator(7, symmetric=True))
            ax.grid(color="#e3e6ea", linewidth=0.6)
            ax.set_axisbelow(True)
            ax.set_xlabel(_mpl_text(f"Incremental QALYs ({labels['difference']})"))
            ax.set_ylabel(_mpl_text(f"Incremental cost, \u00a3 ({labels['difference']})"))
            ax.yaxis.set_label_coords(-0.115, 0.5)
            fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False,
                       bbox_to_anchor=(0.5, 0.0), fontsize=8, handlelength=2.6, columnspacing=1.4)
            svg = figure_svg(fig, figure_id,
                             f"Cost-effectiveness plane: incremental cost against incremental QALYs, "
                             f"{labels['difference']}, one point per bootstrap replicate, with the point estimate, "
                             "net-benefit threshold lines and the share of replicates in each quadrant",
                             unclip=True)
        finally:
            fig.clear()
    return svg


def ceac_svg(analysis: Any, *, figure_id: str = "fig-ceac") -> str:
    """The cost-effectiveness acceptability curve as inline SVG text.

    ``analysis.ceac``: threshold (x, £ per QALY) against the probability that the comparator is cost-effective
    (y, 0 to 1); one marker per threshold of the table (an SVG group ``<figure_id>-curve`` holding one ``<use>``
    per point), and a vertical line per net-benefit threshold (groups ``<figure_id>-threshold-<i>``) labelled
    "£20,000/QALY". Deterministic and without clip paths. Returns "" when the table is empty.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    ceac = analysis.ceac
    if ceac is None or len(ceac) == 0:
        return ""
    ceac = ceac[np.isfinite(ceac["probability_cost_effective"].to_numpy(dtype=float))]
    if ceac.empty:
        return ""
    labels = arm_labels(analysis.plan)
    tx = ceac["threshold"].to_numpy(dtype=float)
    py = ceac["probability_cost_effective"].to_numpy(dtype=float)
    lo, hi = float(tx.min()), float(tx.max())
    if hi <= lo:
        hi = lo + 1.0
    rc = figure_rc(figure_id)
    width, height = 7.6, 3.9
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        fig.subplots_adjust(left=0.1, right=0.97, bottom=0.15, top=0.88)
        try:
            ax.set_xlim(lo, hi)
            ax.set_ylim(0, 1)
            for i, lam in enumerate(analysis.settings.inb_thresholds):
                lam = float(lam)
                if not lo <= lam <= hi:
                    continue
                ax.plot([lam, lam], [0, 1], color=_THRESHOLD_COLOUR, linewidth=1.0,
                        linestyle=_LINE_STYLES[i % len(_LINE_STYLES)], zorder=1, gid=f"threshold-{i}")
                ax.annotate(_mpl_text(_fmt_threshold(lam)), xy=(lam, 1.0), xytext=(3, -3), textcoords="offset points",
                            ha="left", va="top", fontsize=7.5, color=_THRESHOLD_COLOUR, zorder=3,
                            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 0.6})
            ax.plot(tx, py, color="#1f4e79", linewidth=1.5, marker="o", markersize=2.6, zorder=2, gid="curve",
                    label=_mpl_text(f"{labels['comparator']} versus {labels['reference_lower']}"))
            ax.xaxis.set_major_formatter(FuncFormatter(_money_tick))
            ax.xaxis.set_major_locator(MaxNLocator(6))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.grid(color="#e3e6ea", linewidth=0.6)
            ax.set_axisbelow(True)
            ax.set_xlabel("Willingness to pay per QALY gained (threshold)")
            ax.set_ylabel("Probability cost-effective")
            ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False, fontsize=8, borderaxespad=0.3)
            svg = figure_svg(fig, figure_id,
                             f"Cost-effectiveness acceptability curve: probability that {labels['comparator_lower']} "
                             f"is cost-effective compared with {labels['reference_lower']} at each "
                             "willingness-to-pay threshold per QALY, with the net-benefit thresholds marked",
                             unclip=True)
        finally:
            fig.clear()
    return svg


# ----------------------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------------------


def _category_labels(analysis: Any) -> dict[str, str]:
    """cost_<category> column -> the category as written in the unit-cost table ('Primary care')."""
    out: dict[str, str] = {}
    for frame in (analysis.service_use, analysis.unit_costs):
        if frame is not None and len(frame) and "category" in frame:
            for c in frame["category"]:
                out.setdefault(f"cost_{c}".replace(" ", "_"), _sentence(str(c)))
    return out


def _cost_label(cost: str, categories: Mapping[str, str]) -> str:
    if cost in COST_LABELS:
        return COST_LABELS[cost]
    if cost in categories:
        return categories[cost]
    return _sentence(cost[5:].replace("_", " ")) if cost.startswith("cost_") else pretty(cost)


def _period_label(analysis: Any, timepoint: str) -> str:
    d = analysis.plan.design
    months = f"{float(analysis.settings.recall_months):g}"
    when = "before baseline" if timepoint == d.baseline else "before the follow-up interview"
    return f"{pretty(timepoint)}: the {months} months {when}"


def _service_names(analysis: Any) -> dict[str, str]:
    names = {}
    uc = analysis.unit_costs
    if uc is not None and len(uc):
        for _, r in uc.iterrows():
            desc = "" if _is_missing_number(r.get("description")) else str(r.get("description") or "").strip()
            names[str(r["service"])] = desc or pretty(str(r["service"]))
    return names


def _use_section(analysis: Any, k: int, clean) -> dict:
    plan = analysis.plan
    d = plan.design
    labels = arm_labels(plan)
    roles = [("reference", d.control), ("comparator", d.treatment)]
    names = _service_names(analysis)

    # service use by period and service, one column group per arm
    use = analysis.service_use
    periods = []
    if use is not None and len(use):
        for tp in [t for t in d.timepoints if (use["timepoint"] == t).any()]:
            g = use[use["timepoint"] == tp]
            rows = []
            for service in dict.fromkeys(g["service"]):
                s = g[g["service"] == service]
                unit = str(s["unit"].iloc[0])
                cells = []
                for _role, arm in roles:
                    r = s[s["arm"] == arm]
                    if r.empty:
                        cells.append({"n": DASH, "users": DASH, "mean_quantity": DASH, "mean_cost": DASH})
                        continue
                    r = r.iloc[0]
                    hide = _suppressed(r["n"], k) or int(r["n"]) == 0
                    pct = fmt_pct(r["users"], r["n"], k)
                    users = fmt_count(r["users"], k)
                    cells.append({
                        "n": fmt_count(r["n"], k),
                        "users": f"{users} ({pct}%)" if pct != DASH else users,
                        "users_suppressed": _suppressed(r["users"], k),
                        "mean_quantity": DASH if hide else fmt_number(r["mean_quantity"], 2),
                        "mean_cost": DASH if hide else
                        f"{fmt_money(r['mean_cost'])} ({fmt_money(r['sd_cost'])})",
                    })
                rows.append({"service": str(service), "name": names.get(str(service), pretty(str(service))),
                             "category": _sentence(str(s["category"].iloc[0])),
                             "unit": UNIT_PLURALS.get(unit, unit), "cells": cells})
            periods.append({"label": _period_label(analysis, tp), "rows": rows})

    # costs by category and in total, by arm
    categories = _category_labels(analysis)
    summary = analysis.cost_summary
    cost_periods = []
    if summary is not None and len(summary):
        for tp in [t for t in d.timepoints if (summary["timepoint"] == t).any()]:
            g = summary[summary["timepoint"] == tp]
            rows = []
            for cost in dict.fromkeys(g["cost"]):
                c = g[g["cost"] == cost]
                cells = []
                for _role, arm in roles:
                    r = c[c["arm"] == arm]
                    if r.empty:
                        cells.append({"n": DASH, "mean_sd": DASH, "median": DASH})
                        continue
                    r = r.iloc[0]
                    hide = _suppressed(r["n"], k) or int(r["n"]) == 0
                    cells.append({"n": fmt_count(r["n"], k),
                                  "mean_sd": DASH if hide else f"{fmt_money(r['mean'])} ({fmt_money(r['sd'])})",
                                  "median": DASH if hide else fmt_money(r["median"])})
                kind = "total" if cost == "total_cost" else "subtotal" if cost in COST_LABELS else "category"
                rows.append({"cost": str(cost), "label": _cost_label(str(cost), categories), "kind": kind,
                             "cells": cells})
            cost_periods.append({"label": _period_label(analysis, tp), "rows": rows})

    # unit costs used
    settings = analysis.settings
    unit_rows = []
    uc = analysis.unit_costs
    if uc is not None and len(uc):
        for _, r in uc.iterrows():
            unit = str(r["unit"])
            desc = "" if _is_missing_number(r.get("description")) else str(r.get("description") or "")
            unit_rows.append({
                "service": str(r["service"]), "description": desc, "category": _sentence(str(r["category"])),
                "unit": f"per {unit}", "cost": fmt_money(r["cost"], 2), "price_year": str(r["price_year"]),
                "inflation_factor": fmt_number(r["inflation_factor"], 4),
                "unit_cost": fmt_money(r["unit_cost"], 2), "source": str(r["source"]),
                "inflated": str(r["price_year"]) != str(settings.price_year),
            })

    # implementation costs per team
    impl = analysis.implementation
    components = [c for c in (impl.columns if impl is not None else []) if c not in IMPLEMENTATION_FIXED]
    impl_rows = []
    any_hidden = False
    if impl is not None and len(impl):
        for _, r in impl.iterrows():
            from_study = str(r["spread_over"]) == "study participants"
            caseload = fmt_count(r["caseload"], k if from_study else 0)
            hidden = from_study and _suppressed(r["caseload"], k)
            any_hidden |= hidden
            impl_rows.append({
                "team": str(r["team"]), "components": [fmt_money(r[c]) for c in components],
                "total": fmt_money(r["total"]), "caseload": caseload,
                "spread_over": "team caseload (plan)" if not from_study else "study participants of the team",
                "per_participant": DASH if hidden else fmt_money(r["per_participant"], 2),
            })

    qa_n = int(len(analysis.qa)) if getattr(analysis, "qa", None) is not None else 0
    return {
        "labels": labels,
        "arm_headers": [labels["reference"], labels["comparator"]],
        "periods": periods,
        "cost_periods": cost_periods,
        "unit_rows": unit_rows,
        "price_year": str(settings.price_year),
        "price_index": str(settings.price_index).replace("\\", "/").split("/")[-1] if settings.price_index else "",
        "perspective": str(settings.perspective),
        "recall_months": f"{float(settings.recall_months):g}",
        "horizon_months": f"{float(settings.horizon_months):g}",
        "components": [pretty(c) for c in components],
        "impl_rows": impl_rows,
        "impl_hidden": any_hidden,
        "treatment": pretty(d.treatment),
        "excluded_services": [clean(x) for x in (analysis.excluded_services or [])],
        "qa_count": fmt_count(qa_n, k) if qa_n else "",
    }


def _imputed_sentence(analysis: Any, k: int) -> str:
    counts = dict(analysis.imputed_counts or {})
    if not counts:
        return ""
    effect = analysis.cost_per_effect.get("effect") if analysis.cost_per_effect else None
    names = dict(IMPUTED_LABELS)
    if effect:
        names.update({"e0": f"{effect} at baseline", "e1": f"{effect} at follow-up"})
    parts = [f"{names.get(c, c)} {fmt_count(n, k)}" for c, n in counts.items() if not _is_missing_number(n) and n]
    if not parts:
        return "No values were missing, so nothing was imputed: the complete-case analysis is the analysis."
    md = analysis.plan.missing_data
    return (f"Values imputed (participants) for the multiple-imputation analysis: {'; '.join(parts)} "
            f"({md.imputations} imputations).")


def _result_groups(analysis: Any, k: int, clean) -> list[dict]:
    results = analysis.results
    groups = []
    present = list(dict.fromkeys(results["analysis"]))
    order = [a for a in ANALYSIS_ORDER if a in present] + [a for a in present if a not in ANALYSIS_ORDER]
    for name in order:
        g = results[results["analysis"] == name]
        # "values imputed: total_cost 11, ..." holds unsuppressed counts: the imputed sentence below the tables
        # gives them (suppressed)
        notes = [[p for p in split_notes(clean(n)) if not p.lower().startswith("values imputed")]
                 if not _is_missing_number(n) else [] for n in g["notes"]]
        regular = [ns for ns, (_, r) in zip(notes, g.iterrows(), strict=True) if not _is_ratio(r) and ns]
        # notes every non-ratio row of the group shares are shown once, under the group's heading
        shared = [p for p in regular[0] if all(p in ns for ns in regular)] if len(regular) > 1 else []
        rows = []
        for ns, (_, r) in zip(notes, g.iterrows(), strict=True):
            quantity = str(r["quantity"])
            kind = _unit_kind(r.get("unit"), quantity)
            ratio = _is_ratio(r)
            method = "" if _is_missing_number(r["interval_method"]) else str(r["interval_method"])
            detail = ""
            if not _is_missing_number(r.get("mean_treatment")) and not _is_missing_number(r.get("mean_control")):
                detail = (f"means: {fmt_money(r['mean_control'])} reference, {fmt_money(r['mean_treatment'])} "
                          "comparator")
            rows.append({
                "key": str(r.get("key", "")), "quantity": _sentence(quantity), "ratio": ratio,
                "unit": "" if _is_missing_number(r.get("unit")) else str(r.get("unit")),
                "estimate": _fmt_value(r["estimate"], kind),
                "ci": _fmt_interval(r["conf_low"], r["conf_high"], kind),
                "method": INTERVAL_SHORT.get(method, method) or DASH,
                "statement": "; ".join(ns) if ratio else "",
                "notes": [] if ratio else [p for p in ns if p not in shared],
                "detail": detail,
                "n_reference": _n_teams(r["n_participants_control"], r["n_clusters_control"], k),
                "n_comparator": _n_teams(r["n_participants_treatment"], r["n_clusters_treatment"], k),
            })
        groups.append({"analysis": str(name), "label": ANALYSIS_NAMES.get(str(name), pretty(str(name))),
                       "shared_notes": shared, "rows": rows})
    return groups


def _inb_rows(analysis: Any, k: int) -> list[dict]:
    results = analysis.results
    ceac = analysis.ceac
    rows = []
    for lam in analysis.settings.inb_thresholds:
        lam = float(lam)
        probability = DASH
        if ceac is not None and len(ceac):
            hit = ceac[np.isclose(ceac["threshold"].to_numpy(dtype=float), lam)]
            if len(hit):
                probability = fmt_number(hit["probability_cost_effective"].iloc[0], 2)
        matches = results[results["key"] == f"inb_{lam:g}"]
        for name in ANALYSIS_ORDER + [a for a in dict.fromkeys(matches["analysis"]) if a not in ANALYSIS_ORDER]:
            m = matches[matches["analysis"] == name]
            if m.empty:
                continue
            r = m.iloc[0]
            rows.append({"threshold": _fmt_threshold(lam), "analysis": ANALYSIS_NAMES.get(name, pretty(name)),
                         "estimate": fmt_money(r["estimate"]), "ci": fmt_money_ci(r["conf_low"], r["conf_high"]),
                         "probability": probability if name == "complete_case" else DASH,
                         "n_reference": _n_teams(r["n_participants_control"], r["n_clusters_control"], k),
                         "n_comparator": _n_teams(r["n_participants_treatment"], r["n_clusters_treatment"], k)})
    return rows


def _quadrant_rows(analysis: Any) -> tuple[list[str], list[dict]]:
    quads = analysis.quadrants
    if quads is None or len(quads) == 0:
        return [], []
    planes = list(dict.fromkeys(quads["plane"]))
    rows = []
    for quad in ("NE", "NW", "SE", "SW"):
        shares = []
        for plane in planes:
            q = quads[(quads["plane"] == plane) & (quads["quadrant"] == quad)]
            shares.append(_fmt_share(q["share"].iloc[0]) if len(q) else DASH)
        rows.append({"quadrant": QUADRANT_NAMES[quad], "code": quad, "words": QUADRANT_WORDS[quad], "shares": shares})
    headers = ["QALYs" if p == "QALY" else str(p) for p in planes]
    return headers, rows


def _results_section(analysis: Any, k: int, clean) -> dict:
    plan = analysis.plan
    s = analysis.settings
    labels = arm_labels(plan)
    plane = ce_plane_svg(analysis)
    curve = ceac_svg(analysis)
    headers, quadrant_rows = _quadrant_rows(analysis)
    cpe = dict(analysis.cost_per_effect or {})
    effect = cpe.get("effect")
    per_effect = None
    if effect:
        per_effect = {"effect": str(effect), "statement": _sentence(clean(cpe.get("statement", ""))),
                      "value": fmt_money(cpe.get("value")),
                      "delta_cost": fmt_money(cpe.get("delta_cost")),
                      "delta_effect": fmt_number(cpe.get("delta_effect"), 2)}
    icer = dict(analysis.icer or {})
    thresholds = [_fmt_threshold(v) for v in s.inb_thresholds]
    return {
        "labels": labels,
        "groups": _result_groups(analysis, k, clean),
        "plane_svg": Markup(plane), "has_plane": bool(plane),
        "ceac_svg": Markup(curve), "has_ceac": bool(curve),
        "n_replicates": fmt_count(len(analysis.replicates)) if analysis.replicates is not None else DASH,
        "replicates": f"{int(s.replicates):,}", "seed": str(s.seed), "conf": f"{100 * float(s.conf_level):g}",
        "thresholds": thresholds,
        "ceac_range": f"{fmt_money(s.thresholds[0])} to {fmt_money(s.thresholds[1])} per QALY "
                      f"in steps of {fmt_money(s.thresholds[2])}",
        "inb_rows": _inb_rows(analysis, k),
        "quadrant_headers": headers, "quadrant_rows": quadrant_rows,
        "icer": _sentence(clean(icer.get("statement", ""))),
        "per_effect": per_effect,
        "imputed": _imputed_sentence(analysis, k),
        "notes": [_sentence(clean(n)) for n in (analysis.notes or [])],
        "plane_note": CE_PLANE_NOTE, "ceac_note": CEAC_NOTE,
    }


def _methods_section(analysis: Any, redact: _Redactor | None) -> dict:
    text = str(analysis.methods or "")
    return {"text": redact(text) if redact is not None else text}


def _cost_tile(results: dict, labels: Mapping[str, str]) -> dict | None:
    for group in results["groups"]:
        if group["analysis"] != "complete_case":
            continue
        for row in group["rows"]:
            if row["key"] != "cost_adjusted":
                continue
            detail = f"{labels['roles']}, adjusted for baseline cost, 95% CI {row['ci']}"
            inb = next((r for r in results["inb_rows"] if r["analysis"] == ANALYSIS_NAMES["complete_case"]), None)
            if inb is not None:
                detail += f"; net benefit at {inb['threshold']} {inb['estimate']} (95% CI {inb['ci']})"
            return {"label": f"Cost difference: {labels['short']}", "value": row["estimate"], "detail": detail}
    return None


def add_cost_sections(context: dict, analysis: Any, *, suppress_below: int = 0,
                      participant_ids: Iterable[Any] | None = None) -> None:
    """Add the costs sections to a study report context (in place).

    Parameters
    ----------
    context : a context from ``cpeval.report.build_study_context``.
    analysis : a ``cpeval.costs.CostAnalysis`` (``analyse_costs``).
    suppress_below : k; participant counts from 1 to k-1 are shown as "<k". The larger of this and the context's
        own ``meta["suppress_below"]`` is used, so a report prepared for sharing never shows a small count.
    participant_ids : the data's participant identifiers, to scan notes and the methods text for them (they are
        replaced by "[participant id]" as elsewhere in the report).

    Adds sections ``costs_use`` (service use and costs by arm, unit costs, implementation costs),
    ``costs_results`` (cost-effectiveness results, CE plane, acceptability curve, net benefit) and
    ``costs_methods`` (in this order, before the provenance section when there is one, else at the end) and an
    "At a glance" tile with the adjusted cost difference and the net benefit at the first threshold.
    """
    k = sections_k(context, suppress_below)
    redact = _Redactor(participant_ids) if participant_ids is not None else None
    clean = _cleaner(redact)

    use = _use_section(analysis, k, clean)
    results = _results_section(analysis, k, clean)
    methods = _methods_section(analysis, redact)

    for data in (use, results, methods):
        data["suppress_below"] = k
    add_sections_before_provenance(context, [
        ("costs_use", "Service use and costs by arm", use),
        ("costs_results", "Cost-effectiveness", results),
        ("costs_methods", "Costs methods text", methods),
    ])
    tile = _cost_tile(results, arm_labels(analysis.plan))
    if tile is not None:
        context.setdefault("summary", []).append(tile)
