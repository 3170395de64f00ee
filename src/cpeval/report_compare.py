"""Arm-comparison sections of the study report: participant flow, baseline characteristics, results, reliability
and a methods paragraph, from a ``cpeval.compare.Comparison``.

Same three layers as ``cpeval.report``:

1. Table and figure functions (``flow_stages``, ``results_table``, ``icc_table``, ``forest_figure_svg``) take the
   ``Comparison`` and return tidy DataFrames or an SVG string; every number shown comes from them or straight from
   the ``Comparison``'s own tables (``flow``, ``baseline``, ``teams``, ``records``, ``reliability``).
2. ``add_comparison_sections(context, comparison)`` formats them into plain dicts and adds five sections to a
   context from ``cpeval.report.build_study_context`` (before its provenance section): ``flow``, ``baseline``,
   ``results``, ``reliability`` and ``methods``, plus an "At a glance" tile for the primary outcome.
3. The partials ``sections/<id>.html.j2`` place the formatted text; they never compute.

Number formats: adjusted differences, their SE, CI and the SD used have 3 decimals for an outcome whose possible
(else observed) range spans at most 2 (an EQ-5D index), else 2; standardised effects and SMDs 2; ICCs 3;
Cronbach's alpha 2; p values 3 decimals or "<0.001"; df 1 decimal.

Privacy: the ``Comparison`` holds no participant identifiers (only counts, team names and statistics); free text
from the analysis (model notes) is still passed through the report's identifier scan when ``participant_ids`` is
given. Counts of participants from 1 to k-1 are shown as "<k" (k = the larger of ``suppress_below`` and the
context's own setting), percentages built on them are hidden, and baseline statistics or Cronbach's alpha of a
group with fewer than k values are not shown. Team counts are not suppressed (as in the study structure section).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from cpeval.baseline import SMD_NOTE
from cpeval.outcomes import MODEL_DESCRIPTIONS, MODEL_IMPUTED, MODEL_LONGITUDINAL, MODEL_PRIMARY
from cpeval.report import (
    DASH,
    figure_rc,
    figure_svg,
    _is_missing_number,
    _mpl_text,
    _Redactor,
    _suppressed,
    add_sections_before_provenance,
    fmt_count,
    fmt_number,
    fmt_pct,
    pretty,
    score_decimals,
    sections_k,
)

__all__ = [
    "add_comparison_sections",
    "flow_stages",
    "results_table",
    "icc_table",
    "forest_figure_svg",
    "estimate_decimals",
    "fmt_p",
    "fmt_ci",
    "split_notes",
    "MODEL_NAMES",
    "HIGHER_IS_BETTER_NOTE",
    "ICC_NOTE",
]

# Short display names of the models (MODEL_DESCRIPTIONS gives the full formula).
MODEL_NAMES = {
    MODEL_PRIMARY: "Primary: ANCOVA",
    MODEL_LONGITUDINAL: "All time points",
    MODEL_IMPUTED: "Multiple imputation",
}
# What each model's arm estimate is.
MODEL_ESTIMANDS = {
    MODEL_PRIMARY: "difference in follow-up means, adjusted for the baseline score and covariates",
    MODEL_LONGITUDINAL: "difference between arms in change from baseline to follow-up (arm \u00d7 time)",
    MODEL_IMPUTED: "as the primary model, after imputing missing data (sensitivity analysis)",
}
# Marker and colour per model in the forest plot (distinguishable in greyscale by the marker).
_MODEL_STYLES = {
    MODEL_PRIMARY: ("#1f4e79", "o"),
    MODEL_LONGITUDINAL: ("#c55a11", "s"),
    MODEL_IMPUTED: ("#5b7d2a", "D"),
}
_OTHER_STYLE = ("#666666", "^")

HIGHER_IS_BETTER_NOTE = (
    "For every outcome shipped with cpeval a higher score is better, so an effect above 0 favours implementation; "
    "check the direction of any outcome a study adds."
)
ICC_NOTE = (
    "Intracluster (team) correlation coefficients, from the primary model of each outcome: team variance divided by "
    "total variance, with a 95% profile-likelihood confidence interval. As the CONSORT extension for cluster trials "
    "asks, they are reported to help plan the sample size of future studies."
)
FLOW_DATA_NOTE = (
    "A participant has data at a time point when at least one outcome of the plan has a value at that time point. "
    "Recruited: at least one row in the data. A team is lost when none of its participants has follow-up data."
)

RESULTS_COLUMNS = [
    "outcome", "label", "primary", "model", "model_name", "model_description", "term", "estimate", "std_error",
    "df", "df_method", "conf_low", "conf_high", "p_value", "n_participants", "n_clusters",
    "n_participants_treatment", "n_participants_control", "n_clusters_treatment", "n_clusters_control",
    "effect_size", "effect_size_low", "effect_size_high", "effect_size_sd", "imputations", "decimals", "notes",
]
ICC_COLUMNS = ["outcome", "label", "primary", "icc", "conf_low", "conf_high", "n_participants", "n_clusters", "notes"]
FLOW_STAGE_COLUMNS = ["arm", "stage", "teams", "participants", "teams_excluded", "participants_excluded",
                      "percent_of_recruited"]


# ----------------------------------------------------------------------------------------------------------
# formatting
# ----------------------------------------------------------------------------------------------------------


def fmt_p(value: Any) -> str:
    """A p value: '<0.001' below 0.001, else 3 decimals; missing -> '—'."""
    if _is_missing_number(value):
        return DASH
    return "<0.001" if float(value) < 0.001 else f"{float(value):.3f}"


def fmt_ci(low: Any, high: Any, decimals: int) -> str:
    """'a to b' (the word avoids a dash being read as a minus sign); missing -> '—'."""
    if _is_missing_number(low) or _is_missing_number(high):
        return DASH
    return f"{fmt_number(low, decimals)} to {fmt_number(high, decimals)}"


def _fmt_df(value: Any) -> str:
    return fmt_number(value, 1)


def _n_teams(n_participants: Any, n_teams: Any, k: int) -> str:
    """'49 (5)': participants (teams); team counts are not suppressed."""
    if _is_missing_number(n_participants):
        return DASH
    teams = "" if _is_missing_number(n_teams) else f" ({fmt_count(n_teams)})"
    return f"{fmt_count(n_participants, k)}{teams}"


def _plural(n: Any, word: str) -> str:
    return word if not _is_missing_number(n) and int(n) == 1 else f"{word}s"


# ----------------------------------------------------------------------------------------------------------
# labels and decimals from the study context (what the scoring part of the report already knows)
# ----------------------------------------------------------------------------------------------------------


def _context_section(context: Mapping, section_id: str) -> Mapping | None:
    for s in context.get("sections", []):
        if s.get("id") == section_id:
            return s.get("data")
    return None


def _score_info(context: Mapping) -> tuple[dict[str, str], dict[str, int]]:
    """Score column -> label and -> display decimals, from the context's distributions section (if any)."""
    labels: dict[str, str] = {}
    decimals: dict[str, int] = {}
    dist = _context_section(context, "distributions") or {}
    for score in dist.get("scores", []):
        labels[str(score["column"])] = str(score["label"])
        decimals[str(score["column"])] = int(score["decimals"])
    for score in dist.get("categorical", []):
        labels.setdefault(str(score["column"]), str(score["label"]))
    return labels, decimals


def _instrument_names(context: Mapping) -> dict[str, str]:
    quality = _context_section(context, "scoring_quality") or {}
    return {str(g["instrument"]): str(g["name"]) for g in quality.get("completeness", [])}


def _observed_span(baseline: pd.DataFrame, variable: str) -> tuple[float, float] | None:
    rows = baseline[(baseline["variable"] == variable) & (baseline["kind"] == "continuous")]
    lo, hi = rows["min"].min(), rows["max"].max()
    return None if pd.isna(lo) or pd.isna(hi) else (float(lo), float(hi))


def estimate_decimals(comparison: Any, outcome: str, declared: int | None = None) -> int:
    """Decimals for an outcome's differences, SE, CI and SD: 3 for a scale spanning at most 2 (EQ-5D index), else 2.

    ``declared`` is the score's display decimals from its possible range (``cpeval.report.score_decimals``, which
    gives 3 exactly when the span is at most 2); without it the observed baseline range decides.
    """
    if declared is not None:
        return 3 if declared >= 3 else 2
    span = _observed_span(comparison.baseline, outcome)
    return 3 if span is not None and span[1] - span[0] <= 2 else 2


# ----------------------------------------------------------------------------------------------------------
# table functions (tidy DataFrames, usable from a notebook)
# ----------------------------------------------------------------------------------------------------------


def flow_stages(comparison: Any) -> pd.DataFrame:
    """The CONSORT flow per arm, as the diagram shows it: one row per arm x stage.

    Stages, in order: ``recruited`` (teams allocated, participants recruited), ``baseline`` (with data at baseline;
    excluded = recruited without), ``follow_up`` (with data at follow-up; excluded = lost: recruited without),
    ``analysed`` (in the primary model of the primary outcome; excluded = recruited but not analysed). Columns
    ``FLOW_STAGE_COLUMNS``; ``percent_of_recruited`` = 100 x participants / participants recruited. All numbers
    come from ``comparison.flow`` (``cpeval.baseline.flow_counts``).
    """
    plan = comparison.plan
    by_arm = comparison.flow["by_arm"].set_index("arm")
    analysed = comparison.flow["analysed"]
    primary = plan.primary or (plan.outcomes[0] if plan.outcomes else None)
    rows = []
    for arm in plan.design.arms:
        if arm not in by_arm.index:
            continue
        r = by_arm.loc[arm]
        rec_t, rec_p = int(r["teams_recruited"]), int(r["participants_recruited"])
        stages = [
            ("recruited", rec_t, rec_p, 0, 0),
            ("baseline", int(r["teams_baseline"]), int(r["participants_baseline"]),
             rec_t - int(r["teams_baseline"]), rec_p - int(r["participants_baseline"])),
            ("follow_up", int(r["teams_follow_up"]), int(r["participants_follow_up"]),
             int(r["teams_lost"]), int(r["participants_lost"])),
        ]
        a = analysed[(analysed["outcome"] == primary) & (analysed["arm"] == arm)]
        if len(a):
            a = a.iloc[0]
            stages.append(("analysed", int(a["teams_analysed"]), int(a["analysed"]),
                           int(a["teams_recruited"]) - int(a["teams_analysed"]),
                           int(a["recruited"]) - int(a["analysed"])))
        for stage, teams, people, teams_x, people_x in stages:
            rows.append(dict(arm=arm, stage=stage, teams=teams, participants=people, teams_excluded=teams_x,
                             participants_excluded=people_x,
                             percent_of_recruited=100.0 * people / rec_p if rec_p else np.nan))
    out = pd.DataFrame(rows, columns=FLOW_STAGE_COLUMNS)
    for c in FLOW_STAGE_COLUMNS[2:6]:
        out[c] = out[c].astype("int64")
    out["percent_of_recruited"] = out["percent_of_recruited"].astype("float64")
    return out


def results_table(comparison: Any, *, labels: Mapping[str, str] | None = None,
                  decimals: Mapping[str, int] | None = None) -> pd.DataFrame:
    """The outcome records with what the report adds: labels, primary flag, model names, standardised CI.

    One row per record of ``comparison.records`` (outcomes in plan order, primary first; models in record order),
    columns ``RESULTS_COLUMNS``. ``effect_size_low``/``effect_size_high`` = ``conf_low``/``conf_high`` divided by
    ``effect_size_sd`` (the SD the standardised effect uses). ``decimals`` = display decimals of the outcome's
    differences (``estimate_decimals``); ``labels``/``decimals`` map score columns to labels and to the score's
    display decimals (from the study context); missing ones fall back to the column name and the observed range.
    """
    labels = dict(labels or {})
    declared = dict(decimals or {})
    plan = comparison.plan
    records = comparison.records.copy()
    order = {o: i for i, o in enumerate(plan.outcomes)}
    records["_o"] = [order.get(o, len(order)) for o in records["outcome"]]
    records["_i"] = range(len(records))
    records = records.sort_values(["_o", "_i"], kind="stable")
    rows = []
    for _, r in records.iterrows():
        outcome = str(r["outcome"])
        model = str(r["model"])
        sd = r["effect_size_sd"]
        ok_sd = not _is_missing_number(sd) and float(sd) > 0
        rows.append(dict(
            outcome=outcome, label=labels.get(outcome, outcome), primary=outcome == plan.primary,
            model=model, model_name=MODEL_NAMES.get(model, pretty(model)),
            model_description=MODEL_DESCRIPTIONS.get(model, ""), term=str(r["term"]),
            **{c: r[c] for c in ("estimate", "std_error", "df", "conf_low", "conf_high", "p_value", "n_participants",
                                 "n_clusters", "n_participants_treatment", "n_participants_control",
                                 "n_clusters_treatment", "n_clusters_control", "effect_size", "effect_size_sd",
                                 "imputations")},
            df_method=str(r["df_method"]) if not _is_missing_number(r["df_method"]) else "",
            effect_size_low=float(r["conf_low"]) / float(sd) if ok_sd else np.nan,
            effect_size_high=float(r["conf_high"]) / float(sd) if ok_sd else np.nan,
            decimals=estimate_decimals(comparison, outcome, declared.get(outcome)),
            notes=str(r["notes"]) if not _is_missing_number(r["notes"]) else "",
        ))
    out = pd.DataFrame(rows, columns=RESULTS_COLUMNS)
    for c in ("estimate", "std_error", "df", "conf_low", "conf_high", "p_value", "effect_size", "effect_size_low",
              "effect_size_high", "effect_size_sd"):
        out[c] = out[c].astype("float64")
    return out


def icc_table(comparison: Any, *, labels: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Team ICC with its 95% CI per outcome, from the primary model (columns ``ICC_COLUMNS``, plan order)."""
    labels = dict(labels or {})
    plan = comparison.plan
    rec = comparison.records
    rows = []
    for outcome in plan.outcomes:
        r = rec[(rec["outcome"] == outcome) & (rec["model"] == MODEL_PRIMARY)]
        if r.empty:
            continue
        r = r.iloc[0]
        rows.append(dict(outcome=outcome, label=labels.get(outcome, outcome), primary=outcome == plan.primary,
                         icc=r["icc"], conf_low=r["icc_conf_low"], conf_high=r["icc_conf_high"],
                         n_participants=r["n_participants"], n_clusters=r["n_clusters"],
                         notes=str(r["notes"]) if _is_missing_number(r["icc"]) and not _is_missing_number(r["notes"])
                         else ""))
    out = pd.DataFrame(rows, columns=ICC_COLUMNS)
    for c in ("icc", "conf_low", "conf_high", "n_participants", "n_clusters"):
        out[c] = out[c].astype("float64")
    return out


# ----------------------------------------------------------------------------------------------------------
# forest plot
# ----------------------------------------------------------------------------------------------------------


def forest_figure_svg(results: pd.DataFrame, *, treatment: str = "implementation", control: str = "control",
                      figure_id: str = "fig-forest") -> str:
    """Standardised effects with 95% CIs, one row per outcome x model, as inline SVG text.

    ``results`` is the output of ``results_table``. Each estimated record gets one marker (an SVG group with id
    ``<figure_id>-est-<i>``, i counting estimated rows from 0) and a horizontal CI line; a record without an
    estimate gets its row with the text "not estimated". A vertical line marks 0; the axis says which side favours
    which arm, and each row's value is printed on the right. Deterministic as ``distribution_figure_svg`` (and,
    like it, without clip paths).
    Returns "" when there is nothing to draw.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Rectangle
    from matplotlib.transforms import blended_transform_factory

    if results is None or results.empty or results["effect_size"].notna().sum() == 0:
        return ""
    # rows from the top: an outcome header, then its models
    layout: list[tuple[str, Any]] = []
    for outcome, g in results.groupby("outcome", sort=False):
        layout.append(("header", g.iloc[0]))
        for _, r in g.iterrows():
            layout.append(("row", r))
    n_rows = len(layout)
    ys = np.arange(n_rows)[::-1].astype(float)

    estimated = results[results["effect_size"].notna()]
    lows = estimated["effect_size_low"].fillna(estimated["effect_size"])
    highs = estimated["effect_size_high"].fillna(estimated["effect_size"])
    reach = max(float(np.abs(lows).max()), float(np.abs(highs).max()), 0.25)
    step = 0.25 if reach <= 1.0 else 0.5 if reach <= 2.5 else 1.0
    limit = math.ceil(reach * 1.08 / step) * step

    rc = figure_rc(figure_id, **{"axes.spines.left": False, "axes.labelcolor": "black", "ytick.color": "#222222"})
    width, left_in, right_in, top_in, bottom_in = 9.6, 1.5, 1.7, 0.45, 0.85
    height = 0.25 * n_rows + top_in + bottom_in
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(width, height))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        fig.subplots_adjust(left=left_in / width, right=1 - right_in / width, bottom=bottom_in / height,
                            top=1 - top_in / height)
        try:
            tick_y, tick_labels = [], []
            i_est = 0
            right = blended_transform_factory(ax.transAxes, ax.transData)  # x in axes fraction, y in rows
            across = blended_transform_factory(fig.transFigure, ax.transData)  # x across the whole figure
            for (kind, r), y in zip(layout, ys):
                if kind == "header":
                    ax.add_patch(Rectangle((0.0, y - 0.5), 1.0, 1.0, transform=across, facecolor="#eef1f4",
                                           edgecolor="none", zorder=0, clip_on=False))
                    label = str(r["label"]) + ("  —  primary outcome" if bool(r["primary"]) else "")
                    ax.text(0.012, y, _mpl_text(_short(label, 110)), transform=across, va="center", ha="left",
                            fontweight="bold", fontsize=8.5, color="#1d2329", zorder=4)
                    continue
                tick_y.append(y)
                tick_labels.append(_mpl_text(str(r["model_name"])))
                colour, marker = _MODEL_STYLES.get(str(r["model"]), _OTHER_STYLE)
                if _is_missing_number(r["effect_size"]):
                    ax.text(0, y, "not estimated (see notes)", ha="center", va="center", fontsize=7.5,
                            color="#7a4300", style="italic", zorder=4,
                            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})
                    ax.text(1.03, y, "\u2014", transform=right, va="center", ha="left", fontsize=8)
                    continue
                lo, hi = r["effect_size_low"], r["effect_size_high"]
                if not (_is_missing_number(lo) or _is_missing_number(hi)):
                    ax.plot([lo, hi], [y, y], color=colour, linewidth=1.3, solid_capstyle="butt", zorder=2)
                    ax.plot([lo, lo], [y - 0.16, y + 0.16], color=colour, linewidth=1.0, zorder=2)
                    ax.plot([hi, hi], [y - 0.16, y + 0.16], color=colour, linewidth=1.0, zorder=2)
                filled = str(r["model"]) == MODEL_PRIMARY
                ax.plot([r["effect_size"]], [y], linestyle="none", marker=marker, markersize=5.5,
                        color=colour, markerfacecolor=colour if filled else "white", markeredgewidth=1.3,
                        zorder=3, gid=f"est-{i_est}")
                i_est += 1
                ax.text(1.03, y, f"{fmt_number(r['effect_size'], 2)} ({fmt_ci(lo, hi, 2)})", transform=right,
                        va="center", ha="left", fontsize=8)
            ax.text(1.03, 1.0, "Effect (95% CI)", transform=ax.transAxes, va="bottom", ha="left", fontsize=8,
                    color="#5b6670", fontweight="bold")
            ax.axvline(0, color="#333333", linewidth=0.9, zorder=1)
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-0.5, n_rows - 0.5)
            ax.set_yticks(tick_y, tick_labels)
            ax.tick_params(axis="y", length=0, pad=6)
            ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(step))
            ax.grid(axis="x", color="#e3e6ea", linewidth=0.6)
            ax.set_axisbelow(True)
            ax.set_xlabel("Standardised effect (adjusted difference \u00f7 baseline SD) with 95% CI", labelpad=20)
            for dx, ha, text in ((-6, "right", f"\u2190 favours {control}"), (6, "left", f"favours {treatment} \u2192")):
                ax.annotate(_mpl_text(text), xy=(0.0, 0.0), xycoords=ax.get_xaxis_transform(), xytext=(dx, -21),
                            textcoords="offset points", ha=ha, va="top", fontsize=8, color="#5b6670")
            models = list(dict.fromkeys(results["model"]))
            handles = []
            for model in models:
                colour, marker = _MODEL_STYLES.get(model, _OTHER_STYLE)
                handles.append(Line2D([], [], linestyle="-", linewidth=1.3, color=colour, marker=marker,
                                      markersize=5.5, markerfacecolor=colour if model == MODEL_PRIMARY else "white",
                                      label=_mpl_text(MODEL_NAMES.get(model, pretty(model)))))
            fig.legend(handles=handles, loc="upper center", ncol=len(handles), frameon=False,
                       bbox_to_anchor=(0.5, 1.0), borderaxespad=0.2)
            # everything lies inside the limits: no clip paths, so no url(#...)
            svg = figure_svg(fig, figure_id, "Forest plot: standardised effect of implementation versus control "
                                             "with 95% confidence interval, one row per outcome and model",
                             unclip=True)
        finally:
            fig.clear()
    return svg


def split_notes(text: str) -> list[str]:
    """Notes joined by '; ' as a list, not splitting inside parentheses ('a; b (c; d)' -> ['a', 'b (c; d)'])."""
    parts, depth, current = [], 0, []
    i = 0
    text = str(text or "")
    while i < len(text):
        ch = text[i]
        depth += (ch == "(") - (ch == ")")
        if depth <= 0 and text.startswith("; ", i):
            parts.append("".join(current))
            current, depth = [], 0
            i += 2
            continue
        current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _short(text: str, width: int) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1].rstrip() + "\u2026"


# ----------------------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------------------


def _flow_section(comparison: Any, k: int, labels: Mapping[str, str]) -> dict:
    plan = comparison.plan
    d = plan.design
    primary = plan.primary or (plan.outcomes[0] if plan.outcomes else None)
    primary_label = labels.get(primary, primary) if primary else None
    stages = flow_stages(comparison)
    by_team = comparison.flow["by_team"]
    analysed = comparison.flow["analysed"]
    by_arm = comparison.flow["by_arm"].set_index("arm")

    def line(n: Any, noun: str, extra: str = "", *, count_k: int | None = None) -> dict:
        """One labelled number: {'value': '79', 'label': 'participants'}; team counts are never suppressed."""
        kk = k if count_k is None else count_k
        return {"value": fmt_count(n, kk), "label": (_plural(n, noun) if noun in ("participant", "team") else noun)
                + extra}

    def pct_of(n: Any, of: Any) -> str:
        pct = fmt_pct(n, of, k)
        return f" ({pct}%)" if pct != DASH else ""

    arms = []
    for arm in d.arms:
        s = stages[stages["arm"] == arm].set_index("stage")
        if s.empty:
            continue
        a = analysed[(analysed["outcome"] == primary) & (analysed["arm"] == arm)]
        rec_p = s.loc["recruited", "participants"]
        boxes = [
            {"stage": "Allocation", "title": f"Allocated to {pretty(arm).lower()}",
             "lines": [line(s.loc["recruited", "teams"], "team", count_k=0),
                       line(rec_p, "participant", " recruited")],
             "side": None},
            {"stage": pretty(d.baseline), "title": f"With data at {pretty(d.baseline).lower()}",
             "lines": [line(s.loc["baseline", "participants"], "participant",
                            pct_of(s.loc["baseline", "participants"], rec_p)),
                       line(s.loc["baseline", "teams"], "team", count_k=0)],
             "side": {"title": f"No data at {pretty(d.baseline).lower()}",
                      "lines": [line(s.loc["baseline", "participants_excluded"], "participant"),
                                line(s.loc["baseline", "teams_excluded"], "team", " with no participant data", count_k=0)]}},
            {"stage": pretty(d.follow_up), "title": f"With data at {pretty(d.follow_up).lower()}",
             "lines": [line(s.loc["follow_up", "participants"], "participant",
                            pct_of(s.loc["follow_up", "participants"], rec_p)),
                       line(s.loc["follow_up", "teams"], "team", count_k=0)],
             "side": {"title": "Lost to follow-up",
                      "lines": [line(s.loc["follow_up", "participants_excluded"], "participant",
                                     pct_of(s.loc["follow_up", "participants_excluded"], rec_p)),
                                line(s.loc["follow_up", "teams_excluded"], "team", " lost", count_k=0)]}},
        ]
        if "analysed" in s.index and len(a):
            a = a.iloc[0]
            boxes.append({
                "stage": "Analysis", "title": "Analysed (primary outcome)",
                "lines": [line(a["analysed"], "participant", pct_of(a["analysed"], a["recruited"])),
                          line(a["teams_analysed"], "team", count_k=0)],
                "side": {"title": "Not in the primary analysis",
                         "lines": [line(a["missing_follow_up"], "no score at follow-up"),
                                   line(a["missing_baseline"], "no score at baseline"),
                                   line(a["missing_covariates"], "a covariate missing")]},
            })
        arms.append({"label": pretty(arm), "boxes": boxes})

    sites = [s for s in by_team["site"] if s is not None and not (isinstance(s, float) and math.isnan(s))]
    n_sites = len(set(sites))
    total_teams = int(by_arm["teams_recruited"].sum())
    total_people = int(by_arm["participants_recruited"].sum())
    site_word = (d.site or "site").replace("_id", "").replace("_", " ")
    top = {"title": "Study teams and participants",
           "lines": [line(total_teams, "team", f" allocated, in {n_sites} {site_word}{'' if n_sites == 1 else 's'}"
                          if n_sites else " allocated", count_k=0),
                     line(total_people, "participant", " recruited")]}

    team_groups = []
    has_site = any(s is not None for s in by_team["site"])
    for arm in d.arms:
        g = by_team[by_team["arm"] == arm]
        if g.empty:
            continue
        rows = [{"team": str(r["team"]), "site": "" if r["site"] is None else str(r["site"]),
                 "recruited": fmt_count(r["recruited"], k), "baseline": fmt_count(r["baseline"], k),
                 "follow_up": fmt_count(r["follow_up"], k), "lost": fmt_count(r["lost"], k),
                 "percent_lost": fmt_pct(r["lost"], r["recruited"], k)} for _, r in g.iterrows()]
        t = by_arm.loc[arm]
        total = {"label": f"All {pretty(arm).lower()} teams ({fmt_count(t['teams_recruited'])})",
                 "recruited": fmt_count(t["participants_recruited"], k),
                 "baseline": fmt_count(t["participants_baseline"], k),
                 "follow_up": fmt_count(t["participants_follow_up"], k),
                 "lost": fmt_count(t["participants_lost"], k),
                 "percent_lost": fmt_pct(t["participants_lost"], t["participants_recruited"], k),
                 "teams_lost": fmt_count(t["teams_lost"])}
        team_groups.append({"arm": pretty(arm), "rows": rows, "total": total})

    outcome_groups = []
    for outcome in plan.outcomes:
        g = analysed[analysed["outcome"] == outcome]
        if g.empty:
            continue
        outcome_groups.append({
            "outcome": outcome, "label": labels.get(outcome, outcome), "primary": outcome == plan.primary,
            "rows": [{"arm": pretty(r["arm"]), "recruited": fmt_count(r["recruited"], k),
                      "missing_follow_up": fmt_count(r["missing_follow_up"], k),
                      "missing_baseline": fmt_count(r["missing_baseline"], k),
                      "missing_covariates": fmt_count(r["missing_covariates"], k),
                      "analysed": fmt_count(r["analysed"], k),
                      "percent_analysed": fmt_pct(r["analysed"], r["recruited"], k),
                      "teams": f"{fmt_count(r['teams_analysed'])} of {fmt_count(r['teams_recruited'])}"}
                     for _, r in g.iterrows()],
        })
    covariates = ", ".join(plan.covariates) if plan.covariates else None
    return {
        "primary": primary, "primary_label": primary_label, "top": top, "arms": arms,
        "site_label": pretty(site_word), "has_site": has_site,
        "team_groups": team_groups, "outcome_groups": outcome_groups, "covariates": covariates,
        "baseline_label": pretty(d.baseline), "follow_up_label": pretty(d.follow_up),
        "data_note": FLOW_DATA_NOTE,
    }


def _baseline_section(comparison: Any, k: int, labels: Mapping[str, str], declared: Mapping[str, int]) -> dict:
    plan = comparison.plan
    d = plan.design
    base = comparison.baseline
    arms = [a for a in d.arms if (base["arm"] == a).any()]
    arm_totals = []
    for arm in arms:
        first = base[base["arm"] == arm].iloc[0] if len(base) else None
        n = None if first is None else int(first["n"]) + int(first["missing"])
        arm_totals.append({"label": pretty(arm), "n": fmt_count(n, k)})

    variables = []
    for var, g in base.groupby("variable", sort=False):
        kind = str(g["kind"].iloc[0])
        label = labels.get(str(var), pretty(str(var)))
        show_code = str(var) in labels
        if kind == "continuous":
            dec = declared.get(str(var))
            if dec is None:
                span = _observed_span(base, str(var))
                dec = score_decimals(None, None, span or ())
            cells = {"mean_sd": [], "median_iqr": [], "range": [], "n": [], "missing": []}
            for arm in arms:
                r = g[g["arm"] == arm].iloc[0]
                hide = _suppressed(r["n"], k) or int(r["n"]) == 0
                cells["n"].append(fmt_count(r["n"], k))
                cells["missing"].append(fmt_count(r["missing"], k))
                cells["mean_sd"].append(DASH if hide else f"{fmt_number(r['mean'], dec)} ({fmt_number(r['sd'], dec)})")
                cells["median_iqr"].append(DASH if hide else f"{fmt_number(r['median'], dec)} "
                                                              f"[{fmt_number(r['q1'], dec)}, {fmt_number(r['q3'], dec)}]")
            smd = fmt_number(g["smd_variable"].iloc[0], 2)
            rows = [
                {"label": "Mean (SD)", "cells": cells["mean_sd"], "smd": smd, "kind": "stat"},
                {"label": "Median [Q1, Q3]", "cells": cells["median_iqr"], "smd": "", "kind": "stat"},
                {"label": "With a value (n)", "cells": cells["n"], "smd": "", "kind": "count"},
                {"label": "Missing (n)", "cells": cells["missing"], "smd": "", "kind": "count"},
            ]
            variables.append({"variable": str(var), "label": label, "show_code": show_code, "kind": kind, "smd": "",
                              "rows": rows})
        else:
            levels = [lv for lv in dict.fromkeys(g["level"])]
            rows = []
            for level in levels:
                cells = []
                sub = g[g["level"].isna()] if level is None else g[g["level"] == level]
                for arm in arms:
                    r = sub[sub["arm"] == arm]
                    if r.empty or _is_missing_number(r.iloc[0]["count"]):
                        cells.append(DASH)
                        continue
                    r = r.iloc[0]
                    pct = fmt_pct(r["count"], r["n"], k)
                    cells.append(f"{fmt_count(r['count'], k)} ({pct}%)" if pct != DASH else fmt_count(r["count"], k))
                rows.append({"label": "(no value recorded)" if level is None else str(level), "cells": cells,
                             "smd": fmt_number(sub["smd"].iloc[0], 2), "kind": "level"})
            n_cells, miss_cells = [], []
            for arm in arms:
                r = g[g["arm"] == arm].iloc[0]
                n_cells.append(fmt_count(r["n"], k))
                miss_cells.append(fmt_count(r["missing"], k))
            rows.append({"label": "With a value (n)", "cells": n_cells, "smd": "", "kind": "count"})
            rows.append({"label": "Missing (n)", "cells": miss_cells, "smd": "", "kind": "count"})
            variables.append({"variable": str(var), "label": label, "show_code": show_code, "kind": kind,
                              "smd": fmt_number(g["smd_variable"].iloc[0], 2), "rows": rows})

    teams = comparison.teams
    team_rows = []
    for _, r in teams[teams["level"].isin(["arm", "total"])].iterrows():
        is_total = r["level"] == "total"
        team_rows.append({
            "label": "All teams" if is_total else f"{pretty(r['arm'])} teams",
            "is_total": bool(is_total),
            "teams": fmt_count(r["teams"]),
            "recruited": fmt_count(r["recruited"], k),
            "recruited_per_team": _per_team(r, "recruited", k),
            "baseline": fmt_count(r["baseline"], k),
            "baseline_per_team": _per_team(r, "baseline", k),
        })
    return {
        "arms": arm_totals, "variables": variables, "smd_note": SMD_NOTE, "team_rows": team_rows,
        "baseline_label": pretty(d.baseline), "treatment": pretty(d.treatment), "control": pretty(d.control),
    }


def _per_team(r: pd.Series, stage: str, k: int) -> str:
    mean, lo, hi = r[f"{stage}_mean"], r[f"{stage}_min"], r[f"{stage}_max"]
    if _is_missing_number(mean):
        return DASH
    if _suppressed(lo, k) or _suppressed(hi, k):
        return f"{fmt_number(mean, 1)} (range not shown)"
    return f"{fmt_number(mean, 1)} ({fmt_count(lo)} to {fmt_count(hi)})"


def _results_section(comparison: Any, k: int, labels: Mapping[str, str], declared: Mapping[str, int],
                     redact: _Redactor | None) -> dict:
    plan = comparison.plan
    d = plan.design
    table = results_table(comparison, labels=labels, decimals=declared)
    clean = (lambda text: redact(text)) if redact is not None else (lambda text: str(text or ""))
    outcomes = []
    for outcome, g in table.groupby("outcome", sort=False):
        dec = int(g["decimals"].iloc[0])
        rows = []
        for _, r in g.iterrows():
            estimated = not _is_missing_number(r["estimate"])
            imputed = int(r["imputations"]) if not _is_missing_number(r["imputations"]) else 0
            rows.append({
                "model": r["model"], "model_name": r["model_name"], "model_description": r["model_description"],
                "estimated": estimated,
                "estimate": fmt_number(r["estimate"], dec),
                "ci": fmt_ci(r["conf_low"], r["conf_high"], dec),
                "std_error": fmt_number(r["std_error"], dec),
                "df": _fmt_df(r["df"]),
                "df_method": r["df_method"] or DASH,
                "p_value": fmt_p(r["p_value"]),
                "n_treatment": _n_teams(r["n_participants_treatment"], r["n_clusters_treatment"], k),
                "n_control": _n_teams(r["n_participants_control"], r["n_clusters_control"], k),
                "effect_size": fmt_number(r["effect_size"], 2),
                "effect_size_ci": fmt_ci(r["effect_size_low"], r["effect_size_high"], 2),
                "effect_size_sd": fmt_number(r["effect_size_sd"], dec),
                "imputations": imputed,
                "notes": split_notes(clean(r["notes"])),
            })
        outcomes.append({"outcome": outcome, "label": g["label"].iloc[0], "primary": bool(g["primary"].iloc[0]),
                         "decimals": dec, "rows": rows})

    icc = icc_table(comparison, labels=labels)
    icc_rows = [{"outcome": r["outcome"], "label": r["label"], "primary": bool(r["primary"]),
                 "icc": fmt_number(r["icc"], 3), "ci": fmt_ci(r["conf_low"], r["conf_high"], 3),
                 "n": _n_teams(r["n_participants"], r["n_clusters"], k),
                 "note": clean(r["notes"]) if _is_missing_number(r["icc"]) else ""}
                for _, r in icc.iterrows()]
    svg = forest_figure_svg(table, treatment=d.treatment, control=d.control)
    models = [{"name": MODEL_NAMES.get(m, pretty(m)), "description": MODEL_DESCRIPTIONS.get(m, ""),
               "estimand": MODEL_ESTIMANDS.get(m, "")} for m in dict.fromkeys(table["model"])]
    return {
        "outcomes": outcomes, "models": models, "icc_rows": icc_rows, "icc_note": ICC_NOTE,
        "figure_svg": Markup(svg), "has_figure": bool(svg),
        "n_estimated": int(table["estimate"].notna().sum()),
        "treatment": pretty(d.treatment), "control": pretty(d.control),
        "treatment_value": d.treatment, "control_value": d.control,
        "direction_note": HIGHER_IS_BETTER_NOTE,
        "notes": [clean(n) for n in getattr(comparison, "notes", []) or []],
    }


def _reliability_section(comparison: Any, k: int, instrument_names: Mapping[str, str],
                         redact: _Redactor | None) -> dict:
    rel = comparison.reliability
    clean = (lambda text: redact(text)) if redact is not None else (lambda text: str(text or ""))
    groups = []
    n_missing = 0
    for inst, g in rel.groupby("instrument", sort=False):
        scales = []
        for scale, s in g.groupby("scale", sort=False):
            rows = []
            for _, r in s.iterrows():
                hidden = _suppressed(r["n"], k)
                computed = not _is_missing_number(r["alpha"]) and not hidden
                n_missing += 0 if computed else 1
                note = clean(r["note"]) if not _is_missing_number(r["note"]) else ""
                if hidden and not note:
                    note = f"fewer than {k} complete responses: not shown"
                rows.append({"timepoint": pretty(r["timepoint"]), "n": fmt_count(r["n"], k),
                             "alpha": fmt_number(r["alpha"], 2) if computed else DASH,
                             "ci": fmt_ci(r["conf_low"], r["conf_high"], 2) if computed else DASH,
                             "note": note, "computed": computed})
            scales.append({"scale": str(scale), "label": str(s["label"].iloc[0]),
                           "n_items": fmt_count(s["n_items"].iloc[0]), "rows": rows})
        groups.append({"instrument": str(inst), "name": instrument_names.get(str(inst), str(inst)),
                       "scales": scales})
    return {"groups": groups, "n_not_computed": n_missing}


def _methods_section(comparison: Any, redact: _Redactor | None) -> dict:
    text = str(comparison.methods or "")
    return {"text": redact(text) if redact is not None else text}


def _primary_tile(results: dict) -> dict | None:
    for outcome in results["outcomes"]:
        if not outcome["primary"]:
            continue
        for row in outcome["rows"]:
            if row["model"] != MODEL_PRIMARY:
                continue
            if not row["estimated"]:
                return {"label": f"Primary outcome: {outcome['label']}", "value": "not estimated",
                        "detail": "; ".join(row["notes"]) or None}
            return {"label": f"Primary outcome: {results['treatment'].lower()} \u2212 {results['control'].lower()}",
                    "value": row["estimate"],
                    "detail": f"{outcome['outcome']}, 95% CI {row['ci']}, p {row['p_value']}"}
    return None


def add_comparison_sections(context: dict, comparison: Any, *, suppress_below: int = 0,
                            labels: Mapping[str, str] | None = None,
                            participant_ids: Iterable[Any] | None = None) -> None:
    """Add the arm-comparison sections to a study report context (in place).

    Parameters
    ----------
    context : a context from ``cpeval.report.build_study_context``.
    comparison : a ``cpeval.compare.Comparison`` (``compare_arms``).
    suppress_below : k; participant counts from 1 to k-1 are shown as "<k". The larger of this and the context's
        own ``meta["suppress_below"]`` is used, so a report prepared for sharing never shows a small count.
    labels : score column -> display label; default: the labels of the context's score distributions section,
        else the column name.
    participant_ids : the data's participant identifiers, to scan model notes for them (they are replaced by
        "[participant id]" as elsewhere in the report). The ``Comparison`` itself holds none.

    Adds sections ``flow``, ``baseline``, ``results``, ``reliability`` and ``methods`` (in this order, before the
    provenance section when there is one, else at the end) and an "At a glance" tile with the primary result.
    """
    k = sections_k(context, suppress_below)
    score_labels, declared = _score_info(context)
    score_labels.update(labels or {})
    redact = _Redactor(participant_ids) if participant_ids is not None else None

    flow = _flow_section(comparison, k, score_labels)
    baseline = _baseline_section(comparison, k, score_labels, declared)
    results = _results_section(comparison, k, score_labels, declared, redact)
    reliability = _reliability_section(comparison, k, _instrument_names(context), redact)
    methods = _methods_section(comparison, redact)

    d = comparison.plan.design
    for data in (flow, baseline, results, reliability, methods):
        data["suppress_below"] = k  # the legends say what was suppressed here (may exceed the context's k)
    add_sections_before_provenance(context, [
        ("flow", "Participant flow (CONSORT for cluster trials)", flow),
        ("baseline", "Baseline characteristics by arm", baseline),
        ("results", f"Results: {pretty(d.treatment).lower()} versus {pretty(d.control).lower()}", results),
        ("reliability", "Reliability of the scales (Cronbach\u2019s alpha)", reliability),
        ("methods", "Methods text for a paper", methods),
    ])
    tile = _primary_tile(results)
    if tile is not None:
        context.setdefault("summary", []).append(tile)
