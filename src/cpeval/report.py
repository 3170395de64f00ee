"""The HTML study report: gather scoring results into one context, render it with Jinja2, write one file.

Three layers, each usable on its own:

1. Table functions (``study_structure``, ``structure_totals``, ``completeness``, ``scale_summary``,
   ``qa_summary``, ``score_distributions``, ``score_categories``) take the scored data and the study ``Design`` and return tidy
   DataFrames with fixed column names: every number in the report comes from one of them, so it can be
   reproduced in a notebook.
2. ``build_study_context`` turns those tables into a plain, JSON-serialisable dict: report metadata plus an
   ordered list of sections, each ``{"id", "title", "template", "data"}``. Numbers are formatted and small counts
   suppressed here, never in a template.
3. ``render_study_report`` renders ``study_report.html.j2`` (which extends ``base.html.j2`` and includes each
   section's partial from ``sections/``); ``write_report`` writes the file.

Later analyses add a section by appending to ``context["sections"]`` with ``add_section`` and shipping a partial
``sections/<id>.html.j2`` that reads ``section.data``.

Privacy: no participant identifier and no source row is ever put into the context. Free text that comes from
other stages (import log lines, QA ``expected``/``action`` text, scale notes) is scanned for participant
identifiers, which are replaced by ``[participant id]``; file paths in the import log and the source name are
reduced to file names (no private folder names, and the same bytes wherever the files were). With ``suppress_below=k`` every count of participants
or rows from 1 to k-1 is shown as ``<k``, percentages built on such a count are not shown, and the statistics
of a group with fewer than k values are not shown (in the table or the figure).
"""

from __future__ import annotations

import datetime as _dt
import io
import math
import platform
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from cpeval.errors import CpevalError
from cpeval.plan import Design
from cpeval.resources import templates_dir

__all__ = [
    "study_structure",
    "structure_totals",
    "completeness",
    "scale_summary",
    "qa_summary",
    "score_distributions",
    "score_categories",
    "is_categorical_score",
    "distribution_figure_svg",
    "build_study_context",
    "add_section",
    "render_study_report",
    "write_report",
]

MISSING_LABEL = "(missing)"
ALL_ARMS_LABEL = "All arms"
REDACTED = "[participant id]"
UNVERIFIED_TEXT = "unverified default, overridable"
DASH = "\u2014"  # shown for "not applicable / not available / not shown"

# One colour and marker per arm (treatment, control, then any others); readable in greyscale via the marker.
_ARM_STYLES = [("#1f4e79", "o"), ("#c55a11", "s"), ("#5b7d2a", "^"), ("#6d4c8c", "D"), ("#666666", "v")]


# ----------------------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------------------


def _natural_key(text: str) -> tuple:
    """Sort key that puts 'Team 2' before 'Team 10'."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", text))


def _label(value: Any) -> str:
    """Display label of a design value: missing -> '(missing)', 3.0 -> '3'."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return MISSING_LABEL
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _labels(series: pd.Series) -> pd.Series:
    return pd.Series([_label(v) for v in series.astype(object)], index=series.index, dtype=object)


def _ordered(values: Iterable[str], preferred: Sequence[str]) -> list[str]:
    """Preferred values first (those present), then the rest in natural order, '(missing)' last."""
    present = list(dict.fromkeys(values))
    first = [v for v in preferred if v in present]
    rest = sorted((v for v in present if v not in first and v != MISSING_LABEL), key=_natural_key)
    tail = [MISSING_LABEL] if MISSING_LABEL in present and MISSING_LABEL not in first else []
    return first + rest + tail


def pretty(value: str) -> str:
    """'follow_up' -> 'Follow-up', 'control' -> 'Control': a design value as a heading."""
    text = str(value).replace("_", " ").strip()
    text = re.sub(r"\b([Ff]ollow) ?(up)\b", r"\1-\2", text)
    return text[:1].upper() + text[1:] if text else text


def _item_columns(items: Mapping[str, Sequence[str]] | Iterable[str] | None) -> list[str]:
    if items is None:
        return []
    if isinstance(items, Mapping):
        return list(dict.fromkeys(c for cols in items.values() for c in cols))
    return list(dict.fromkeys(items))


def _require_columns(data: pd.DataFrame, design: Design) -> None:
    for role, column in (("participant", design.participant), ("cluster", design.cluster),
                         ("arm", design.arm), ("timepoint", design.timepoint)):
        if column not in data.columns:
            raise CpevalError(
                f"scored data: design column '{column}' ({role}) not found; expected a column named '{column}' "
                f"as set in the plan (columns present: {', '.join(map(str, list(data.columns)[:12]))}"
                f"{', ...' if data.shape[1] > 12 else ''})"
            )


def _site_column(data: pd.DataFrame, design: Design) -> str | None:
    return design.site if design.site and design.site in data.columns else None


def _design_frame(data: pd.DataFrame, design: Design, item_columns: Sequence[str]) -> pd.DataFrame:
    """One row per data row: participant key, trust, team, arm, time point labels and 'has any item'."""
    _require_columns(data, design)
    site = _site_column(data, design)
    pid = data[design.participant].astype(object)
    missing_pid = pid.isna().to_numpy()
    keys = [f"\x00row{i}" if miss else f"id:{v}" for i, (v, miss) in enumerate(zip(pid, missing_pid))]
    present = [c for c in item_columns if c in data.columns]
    has_data = data[present].notna().any(axis=1) if present else pd.Series(False, index=data.index)
    return pd.DataFrame(
        {
            "pid": keys,
            "trust": _labels(data[site]) if site else MISSING_LABEL,
            "team": _labels(data[design.cluster]),
            "arm": _labels(data[design.arm]),
            "timepoint": _labels(data[design.timepoint]),
            "has_data": has_data.to_numpy(dtype=bool),
        },
        index=data.index,
    )


def _timepoint_order(frame: pd.DataFrame, design: Design) -> list[str]:
    return _ordered(frame["timepoint"], design.timepoints)


def _arm_order(frame: pd.DataFrame, design: Design) -> list[str]:
    return _ordered(frame["arm"], design.arms)


def _tp_column(tp: str) -> str:
    return f"n_{tp}"


# ----------------------------------------------------------------------------------------------------------
# table functions (tidy DataFrames, usable from a notebook)
# ----------------------------------------------------------------------------------------------------------


def study_structure(data: pd.DataFrame, design: Design,
                    items: Mapping[str, Sequence[str]] | Iterable[str]) -> pd.DataFrame:
    """Teams (clusters) with their trust and arm, and how many participants each has.

    Parameters
    ----------
    data : long scored data, one row per participant x time point.
    design : the study design (column names and the values for arms and time points).
    items : item columns, as ``ScoringResult.items`` (instrument -> item columns) or a flat list.

    Returns
    -------
    DataFrame, one row per team, columns ``trust`` (only when the design has a site column present in the
    data), ``team``, ``arm``, ``recruited`` and one column ``n_<timepoint>`` per time point, in time order
    (``attrs["timepoints"]`` lists them).

    ``recruited`` = distinct participants with at least one row in the data for the team;
    ``n_<timepoint>`` = distinct participants with at least one non-missing item of any instrument at that
    time point. A team recorded with more than one arm shows them joined by " / ". Missing team, trust or arm
    values are kept and shown as "(missing)".
    """
    frame = _design_frame(data, design, _item_columns(items))
    site = _site_column(data, design)
    tps = _timepoint_order(frame, design)
    arms = _arm_order(frame, design)
    keys = ["trust", "team"] if site else ["team"]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        team_arms = [a for a in arms if a in set(group["arm"])]
        row = dict(zip(keys, key))
        row["arm"] = " / ".join(team_arms)
        row["recruited"] = group["pid"].nunique()
        for tp in tps:
            sel = group[(group["timepoint"] == tp) & group["has_data"]]
            row[_tp_column(tp)] = sel["pid"].nunique()
        row["_sort"] = ((_natural_key(row["trust"]) if site else ()),
                        min(arms.index(a) for a in team_arms), _natural_key(row["team"]))
        rows.append(row)
    rows.sort(key=lambda r: r.pop("_sort"))
    columns = keys + ["arm", "recruited"] + [_tp_column(tp) for tp in tps]
    out = pd.DataFrame(rows, columns=columns)
    for c in ["recruited"] + [_tp_column(tp) for tp in tps]:
        out[c] = out[c].astype("int64")
    out.attrs["timepoints"] = tps
    return out


def structure_totals(data: pd.DataFrame, design: Design,
                     items: Mapping[str, Sequence[str]] | Iterable[str]) -> pd.DataFrame:
    """Totals per arm and overall: trusts, teams, participants recruited and with data at each time point.

    Returns one row per arm (treatment first) and a last row ``arm == "All arms"``, columns ``arm``,
    ``n_trusts`` (missing when the data has no trust column), ``n_teams``, ``recruited`` and ``n_<timepoint>``.
    Participants are counted once each (distinct participant ids), with the same definitions as
    ``study_structure``.
    """
    frame = _design_frame(data, design, _item_columns(items))
    site = _site_column(data, design)
    tps = _timepoint_order(frame, design)
    arms = _arm_order(frame, design)
    rows = []
    for arm in arms + [ALL_ARMS_LABEL]:
        group = frame if arm == ALL_ARMS_LABEL else frame[frame["arm"] == arm]
        row: dict[str, Any] = {"arm": arm}
        real_trusts = group.loc[group["trust"] != MISSING_LABEL, "trust"]
        row["n_trusts"] = real_trusts.nunique() if site else np.nan
        row["n_teams"] = len(group[["trust", "team"]].drop_duplicates())
        row["recruited"] = group["pid"].nunique()
        for tp in tps:
            row[_tp_column(tp)] = group.loc[(group["timepoint"] == tp) & group["has_data"], "pid"].nunique()
        rows.append(row)
    out = pd.DataFrame(rows, columns=["arm", "n_trusts", "n_teams", "recruited"] + [_tp_column(tp) for tp in tps])
    out.attrs["timepoints"] = tps
    return out


def _instrument_order(scales: pd.DataFrame, items: Mapping[str, Sequence[str]]) -> list[str]:
    order = list(dict.fromkeys(str(i) for i in scales.get("instrument", pd.Series(dtype=object))))
    return order + [i for i in items if i not in order]


def _instrument_names(scales: pd.DataFrame) -> dict[str, str]:
    names: dict[str, str] = {}
    if "instrument" in scales.columns:
        for _, r in scales.iterrows():
            name = r.get("instrument_name")
            names.setdefault(str(r["instrument"]), str(name) if _present(name) else str(r["instrument"]))
    return names


def _present(value: Any) -> bool:
    if value is None or value is pd.NA:
        return False
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return False
    return not (isinstance(value, str) and value.strip() == "")


def _scales_frame(scales: pd.DataFrame | None) -> pd.DataFrame:
    if scales is None:
        return pd.DataFrame(columns=["instrument", "scale", "column"])
    return scales.reset_index(drop=True)


def completeness(scoring: Any, design: Design) -> pd.DataFrame:
    """Completeness per instrument, score and time point.

    Returns one row per instrument x scale x time point, columns ``instrument``, ``instrument_name``, ``scale``,
    ``column`` (the score column), ``label``, ``timepoint``, ``n_with_data`` (participants with at least one
    non-missing item of any instrument at that time point), ``n_answered`` (participants with at least one
    non-missing item of this instrument), ``n_scored`` (participants whose score is not missing) and
    ``pct_scored`` = 100 x n_scored / n_with_data (missing when n_with_data is 0). An instrument with items
    but no scale gets rows with ``scale`` missing.
    """
    data: pd.DataFrame = scoring.data
    items: Mapping[str, Sequence[str]] = dict(getattr(scoring, "items", {}) or {})
    scales = _scales_frame(getattr(scoring, "scales", None))
    frame = _design_frame(data, design, _item_columns(items))
    tps = _timepoint_order(frame, design)
    names = _instrument_names(scales)
    rows = []
    for inst in _instrument_order(scales, items):
        cols = [c for c in items.get(inst, []) if c in data.columns]
        answered = data[cols].notna().any(axis=1) if cols else pd.Series(False, index=data.index)
        inst_scales = scales[scales["instrument"].astype(str) == inst] if len(scales) else scales
        scale_rows = [r for _, r in inst_scales.iterrows()] or [None]
        for tp in tps:
            at_tp = frame["timepoint"] == tp
            n_with_data = frame.loc[at_tp & frame["has_data"], "pid"].nunique()
            n_answered = frame.loc[at_tp & answered.to_numpy(dtype=bool), "pid"].nunique()
            for srow in scale_rows:
                column = str(srow["column"]) if srow is not None else None
                if column is not None and column in data.columns:
                    n_scored = frame.loc[at_tp & data[column].notna().to_numpy(dtype=bool), "pid"].nunique()
                else:
                    n_scored = 0 if column is not None else np.nan
                rows.append({
                    "instrument": inst,
                    "instrument_name": names.get(inst, inst),
                    "scale": None if srow is None else str(srow["scale"]),
                    "column": column,
                    "label": None if srow is None else _text(srow.get("label"), default=str(srow["scale"])),
                    "timepoint": tp,
                    "n_with_data": n_with_data,
                    "n_answered": n_answered,
                    "n_scored": n_scored,
                    "pct_scored": (100.0 * n_scored / n_with_data) if n_with_data and not pd.isna(n_scored)
                    else np.nan,
                })
    columns = ["instrument", "instrument_name", "scale", "column", "label", "timepoint", "n_with_data",
               "n_answered", "n_scored", "pct_scored"]
    return pd.DataFrame(rows, columns=columns)


def _text(value: Any, default: str = "") -> str:
    return str(value) if _present(value) else default


def _is_verified(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "yes", "1", "verified"}
    if isinstance(value, (int, np.integer)):
        return bool(value)
    return False


def scale_summary(scales: pd.DataFrame) -> pd.DataFrame:
    """The scales table with ``verified`` as a strict bool and ``pct_prorated`` = 100 x n_prorated / n_scored.

    One row per scale scored, in the scoring engine's order; columns as ``ScoringResult.scales`` plus
    ``pct_prorated``. A ``verified`` value that is missing or not clearly true counts as unverified.
    """
    out = _scales_frame(scales).copy()
    for col in ("instrument_name", "label", "rule", "output_min", "output_max", "n_rows", "n_scored", "n_complete",
                "n_prorated", "n_not_scored", "value_set", "verified", "notes"):
        if col not in out.columns:
            out[col] = np.nan
    out["verified"] = [_is_verified(v) for v in out["verified"]]
    scored = pd.to_numeric(out["n_scored"], errors="coerce")
    prorated = pd.to_numeric(out["n_prorated"], errors="coerce")
    out["pct_prorated"] = np.where(scored > 0, 100.0 * prorated / scored.where(scored > 0), np.nan)
    return out


def _variable_instruments(items: Mapping[str, Sequence[str]], scales: pd.DataFrame) -> dict[str, str]:
    """Variable -> instrument. An item listed by several instruments (SWEMWBS uses WEMWBS items) belongs to the
    instrument whose id prefixes its name, else to the first instrument listing it."""
    lookup: dict[str, str] = {}
    for inst, cols in items.items():
        for c in cols:
            if c not in lookup or (c.startswith(f"{inst}_") and not c.startswith(f"{lookup[c]}_")):
                lookup[c] = inst
    if len(scales) and "column" in scales.columns:
        for _, r in scales.iterrows():
            lookup.setdefault(str(r["column"]), str(r["instrument"]))
    return lookup


def qa_summary(qa: pd.DataFrame, items: Mapping[str, Sequence[str]] | None = None,
               scales: pd.DataFrame | None = None) -> pd.DataFrame:
    """Values flagged in QA, counted by instrument, variable and reason (never listing participants or rows).

    Returns columns ``instrument`` (from the item lists or score columns; otherwise the prefix before the first
    underscore when that is a known instrument; otherwise "(not an instrument item)"), ``variable``, ``reason``,
    ``expected`` and ``action`` (distinct texts joined by "; "), and ``n`` (number of QA records).
    """
    items = dict(items or {})
    scales = _scales_frame(scales)
    columns = ["instrument", "variable", "reason", "expected", "action", "n"]
    if qa is None or len(qa) == 0:
        return pd.DataFrame(columns=columns)
    lookup = _variable_instruments(items, scales)
    known = set(items) | set(lookup.values())
    order = _instrument_order(scales, items)

    def instrument_of(variable: str) -> str:
        if variable in lookup:
            return lookup[variable]
        prefix = variable.split("_", 1)[0]
        return prefix if prefix in known else "(not an instrument item)"

    frame = pd.DataFrame({
        "variable": [_text(v, MISSING_LABEL) for v in qa["variable"].astype(object)],
        "reason": [_text(v, MISSING_LABEL) for v in qa["reason"].astype(object)],
        "expected": [_text(v) for v in qa.get("expected", pd.Series([None] * len(qa))).astype(object)],
        "action": [_text(v) for v in qa.get("action", pd.Series([None] * len(qa))).astype(object)],
    })
    frame["instrument"] = [instrument_of(v) for v in frame["variable"]]
    rows = []
    for (inst, var, reason), g in frame.groupby(["instrument", "variable", "reason"], sort=False):
        rows.append({
            "instrument": inst, "variable": var, "reason": reason,
            "expected": "; ".join(dict.fromkeys(t for t in g["expected"] if t)),
            "action": "; ".join(dict.fromkeys(t for t in g["action"] if t)),
            "n": len(g),
        })
    rank = {inst: i for i, inst in enumerate(order)}
    rows.sort(key=lambda r: (rank.get(r["instrument"], len(rank)), _natural_key(r["instrument"]),
                             _natural_key(r["variable"]), r["reason"]))
    return pd.DataFrame(rows, columns=columns)


def is_categorical_score(values: pd.Series) -> bool:
    """Whether a score column holds categories (e.g. a band) rather than numbers.

    Categorical dtype, or any non-missing value that is not a number.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(values.dtype):
        return True
    if pd.api.types.is_numeric_dtype(values.dtype):
        return False
    present = values.dropna()
    return bool(len(present)) and bool(pd.to_numeric(present, errors="coerce").isna().any())


def _score_columns(data: pd.DataFrame, scales: pd.DataFrame, *,
                   categorical: bool = False) -> list[tuple[str, pd.Series]]:
    """(score column, its scales row) for each numeric (or, with categorical=True, categorical) score column in
    the data, in the scales table's order, first occurrence only."""
    out, seen = [], set()
    for _, r in scales.iterrows():
        col = str(r["column"])
        if col in data.columns and col not in seen and is_categorical_score(data[col]) == categorical:
            seen.add(col)
            out.append((col, r))
    return out


def _categories(values: pd.Series) -> list[str]:
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = [_label(c) for c in values.cat.categories]
        present = set(_labels(values.dropna()))
        return cats + sorted(present - set(cats), key=_natural_key)
    return sorted(set(_labels(values.dropna())), key=_natural_key)


def score_categories(data: pd.DataFrame, scales: pd.DataFrame, design: Design) -> pd.DataFrame:
    """Frequencies of each categorical score (e.g. a screening band) by time point and arm.

    Returns one row per score column x time point x arm x category (categories in the column's category order,
    else natural order), columns ``column``, ``label``, ``instrument``, ``timepoint``, ``arm``, ``category``,
    ``n`` (rows in the category), ``n_total`` (rows with any category) and ``pct`` = 100 x n / n_total.
    """
    scales = _scales_frame(scales)
    frame = _design_frame(data, design, [])
    tps = _timepoint_order(frame, design)
    arms = _arm_order(frame, design)
    rows = []
    for col, srow in _score_columns(data, scales, categorical=True):
        cats = _categories(data[col])
        labels = pd.Series([None if pd.isna(v) else _label(v) for v in data[col].astype(object)], index=data.index)
        for tp in tps:
            for arm in arms:
                mask = ((frame["timepoint"] == tp) & (frame["arm"] == arm)).to_numpy()
                present = labels[mask].dropna()
                for cat in cats:
                    n = int((present == cat).sum())
                    rows.append({"column": col, "label": _text(srow.get("label"), default=col),
                                 "instrument": str(srow["instrument"]), "timepoint": tp, "arm": arm,
                                 "category": cat, "n": n, "n_total": len(present),
                                 "pct": 100.0 * n / len(present) if len(present) else np.nan})
    columns = ["column", "label", "instrument", "timepoint", "arm", "category", "n", "n_total", "pct"]
    return pd.DataFrame(rows, columns=columns)


def score_distributions(data: pd.DataFrame, scales: pd.DataFrame, design: Design) -> pd.DataFrame:
    """Distribution of each numeric score by time point and arm (categorical scores: ``score_categories``).

    Returns one row per score column x time point x arm (time points in time order, treatment arm first), with
    columns ``column``, ``label``, ``instrument``, ``timepoint``, ``arm``, ``n`` (non-missing values), ``mean``,
    ``sd`` (sample SD, n - 1 denominator), ``median``, ``q1``, ``q3`` (quartiles by linear interpolation,
    numpy's default and R's type 7), ``min``, ``max``, ``ci_low``, ``ci_high`` (95% CI of the mean,
    mean +/- t(0.975, n - 1) x SD / sqrt(n), ignoring clustering by team: descriptive only).
    Statistics that need more values than there are (SD and CI with n < 2; everything with n = 0) are missing.
    """
    from scipy import stats

    scales = _scales_frame(scales)
    frame = _design_frame(data, design, [])
    tps = _timepoint_order(frame, design)
    arms = _arm_order(frame, design)
    rows = []
    for col, srow in _score_columns(data, scales):
        values = pd.to_numeric(data[col], errors="coerce")
        for tp in tps:
            for arm in arms:
                mask = ((frame["timepoint"] == tp) & (frame["arm"] == arm)).to_numpy()
                x = values[mask].dropna().to_numpy(dtype=float)
                n = len(x)
                row = {"column": col, "label": _text(srow.get("label"), default=col),
                       "instrument": str(srow["instrument"]), "timepoint": tp, "arm": arm, "n": n}
                if n:
                    mean = float(np.mean(x))
                    sd = float(np.std(x, ddof=1)) if n > 1 else np.nan
                    q1, med, q3 = (float(v) for v in np.quantile(x, [0.25, 0.5, 0.75]))
                    half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else np.nan
                    row.update(mean=mean, sd=sd, median=med, q1=q1, q3=q3, min=float(x.min()), max=float(x.max()),
                               ci_low=mean - half, ci_high=mean + half)
                rows.append(row)
    columns = ["column", "label", "instrument", "timepoint", "arm", "n", "mean", "sd", "median", "q1", "q3", "min",
               "max", "ci_low", "ci_high"]
    out = pd.DataFrame(rows, columns=columns)
    for c in columns[6:]:
        out[c] = out[c].astype(float)
    return out


# ----------------------------------------------------------------------------------------------------------
# formatting (numbers become display strings here; templates only place them)
# ----------------------------------------------------------------------------------------------------------


def _is_missing_number(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and math.isnan(value))


def _suppressed(n: Any, k: int) -> bool:
    return not _is_missing_number(n) and k > 1 and 0 < int(n) < k


def fmt_count(n: Any, suppress_below: int = 0) -> str:
    """A count as text: '1,234'; missing -> '—'; 1..k-1 -> '<k' when suppressing below k."""
    if _is_missing_number(n):
        return DASH
    n = int(n)
    if _suppressed(n, suppress_below):
        return f"<{suppress_below}"
    return f"{n:,}"


def fmt_pct(numerator: Any, denominator: Any, suppress_below: int = 0) -> str:
    """A percentage with one decimal; '—' when undefined or when either count is suppressed."""
    if _is_missing_number(denominator) or _is_missing_number(numerator) or int(denominator) == 0:
        return DASH
    if _suppressed(numerator, suppress_below) or _suppressed(denominator, suppress_below):
        return DASH
    return f"{100.0 * numerator / denominator:.1f}"


def fmt_number(value: Any, decimals: int) -> str:
    """A statistic with a fixed number of decimals; missing -> '—'."""
    if _is_missing_number(value):
        return DASH
    text = f"{float(value):.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text  # no "-0.0"


def score_decimals(output_min: Any, output_max: Any, values: Iterable[float] = ()) -> int:
    """Decimals for means and SDs of a score: 3 for a span up to 2 (e.g. EQ-5D index), 2 up to 40, else 1.

    The span is the scale's output range, or the observed range when the output range is unknown.
    """
    lo = pd.to_numeric(pd.Series([output_min]), errors="coerce").iloc[0]
    hi = pd.to_numeric(pd.Series([output_max]), errors="coerce").iloc[0]
    if pd.isna(lo) or pd.isna(hi):
        arr = np.asarray([v for v in values if not _is_missing_number(v)], dtype=float)
        if arr.size == 0:
            return 2
        lo, hi = float(arr.min()), float(arr.max())
    span = float(hi) - float(lo)
    return 3 if span <= 2 else 2 if span <= 40 else 1


def _fmt_bound(value: Any) -> str:
    if _is_missing_number(value):
        return "?"
    try:
        f = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(f)) if f.is_integer() else f"{f:g}"


def fmt_range(lo: Any, hi: Any) -> str:
    if _is_missing_number(lo) and _is_missing_number(hi):
        return DASH
    return f"{_fmt_bound(lo)} to {_fmt_bound(hi)}"


_PATH = re.compile(
    r"""(?<![\w.])(?:[A-Za-z]:[\\/]|~[\\/]|\.{1,2}[\\/]|/)?(?:[^\s\\/()'"<>]+[\\/])+([^\s\\/()'"<>,;:]+)"""
)


def strip_folders(text: str) -> str:
    """Replace file paths in a log line by their file names: '/home/me/study/x.sav' -> 'x.sav'.

    A token counts as a path when it is absolute ('/', '~/', 'C:\\'), relative with './' or '../', or has a
    folder part and a file extension; '3/14' is left alone. Keeps private folder names out of the report and
    makes the report bytes independent of where the files were.
    """
    def repl(match: re.Match) -> str:
        token, name = match.group(0), match.group(1)
        rooted = bool(re.match(r"([A-Za-z]:[\\/]|~[\\/]|\.{1,2}[\\/]|/)", token))
        return name if rooted or re.search(r"\.[A-Za-z]\w{0,7}$", name) else token

    return _PATH.sub(repl, text)


class _Redactor:
    """Replaces participant identifiers in free text (ids with at least 3 characters and one non-digit)."""

    def __init__(self, ids: Iterable[Any]):
        tokens = sorted({str(i).strip() for i in ids if _present(i)}, key=len, reverse=True)
        tokens = [t for t in tokens if len(t) >= 3 and not t.isdigit()]
        self._pattern = (re.compile(r"(?<![\w-])(?:" + "|".join(map(re.escape, tokens)) + r")(?![\w-])")
                         if tokens else None)
        self.count = 0

    def __call__(self, text: Any) -> str:
        text = _text(text)
        if self._pattern is None or not text:
            return text
        new, n = self._pattern.subn(REDACTED, text)
        self.count += n
        return new


# ----------------------------------------------------------------------------------------------------------
# figure
# ----------------------------------------------------------------------------------------------------------


def _wrap_title(text: str, width: int) -> str:
    """At most two lines of at most ``width`` characters; longer text ends with an ellipsis."""
    import textwrap

    lines = textwrap.wrap(str(text), width) or [""]
    if len(lines) > 2:
        lines = [lines[0], textwrap.shorten(" ".join(lines[1:]), width, placeholder="\u2026")]
    return "\n".join(lines)


def _mpl_text(text: str) -> str:
    """Text for matplotlib without mathtext: a '$' is shown as a dollar sign."""
    return str(text).replace("$", r"\$")


_NUMBER = re.compile(r"-?\d+\.\d{3,}")


def _round2(match: re.Match) -> str:
    text = f"{float(match.group(0)):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


FIGURE_RC = {  # the report's figure style: plain text in the SVG, one font, light axes
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.edgecolor": "#555555",
    "axes.labelcolor": "#222222",
    "xtick.color": "#333333",
    "ytick.color": "#333333",
    "text.usetex": False,
    "path.simplify": True,
}


def figure_rc(figure_id: str, **overrides) -> dict:
    """matplotlib rc settings for a report figure: FIGURE_RC plus a hash salt from the figure id (so the SVG's ids
    are the same on every run) and any overrides."""
    return {"svg.hashsalt": f"cpeval-{figure_id}", **FIGURE_RC, **overrides}


def figure_svg(fig, figure_id: str, label: str, *, unclip: bool = False) -> str:
    """A matplotlib figure as deterministic inline SVG: no date or creator metadata, ids prefixed by ``figure_id``,
    an accessible ``label``; ``unclip`` turns clipping off (for figures whose artists all lie inside the axes
    limits), so the SVG needs no clip paths and hence no ``url(#...)`` references."""
    if unclip:
        for artist in fig.findobj():
            artist.set_clip_on(False)
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return _clean_svg(buf.getvalue(), figure_id, label)


def _clean_svg(svg: str, prefix: str, label: str) -> str:
    """Make matplotlib's SVG fit inline in HTML: no XML prolog, no namespace URLs, ids unique to the figure."""
    svg = re.sub(r"^.*?(?=<svg\b)", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = svg.replace("xlink:href=", "href=")
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}-{m.group(1)}"', svg)
    # coordinates to 1/100 pt inside tags (text between tags untouched): smaller, and visually identical
    svg = re.sub(r"<[^>]+>", lambda tag: _NUMBER.sub(_round2, tag.group(0)), svg)
    label = label.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="figure-svg" ', 1)
    return svg.strip()


def distribution_figure_svg(dist: pd.DataFrame, *, suppress_below: int = 0,
                            figure_id: str = "fig-scores") -> str:
    """Means with 95% CIs by arm at each time point, one small panel per score, as inline SVG text.

    ``dist`` is the output of ``score_distributions``. Groups with fewer than ``suppress_below`` values are left
    out. The output is deterministic: Agg backend, fixed ``svg.hashsalt``, no date or creator metadata, and no
    clip paths (so no ``url(...)`` references). Returns "" when there is nothing to draw.
    """
    import matplotlib
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = list(dict.fromkeys(dist["column"]))
    if not columns or not (dist["n"] > 0).any():
        return ""
    tps = list(dict.fromkeys(dist["timepoint"]))
    arms = list(dict.fromkeys(dist["arm"]))
    styles = {arm: _ARM_STYLES[min(i, len(_ARM_STYLES) - 1)] for i, arm in enumerate(arms)}
    ncols = min(3 if len(columns) <= 9 else 4, len(columns))
    nrows = math.ceil(len(columns) / ncols)
    offsets = np.linspace(-0.08, 0.08, len(arms)) if len(arms) > 1 else np.zeros(1)
    rc = figure_rc(figure_id, **{"axes.titlesize": 9})
    with matplotlib.rc_context(rc):
        # A Figure outside pyplot on an Agg canvas: no global backend switch, nothing left open afterwards.
        fig = Figure(figsize=(3.1 * ncols, 2.45 * nrows + 0.45))
        FigureCanvasAgg(fig)
        axes = fig.subplots(nrows, ncols, squeeze=False)
        try:
            for ax in axes.flat[len(columns):]:
                ax.set_visible(False)
            for ax, col in zip(axes.flat, columns):
                sub = dist[dist["column"] == col]
                for j, arm in enumerate(arms):
                    colour, marker = styles[arm]
                    xs, ys, lo, hi = [], [], [], []
                    for i, tp in enumerate(tps):
                        cell = sub[(sub["timepoint"] == tp) & (sub["arm"] == arm)]
                        if cell.empty or cell["n"].iloc[0] == 0 or _suppressed(cell["n"].iloc[0], suppress_below):
                            continue
                        r = cell.iloc[0]
                        xs.append(i + offsets[j])
                        ys.append(r["mean"])
                        lo.append(r["mean"] - r["ci_low"] if not pd.isna(r["ci_low"]) else 0.0)
                        hi.append(r["ci_high"] - r["mean"] if not pd.isna(r["ci_high"]) else 0.0)
                    if not xs:
                        continue
                    ax.errorbar(xs, ys, yerr=[lo, hi], color=colour, marker=marker, markersize=4.5, linewidth=1.2,
                                capsize=3, elinewidth=1, clip_on=False, label=_mpl_text(pretty(arm)))
                ax.set_xticks(range(len(tps)), [_mpl_text(pretty(tp)) for tp in tps])
                ax.set_xlim(-0.5, len(tps) - 0.5)
                label = sub["label"].iloc[0]
                ax.set_title(_mpl_text(_wrap_title(label, 34 if ncols == 4 else 44)), loc="left")
                ax.set_ylabel("Mean (95% CI)")
                ax.grid(axis="y", color="#dddddd", linewidth=0.6, clip_on=False)
                ax.set_axisbelow(True)
                ax.margins(y=0.15)
            handles, labels = [], []
            for ax in axes.flat[: len(columns)]:
                for h, lab in zip(*ax.get_legend_handles_labels()):
                    if lab not in labels:
                        handles.append(h)
                        labels.append(lab)
            if handles:
                fig.legend(handles, labels, loc="upper center", ncol=len(labels), frameon=False,
                           bbox_to_anchor=(0.5, 1.0))
            fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (2.45 * nrows + 0.45)))
            svg = figure_svg(fig, figure_id, "Mean score with 95% confidence interval by arm at each time point, "
                                             "one panel per score")
        finally:
            fig.clear()
    return svg


# ----------------------------------------------------------------------------------------------------------
# context
# ----------------------------------------------------------------------------------------------------------


def check_suppress_below(suppress_below: Any) -> int:
    """The report option suppress_below (k) as an int; anything but a whole number >= 0 is a user error."""
    if isinstance(suppress_below, bool) or not isinstance(suppress_below, (int, np.integer)) or suppress_below < 0:
        raise CpevalError(f"report option suppress_below is {suppress_below!r}; expected a whole number >= 0")
    return int(suppress_below)


def sections_k(context: Mapping, suppress_below: Any) -> int:
    """k for sections added to an existing context: the larger of the option and the context's own setting, so a
    report prepared for sharing never shows a small count."""
    return max(check_suppress_below(suppress_below), int(context.get("meta", {}).get("suppress_below", 0) or 0))


def add_sections_before_provenance(context: dict, sections: Iterable[tuple[str, str, dict]]) -> None:
    """Add (id, title, data) sections in order before the provenance section (at the end when there is none)."""
    ids = [s["id"] for s in context["sections"]]
    position = ids.index("provenance") if "provenance" in ids else len(ids)
    for offset, (section_id, title, data) in enumerate(sections):
        add_section(context, section_id, title, data, position=position + offset)


def add_section(context: dict, section_id: str, title: str, data: dict, *, template: str | None = None,
                position: int | None = None) -> dict:
    """Add a section to a report context (in place) and return the context.

    The section is rendered by ``template`` (default ``sections/<section_id>.html.j2``), which reads
    ``section.data``. ``position`` inserts it at that index; default: at the end.
    """
    if any(s["id"] == section_id for s in context["sections"]):
        raise ValueError(f"report section '{section_id}' is already in the context")
    section = {"id": section_id, "title": title, "template": template or f"sections/{section_id}.html.j2",
               "data": data}
    if position is None:
        context["sections"].append(section)
    else:
        context["sections"].insert(position, section)
    return context


def _versions() -> list[dict[str, str]]:
    import jinja2
    import matplotlib

    from cpeval import __version__

    return [
        {"name": "cpeval", "version": __version__},
        {"name": "Python", "version": platform.python_version()},
        {"name": "pandas", "version": pd.__version__},
        {"name": "NumPy", "version": np.__version__},
        {"name": "matplotlib", "version": matplotlib.__version__},
        {"name": "Jinja2", "version": jinja2.__version__},
    ]


def _file_name(path: Any) -> str:
    text = str(path)
    return re.split(r"[\\/]", text.rstrip("\\/"))[-1] or text


def _generated_text(generated: Any) -> str:
    if generated is None:
        return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(generated, _dt.datetime):
        if generated.tzinfo is not None:
            return generated.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        return generated.strftime("%Y-%m-%d %H:%M")
    return str(generated)


def _structure_section(data: pd.DataFrame, design: Design, items: Mapping[str, Sequence[str]], k: int) -> dict:
    teams = study_structure(data, design, items)
    totals = structure_totals(data, design, items)
    tps = teams.attrs["timepoints"]
    site = _site_column(data, design)
    notes = []
    if design.site and not site:
        notes.append(f"The plan names '{design.site}' as the trust column, but the data has no such column: "
                     "trusts are not shown.")
    mixed = teams[teams["arm"].str.contains(" / ", regex=False)]
    if len(mixed):
        notes.append(f"{len(mixed)} team(s) have participants recorded in more than one arm; "
                     "they are listed with every arm recorded.")
    all_row = totals[totals["arm"] == ALL_ARMS_LABEL].iloc[0]
    if teams["recruited"].sum() != all_row["recruited"]:
        notes.append("Some participants are recorded in more than one team, so team counts add up to more than "
                     "the total.")
    if (teams["team"] == MISSING_LABEL).any():
        notes.append("Rows with no team recorded are shown as a team called \u201c(missing)\u201d.")
    first_of_trust = ~teams["trust"].duplicated() if site else pd.Series(True, index=teams.index)
    trust_sizes = teams.groupby("trust", sort=False).size() if site else None
    team_rows = []
    for idx, r in teams.iterrows():
        team_rows.append({
            "trust": r["trust"] if site else None,
            "trust_rowspan": int(trust_sizes[r["trust"]]) if site and first_of_trust[idx] else 0,
            "team": r["team"],
            "arm": " / ".join(pretty(a) for a in r["arm"].split(" / ")),
            "recruited": fmt_count(r["recruited"], k),
            "by_timepoint": [fmt_count(r[_tp_column(tp)], k) for tp in tps],
        })
    total_rows = []
    for _, r in totals.iterrows():
        is_all = r["arm"] == ALL_ARMS_LABEL
        total_rows.append({
            "label": "All teams" if is_all else f"{pretty(r['arm'])} teams",
            "is_all": bool(is_all),
            "n_trusts": fmt_count(r["n_trusts"]) if site else None,
            "n_teams": fmt_count(r["n_teams"]),
            "recruited": fmt_count(r["recruited"], k),
            "by_timepoint": [fmt_count(r[_tp_column(tp)], k) for tp in tps],
        })
    return {
        "has_trusts": bool(site),
        "timepoints": [{"value": tp, "label": pretty(tp)} for tp in tps],
        "teams": team_rows,
        "totals": total_rows,
        "notes": notes,
    }


def _quality_section(scoring: Any, design: Design, k: int, redact: _Redactor) -> dict:
    items = dict(getattr(scoring, "items", {}) or {})
    scales = scale_summary(getattr(scoring, "scales", None))
    comp = completeness(scoring, design)
    groups: list[dict] = []
    for inst, g in comp.groupby("instrument", sort=False):
        n_items = len(items.get(inst, []))
        rows = []
        previous_tp = None
        tp_sizes = g.groupby("timepoint", sort=False).size()
        for _, r in g.iterrows():
            first = r["timepoint"] != previous_tp
            previous_tp = r["timepoint"]
            rows.append({
                "timepoint": pretty(r["timepoint"]),
                "tp_rowspan": int(tp_sizes[r["timepoint"]]) if first else 0,
                "n_with_data": fmt_count(r["n_with_data"], k),
                "n_answered": fmt_count(r["n_answered"], k),
                "score": _text(r["label"], DASH),
                "column": _text(r["column"]),
                "n_scored": fmt_count(r["n_scored"], k),
                "pct_scored": fmt_pct(r["n_scored"], r["n_with_data"], k),
            })
        groups.append({"instrument": inst, "name": g["instrument_name"].iloc[0], "n_items": n_items, "rows": rows})

    rules, counts = [], []
    previous_instrument = None
    for _, r in scales.iterrows():
        label = _text(r["label"], default=_text(r.get("scale")))
        instrument = _text(r["instrument_name"], default=_text(r["instrument"]))
        rules.append({
            "instrument": instrument,
            "group": instrument if instrument != previous_instrument else None,  # first scale of an instrument
            "label": label,
            "column": _text(r["column"]),
            "rule": _text(r["rule"], DASH),
            "range": fmt_range(r["output_min"], r["output_max"]),
            "value_set": _text(r["value_set"], DASH),
            "verified": bool(r["verified"]),
            "notes": redact(r["notes"]),
        })
        previous_instrument = instrument
        counts.append({
            "label": label,
            "column": _text(r["column"]),
            "n_rows": fmt_count(r["n_rows"], k),
            "n_scored": fmt_count(r["n_scored"], k),
            "n_complete": fmt_count(r["n_complete"], k),
            "n_prorated": fmt_count(r["n_prorated"], k),
            "pct_prorated": fmt_pct(r["n_prorated"], r["n_scored"], k),
            "n_not_scored": fmt_count(r["n_not_scored"], k),
            "n_no_data": fmt_count(r["n_no_data"], k) if "n_no_data" in scales.columns else None,
        })
    qa = qa_summary(getattr(scoring, "qa", None), items, scales)
    names = _instrument_names(scales)
    qa_groups, qa_overview = [], []
    for inst, g in qa.groupby("instrument", sort=False):
        name = names.get(inst, inst)
        qa_groups.append({"instrument": inst, "name": name, "rows": [{
            "variable": r["variable"],
            "reason": r["reason"],
            "expected": redact(r["expected"]) or DASH,
            "action": redact(r["action"]) or DASH,
            "n": fmt_count(r["n"], k),
        } for _, r in g.iterrows()]})
        reasons = g.groupby("reason", sort=True).agg(n=("n", "sum"), n_variables=("variable", "nunique"))
        for i, (reason, r) in enumerate(reasons.iterrows()):
            qa_overview.append({"instrument": name, "rowspan": len(reasons) if i == 0 else 0, "reason": reason,
                                "n": fmt_count(r["n"], k), "n_variables": fmt_count(r["n_variables"])})
    by_reason = qa.groupby("reason", sort=True)["n"].sum() if len(qa) else pd.Series(dtype="int64")
    return {
        "completeness": groups,
        "rules": rules,
        "n_unverified": sum(1 for r in rules if not r["verified"]),
        "counts": counts,
        "has_no_data": "n_no_data" in scales.columns,
        "qa_groups": qa_groups,
        "qa_overview": qa_overview,
        "qa_n_rows": len(qa),
        "qa_open": len(qa) <= 25,
        "qa_total": fmt_count(int(qa["n"].sum()) if len(qa) else 0, k),
        "qa_by_reason": [{"reason": reason, "n": fmt_count(n, k)} for reason, n in by_reason.items()],
    }


def _distribution_section(data: pd.DataFrame, scales: pd.DataFrame, design: Design, k: int) -> dict:
    scales = _scales_frame(scales)
    dist = score_distributions(data, scales, design)
    decimals: dict[str, int] = {}
    ranges: dict[str, str] = {}
    integer_valued: dict[str, bool] = {}
    labels: dict[str, str] = {}
    for col, srow in _score_columns(data, scales):
        labels[col] = _text(srow.get("label"), default=col)
        values = pd.to_numeric(data[col], errors="coerce").dropna()
        decimals[col] = score_decimals(srow.get("output_min"), srow.get("output_max"), values)
        ranges[col] = fmt_range(srow.get("output_min"), srow.get("output_max"))
        integer_valued[col] = bool(len(values)) and bool(np.all(np.isclose(values, np.round(values))))
    scores = []
    for col, g in dist.groupby("column", sort=False):
        d = decimals[col]
        d_minmax = 0 if integer_valued[col] else d
        has_values = g.groupby("timepoint", sort=False)["n"].sum() > 0
        empty_tps = [pretty(tp) for tp, any_values in has_values.items() if not any_values]
        g = g[g["timepoint"].map(has_values)]
        rows = []
        tp_sizes = g.groupby("timepoint", sort=False).size()
        previous_tp = None
        for _, r in g.iterrows():
            first, previous_tp = r["timepoint"] != previous_tp, r["timepoint"]
            if _suppressed(r["n"], k):
                stats = dict.fromkeys(["mean", "sd", "median", "iqr", "min", "max"], DASH)
            else:
                stats = {
                    "mean": fmt_number(r["mean"], d),
                    "sd": fmt_number(r["sd"], d),
                    "median": fmt_number(r["median"], d),
                    "iqr": DASH if pd.isna(r["q1"]) else f"{fmt_number(r['q1'], d)} to {fmt_number(r['q3'], d)}",
                    "min": fmt_number(r["min"], d_minmax),
                    "max": fmt_number(r["max"], d_minmax),
                }
            rows.append({
                "timepoint": pretty(r["timepoint"]),
                "tp_rowspan": int(tp_sizes[r["timepoint"]]) if first else 0,
                "arm": pretty(r["arm"]),
                "n": fmt_count(r["n"], k),
                **stats,
            })
        scores.append({"column": col, "label": labels[col], "range": ranges[col], "decimals": d,
                       "rows": rows, "empty_timepoints": empty_tps})

    categorical = []
    cats = score_categories(data, scales, design)
    for col, g in cats.groupby("column", sort=False):
        categories = list(dict.fromkeys(g["category"]))
        rows = []
        cells = g.groupby(["timepoint", "arm"], sort=False)
        tp_sizes = g[["timepoint", "arm"]].drop_duplicates().groupby("timepoint", sort=False).size()
        previous_tp = None
        for (tp, arm), cell in cells:
            first, previous_tp = tp != previous_tp, tp
            n_total = int(cell["n_total"].iloc[0])
            rows.append({
                "timepoint": pretty(tp),
                "tp_rowspan": int(tp_sizes[tp]) if first else 0,
                "arm": pretty(arm),
                "n_total": fmt_count(n_total, k),
                "cells": [{"n": fmt_count(r["n"], k), "pct": fmt_pct(r["n"], n_total, k)}
                          for _, r in cell.iterrows()],
            })
        categorical.append({"column": col, "label": g["label"].iloc[0], "categories": categories, "rows": rows})
    svg = distribution_figure_svg(dist, suppress_below=k) if len(dist) else ""
    return {"scores": scores, "categorical": categorical, "figure_svg": Markup(svg), "has_figure": bool(svg)}


def _provenance_section(scoring: Any, design: Design, source_name: str, import_log: Iterable[str],
                        redact: _Redactor, k: int) -> dict:
    data: pd.DataFrame = scoring.data
    items = dict(getattr(scoring, "items", {}) or {})
    scales = _scales_frame(getattr(scoring, "scales", None))
    names = _instrument_names(scales)
    return {
        "import_log": [redact(strip_folders(str(line))) for line in import_log],
        "source_name": source_name,
        "n_rows": fmt_count(len(data)),
        "n_columns": fmt_count(data.shape[1]),
        "instruments": [names.get(i, i) for i in _instrument_order(scales, items)],
        "n_scales": fmt_count(len(scales)),
        "design": [
            {"role": "Participant identifier", "column": design.participant},
            {"role": "Team (cluster)", "column": design.cluster},
            {"role": "Trust (site)", "column": design.site or DASH},
            {"role": "Arm", "column": f"{design.arm} (treatment: {design.treatment}; control: {design.control})"},
            {"role": "Time point",
             "column": f"{design.timepoint} (baseline: {design.baseline}; follow-up: {design.follow_up})"},
        ],
        "versions": _versions(),
        "suppress_below": k,
    }


def build_study_context(scoring: Any, design: Design, *, source_name: str, import_log: Iterable[str] = (),
                        generated: str | _dt.datetime | None = None, suppress_below: int = 0) -> dict:
    """Everything the study report shows, as a plain dict (formatted text, lists of dicts; no DataFrames).

    Parameters
    ----------
    scoring : a ``ScoringResult`` (``data``, ``qa``, ``scales``, ``items``).
    design : the study design from the plan.
    source_name : the source file; only its name is shown (a folder path is dropped).
    import_log : lines from the reader saying what was read and reshaped.
    generated : the timestamp shown in the header; default: the current UTC time. Pass a fixed value to get
        byte-identical reports from the same inputs.
    suppress_below : k; counts from 1 to k-1 are shown as "<k" (0 or 1: nothing suppressed).

    Returns
    -------
    ``{"meta": {...}, "summary": [{"label", "value"}], "sections": [{"id", "title", "template", "data"}]}``.
    """
    k = check_suppress_below(suppress_below)
    data: pd.DataFrame = scoring.data
    _require_columns(data, design)
    items = dict(getattr(scoring, "items", {}) or {})
    scales = _scales_frame(getattr(scoring, "scales", None))
    redact = _Redactor(data[design.participant])

    from cpeval import __version__

    structure = _structure_section(data, design, items, k)
    quality = _quality_section(scoring, design, k, redact)
    distributions = _distribution_section(data, scales, design, k)
    source_name = _file_name(source_name)  # a file name, never a private folder
    provenance = _provenance_section(scoring, design, source_name, import_log, redact, k)
    provenance["n_redacted"] = redact.count

    totals = structure_totals(data, design, items)
    tps = totals.attrs["timepoints"]
    arm_rows = totals[totals["arm"] != ALL_ARMS_LABEL]
    all_row = totals[totals["arm"] == ALL_ARMS_LABEL].iloc[0]

    def per_arm(column: str, suppress: bool) -> str:
        parts = [f"{fmt_count(r[column], k if suppress else 0)} {pretty(r['arm']).lower()}" for _, r in
                 arm_rows.iterrows()]
        return ", ".join(parts)

    summary = []
    if structure["has_trusts"]:
        summary.append({"label": "Trusts", "value": fmt_count(all_row["n_trusts"]), "detail": None})
    summary.append({"label": "Teams", "value": f"{fmt_count(all_row['n_teams'])}",
                    "detail": per_arm("n_teams", False)})
    summary.append({"label": "Participants recruited", "value": fmt_count(all_row["recruited"], k),
                    "detail": per_arm("recruited", True)})
    for tp in tps:
        summary.append({"label": f"With data at {pretty(tp).lower()}", "value": fmt_count(all_row[_tp_column(tp)], k),
                        "detail": per_arm(_tp_column(tp), True)})
    summary.append({"label": "Scores computed", "value": fmt_count(len(quality["rules"])),
                    "detail": f"{quality['n_unverified']} with an unverified default rule"})
    summary.append({"label": "Values flagged in QA", "value": quality["qa_total"], "detail": "counted by variable and reason under Scoring quality"})

    context = {
        "meta": {
            "title": f"{design.study}: study report",
            "study": design.study,
            "source_name": source_name,
            "version": __version__,
            "generated": _generated_text(generated),
            "suppress_below": k,
        },
        "summary": summary,
        "sections": [],
    }
    add_section(context, "structure", "Study structure", structure)
    add_section(context, "scoring_quality", "Scoring quality", quality)
    add_section(context, "distributions", "Score distributions by arm and time point", distributions)
    add_section(context, "provenance", "Import log, methods and provenance", provenance)
    return context


# ----------------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------------


def _environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(
        loader=FileSystemLoader(str(templates_dir())),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_study_report(context: dict, template: str = "study_report.html.j2") -> str:
    """Render a context from ``build_study_context`` to one self-contained HTML page (inline CSS and SVG)."""
    env = _environment()
    return env.get_template(template).render(**context)


def write_report(html: str, path: str | Path) -> None:
    """Write the rendered report as UTF-8 (creating the folder if needed)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8", newline="\n")
    except OSError as exc:
        raise CpevalError(f"{path}: could not write the report ({exc.strerror or exc}); "
                          "expected a writable file path") from None
