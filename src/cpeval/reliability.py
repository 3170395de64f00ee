"""Internal consistency of the scored questionnaires: Cronbach's alpha with a Feldt confidence interval.

``cronbach_alpha(items)`` is the statistic for one block of item columns; ``reliability_table(data, instruments,
design)`` applies it to every multi-item scale of every scored instrument at every time point, reading the items
exactly as the scoring engine does (same valid values, same reverse-scoring, same item transform).

Alpha itself comes from ``pingouin.cronbach_alpha`` (tested by its authors against R psych). cpeval deletes
incomplete rows itself before calling it, and computes the Feldt interval itself, because pingouin 0.7

- takes the number of respondents for the interval's degrees of freedom *before* its listwise deletion (so with
  gaps the interval is too narrow; R psych::alpha does the same with ``use = "complete.obs"``), and
- rounds the interval to 3 decimals.

The interval is the same formula as pingouin's and psych's ``alpha.ci``; tests/test_reliability.py checks alpha and
both bounds against R psych 2.2.9 (``psych::alpha(x)$total$raw_alpha`` and ``$feldt``) on data sets made by
tests/r/alpha_reference.R.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pingouin
from scipy import stats

from cpeval.errors import CpevalError
from cpeval.instruments import Instrument, Scale
from cpeval.plan import Design
from cpeval.scoring import validated_items

__all__ = ["cronbach_alpha", "feldt_interval", "reliability_table", "RELIABILITY_COLUMNS",
           "MIN_RESPONSES", "ALPHA_RULES"]

# Fewer complete responses than this: no alpha (a row with a note instead).
MIN_RESPONSES = 3
# Scale rules whose score is built from item answers, so that alpha describes it.
ALPHA_RULES = ("sum", "mean", "prorated_sum", "count")

RELIABILITY_COLUMNS = ["instrument", "scale", "label", "timepoint", "n_items", "n", "alpha", "conf_low", "conf_high",
                       "note"]


def cronbach_alpha(items: pd.DataFrame, *, conf_level: float = 0.95) -> dict:
    """Cronbach's alpha of the item columns, after listwise deletion, with a Feldt confidence interval.

    .. math::

        \\alpha = \\frac{k}{k-1}\\left(1 - \\frac{\\sum_i s_i^2}{s_X^2}\\right)

    with :math:`k` items, item variances :math:`s_i^2` and the variance :math:`s_X^2` of the total score, over the
    :math:`n` rows with every item answered. The Feldt et al. (1987) interval at level :math:`1-\\gamma`:

    .. math::

        [\\,1 - (1-\\alpha)\\,F_{1-\\gamma/2}(n-1, (n-1)(k-1)),\\;
           1 - (1-\\alpha)\\,F_{\\gamma/2}(n-1, (n-1)(k-1))\\,]

    Parameters
    ----------
    items : DataFrame
        One column per item, one row per respondent; numeric (missing values allowed: such rows are left out).
    conf_level : float
        Confidence level of the interval, between 0 and 1.

    Returns
    -------
    dict
        ``alpha, conf_low, conf_high`` (floats, NaN when not computable), ``n`` (complete rows used), ``n_items``,
        ``note`` ("" or why alpha is NaN: fewer than 3 complete rows, or no variance).

    Raises
    ------
    CpevalError
        Fewer than 2 item columns, a non-numeric column, or a confidence level outside (0, 1).

    References
    ----------
    Cronbach LJ (1951). Coefficient alpha and the internal structure of tests. Psychometrika 16:297-334.
    Feldt LS, Woodruff DJ, Salih FA (1987). Statistical inference for coefficient alpha. Appl Psychol Meas 11:93-103.

    Examples
    --------
    >>> import pandas as pd
    >>> x = pd.DataFrame({"a": [1, 2, 3, 4, 5], "b": [2, 2, 3, 5, 5], "c": [1, 3, 3, 4, 4]})
    >>> round(cronbach_alpha(x)["alpha"], 4)  # R: psych::alpha(x)$total$raw_alpha
    0.9538
    """
    if not isinstance(items, pd.DataFrame):
        raise CpevalError(f"items is a {type(items).__name__}; expected a DataFrame with one column per item")
    if isinstance(conf_level, bool) or not isinstance(conf_level, (int, float)) or not 0 < conf_level < 1:
        raise CpevalError(f"conf_level is {conf_level!r}; expected a number between 0 and 1, e.g. 0.95")
    k = items.shape[1]
    if k < 2:
        raise CpevalError(f"items has {k} column(s) ({', '.join(map(str, items.columns)) or 'none'}); expected at "
                          "least 2 item columns for Cronbach's alpha")
    for column in items.columns:
        series = items[column]
        if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            raise CpevalError(f"item column '{column}' holds {series.dtype} values; expected numbers")
    x = items.astype("float64").dropna(axis=0, how="any")
    n = len(x)
    result = dict(alpha=np.nan, conf_low=np.nan, conf_high=np.nan, n=n, n_items=k, note="")
    if n < MIN_RESPONSES:
        answered = bool(items.notna().to_numpy().any())
        result["note"] = (f"fewer than {MIN_RESPONSES} complete responses (n = {n})" if answered
                          else "no item answered (no responses at all)")
        return result
    variances = x.var(axis=0, ddof=1).to_numpy()
    total_variance = x.sum(axis=1).var(ddof=1)
    if np.all(variances <= 0) or not total_variance > 1e-12 * max(1.0, variances.sum()):
        result["note"] = ("every item has the same answer in every complete response (zero variance)"
                          if np.all(variances <= 0) else "the total score has zero variance")
        return result
    alpha, _rounded_ci = pingouin.cronbach_alpha(data=x.reset_index(drop=True), nan_policy="listwise",
                                                ci=conf_level)
    low, high = feldt_interval(float(alpha), n, k, conf_level)
    result.update(alpha=float(alpha), conf_low=low, conf_high=high)
    return result


def feldt_interval(alpha: float, n: int, k: int, conf_level: float = 0.95) -> tuple[float, float]:
    """Feldt et al. (1987) confidence interval for alpha from n respondents and k items (unrounded)."""
    df1, df2 = n - 1, (n - 1) * (k - 1)
    gamma = 1 - conf_level
    low = 1 - (1 - alpha) * stats.f.ppf(1 - gamma / 2, df1, df2)
    high = 1 - (1 - alpha) * stats.f.ppf(gamma / 2, df1, df2)
    return float(low), float(high)


# ------------------------------------------------------------------------------------------------------------------
# Every scale of every instrument
# ------------------------------------------------------------------------------------------------------------------


def _scale_items(inst: Instrument, scale: Scale, data: pd.DataFrame) -> tuple[pd.DataFrame | None, list[str]]:
    """The item values a scale's score is built from (reversed, transformed), or None and the absent columns."""
    items = [inst.item(i) for i in scale.items]
    values = validated_items(data, inst)  # read exactly as the scoring engine reads them
    absent = [item.column for item in items if values[item.id] is None]
    if absent:
        return None, absent
    block = {}
    for item in items:
        x = values[item.id]
        if scale.rule == "count":
            # the score counts answers in count_codes: each item contributes 1 or 0 (alpha is then KR-20)
            x = np.where(np.isnan(x), np.nan, np.isin(x, scale.count_codes).astype(float))
        elif scale.item_transform == "pomp":
            x = (x - item.response.lowest) / (item.response.highest - item.response.lowest) * 100.0
        block[item.column] = x
    return pd.DataFrame(block, index=data.index), []


def _alpha_scales(inst: Instrument) -> list[Scale]:
    return [s for s in inst.scales if s.rule in ALPHA_RULES and not s.scales and len(s.items) >= 2]


def _instruments(instruments, data: pd.DataFrame) -> list[Instrument]:
    if instruments is None:
        from cpeval.instruments import load_instruments
        instruments = load_instruments()
    if isinstance(instruments, Instrument):
        return [instruments]
    if isinstance(instruments, Mapping):
        # a registry (load_instruments()): the instruments with items in the data, as the scoring step chooses them
        from cpeval.scoring import select_instruments
        return select_instruments(data.columns, instruments)
    chosen = list(instruments)
    bad = [i for i in chosen if not isinstance(i, Instrument)]
    if bad:
        raise CpevalError(f"instruments holds {bad[0]!r}; expected Instrument objects "
                          "(from cpeval.instruments.load_instruments())")
    return chosen


def _timepoints(data: pd.DataFrame, design: Design) -> list:
    present = pd.unique(data[design.timepoint].dropna())
    first = [t for t in design.timepoints if t in set(present)]
    rest = sorted((t for t in present if t not in set(design.timepoints)), key=str)
    return first + rest


def reliability_table(data: pd.DataFrame, instruments=None, design: Design | None = None, *,
                      conf_level: float = 0.95) -> pd.DataFrame:
    """Cronbach's alpha of every multi-item scale of each instrument, at each time point.

    Parameters
    ----------
    data : DataFrame
        The scored long table (one row per participant and time point) with the item columns.
    instruments : list of Instrument, or a mapping id -> Instrument, or None
        The scored instruments (``PipelineResult.instruments``); a mapping (``load_instruments()``) or None means
        every instrument whose items are in the data.
    design : Design
        Which column holds the time point (and the order of time points). None: cpeval's standard names.
    conf_level : float
        Level of the Feldt interval.

    Returns
    -------
    DataFrame with columns ``RELIABILITY_COLUMNS``:
        instrument  instrument id (e.g. ``wemwbs``)
        scale       the score column (e.g. ``wemwbs_total``)
        label       the scale's label
        timepoint   time point value (the plan's baseline and follow-up first, then any others)
        n_items     items in the scale
        n           rows at this time point with every item answered (listwise deletion)
        alpha, conf_low, conf_high   Cronbach's alpha and its Feldt interval (NaN when not computable)
        note        "" or why alpha is missing (fewer than 3 complete responses, zero variance, absent columns)

    Scales included: rules sum, mean, prorated_sum and count over at least two items (not composites of other
    scales, lookups, value sets or bands). The items are read as the scoring engine reads them: values outside
    the response range, missing codes and non-whole numbers are missing; items with ``reverse: true`` are
    reverse-scored (lowest + highest - value); items taken from another instrument's column (SWEMWBS from WEMWBS)
    read that column; a scale with ``item_transform: pomp`` uses the 0-100 rescaled items its score uses; a count
    scale uses 1/0 for "answer in count_codes" (so alpha is KR-20). Alpha does not depend on reverse-scoring a
    whole scale, but it does when only some of its items are reversed (SCOPE overall).
    """
    design = design if design is not None else Design()
    if not isinstance(design, Design):
        raise CpevalError(f"design is a {type(design).__name__}; expected a cpeval.plan.Design (a plan's .design)")
    if not isinstance(data, pd.DataFrame):
        raise CpevalError(f"data is a {type(data).__name__}; expected a DataFrame (the scored long table)")
    if design.timepoint not in data.columns:
        raise CpevalError(f"column '{design.timepoint}' (the plan's time point column) is not in the data; expected "
                          f"a column with {design.baseline!r} / {design.follow_up!r}")
    rows = []
    timepoints = _timepoints(data, design)
    by_time = {t: data[data[design.timepoint] == t] for t in timepoints}
    for inst in _instruments(instruments, data):
        for scale in _alpha_scales(inst):
            for t in timepoints:
                part = by_time[t]
                row = dict(instrument=inst.id, scale=scale.column, label=scale.label, timepoint=t,
                           n_items=len(scale.items))
                block, absent = _scale_items(inst, scale, part)
                if block is None:
                    row.update(n=0, alpha=np.nan, conf_low=np.nan, conf_high=np.nan,
                               note="item column(s) absent: " + ", ".join(absent))
                else:
                    res = cronbach_alpha(block, conf_level=conf_level)
                    row.update({k: res[k] for k in ("n", "alpha", "conf_low", "conf_high", "note")})
                rows.append(row)
    out = pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)
    out["n"] = out["n"].astype("int64")
    out["n_items"] = out["n_items"].astype("int64")
    for c in ("alpha", "conf_low", "conf_high"):
        out[c] = out[c].astype("float64")
    return out
