"""Participant flow and baseline characteristics for a cluster (team-level) study.

Plain functions over the scored long table (one row per participant and time point) and the plan's ``Design``;
each returns tidy DataFrames with fixed columns (the ``*_COLUMNS`` lists below), for the report to render as they
are. What they report follows the CONSORT extension for cluster randomised trials (Campbell MK, Piaggio G,
Elbourne DR, Altman DG. BMJ 2012;345:e5661): teams (clusters) and participants per arm at each stage, losses for
both, and baseline characteristics at participant level and at team level.

- ``flow_counts(data, design, outcomes, covariates=...)``: teams and participants recruited, with data at baseline
  and at follow-up, analysed in the primary (ANCOVA) model per outcome, and losses per team.
- ``baseline_table(data, design, variables, categorical=...)``: "Table 1", by arm, with standardised mean
  differences (never p-values: CONSORT advises against significance tests of baseline differences).
- ``team_table(data, design)``: cluster-level characteristics (teams per arm, participants per team).

Definitions used throughout:

- recruited: the participant has at least one row in the data (any time point);
- has data at a time point: at least one of the outcome columns is non-missing in the participant's row at that
  time point (without outcomes, in ``team_table``: the participant has a row at that time point);
- missing: NaN/None, and for text columns a blank text too (SPSS stores a missing string as "");
- a team "has data" at a stage when at least one of its participants has;
- analysed for an outcome (primary ANCOVA model, follow-up ~ arm + baseline + covariates + (1 | team)): the outcome
  is non-missing at follow-up and at baseline, and every covariate has a value as at baseline: in the baseline
  row, or in the follow-up row where the baseline row has none (characteristics such as age and gender do not
  change between interviews; the same rule as ``cpeval.outcomes.ancova_frame``).

Errors a user can cause (a design column absent, an arm value the plan does not name, an arm with no participants,
a participant in two teams, a variable absent) raise ``CpevalError`` naming the column or value and what was
expected.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from cpeval.errors import CpevalError
from cpeval.plan import Design

__all__ = [
    "flow_counts",
    "baseline_table",
    "team_table",
    "smd_continuous",
    "smd_proportion",
    "smd_categorical",
    "FLOW_BY_ARM_COLUMNS",
    "FLOW_BY_TEAM_COLUMNS",
    "FLOW_ANALYSED_COLUMNS",
    "BASELINE_COLUMNS",
    "TEAM_COLUMNS",
    "SMD_NOTE",
]

# flow_counts()["by_arm"]: one row per arm (treatment first)
FLOW_BY_ARM_COLUMNS = [
    "arm",
    "teams_recruited", "participants_recruited",      # in the data at all
    "teams_baseline", "participants_baseline",        # with data at baseline
    "teams_follow_up", "participants_follow_up",      # with data at follow-up
    "teams_lost", "participants_lost",                # recruited minus with data at follow-up
    "percent_lost",                                   # 100 * participants_lost / participants_recruited
]
# flow_counts()["by_team"]: one row per team (arm order, then team)
FLOW_BY_TEAM_COLUMNS = ["arm", "team", "site", "recruited", "baseline", "follow_up", "lost", "percent_lost"]
# flow_counts()["analysed"]: one row per outcome and arm. The exclusions are counted in this order, so that
# recruited = missing_follow_up + missing_baseline + missing_covariates + analysed.
FLOW_ANALYSED_COLUMNS = [
    "outcome", "arm", "recruited",
    "missing_follow_up",    # outcome missing at follow-up (or no follow-up row)
    "missing_baseline",     # outcome present at follow-up, missing at baseline
    "missing_covariates",   # outcome at both, but some covariate missing (baseline row, else follow-up row)
    "analysed", "percent_analysed",
    "teams_recruited", "teams_analysed",
]
# baseline_table(): tidy long, one row per variable x level x arm (continuous variables have level None)
BASELINE_COLUMNS = [
    "variable", "kind", "level", "arm",
    "n",         # participants with a value (the denominator of percent)
    "missing",   # participants at the time point without a value
    "mean", "sd", "median", "q1", "q3", "min", "max",   # continuous only (NaN for categorical rows)
    "count", "percent",                                  # categorical only (NaN for continuous rows)
    "smd",           # this row's standardised difference, treatment minus control (signed)
    "smd_variable",  # one number per variable: continuous = smd; categorical = Yang & Dalton (>= 0)
]
# team_table(): arm summaries, a total, then one row per team
TEAM_COLUMNS = [
    "level",          # "arm", "total" or "team"
    "arm", "team", "site",
    "teams",          # number of teams (1 on team rows)
    "recruited", "recruited_mean", "recruited_min", "recruited_max",   # participants (per team: mean/min/max)
    "baseline", "baseline_mean", "baseline_min", "baseline_max",       # participants with data at baseline
]

SMD_NOTE = (
    "Standardised mean differences are treatment minus control. Continuous: difference in means divided by the "
    "square root of the average of the two arms' variances, sqrt((SD_t^2 + SD_c^2) / 2) (Austin 2009, Stat Med "
    "28:3083), unweighted by arm size, SDs with n - 1. Categorical, per level: (p_t - p_c) / "
    "sqrt((p_t(1 - p_t) + p_c(1 - p_c)) / 2); per variable: the multivariate SMD of Yang & Dalton (2012, SAS Global "
    "Forum paper 335), sqrt((T - C)' S^-1 (T - C)) over all levels but the first with S the average of the arms' "
    "multinomial covariance matrices (a generalised inverse when S is singular), which for two levels equals the "
    "absolute per-level SMD. Participant-level, ignoring clustering; no p-values (CONSORT)."
)

_ROLE_TEXT = {
    "participant": "the plan's participant column; expected a column identifying each participant",
    "cluster": "the plan's cluster (team) column; expected a column naming each participant's team",
    "arm": "the plan's arm column; expected a column with the arm of each participant",
    "timepoint": "the plan's time point column; expected a column with the time point of each row",
}


# ------------------------------------------------------------------------------------------------------------------
# Checks and the participant table
# ------------------------------------------------------------------------------------------------------------------


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _as_text(series: pd.Series) -> pd.Series:
    """Values as the plan writes them: 1.0 -> "1" (a plan's arm value 1 is read as the text "1")."""
    return series.map(_show).astype(object)


def _sorted(values: Iterable) -> list:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:
        return sorted(values, key=str)


def _present(frame: pd.DataFrame | pd.Series):
    """Non-missing values: not NaN/None, and for text not blank (SPSS writes a missing string as "")."""
    ok = frame.notna()
    if isinstance(frame, pd.Series):
        if not pd.api.types.is_numeric_dtype(frame) and not pd.api.types.is_bool_dtype(frame):
            ok &= frame.astype("string").str.strip().fillna("").ne("")
        return ok
    for column in frame.columns:
        ok[column] = _present(frame[column])
    return ok


def _check_frame(data: object) -> None:
    if not isinstance(data, pd.DataFrame):
        raise CpevalError(f"data is a {type(data).__name__}; expected a DataFrame (the scored long table)")


def _check_design(data: pd.DataFrame, design: Design, roles: Sequence[str]) -> None:
    """Design columns present and complete; arm values the plan's; both arms present; teams nested in arms."""
    _check_frame(data)
    if not isinstance(design, Design):
        raise CpevalError(f"design is a {type(design).__name__}; expected a cpeval.plan.Design (a plan's .design)")
    for role in roles:
        column = getattr(design, role)
        if column not in data.columns:
            raise CpevalError(f"column '{column}' is not in the data ({_ROLE_TEXT[role]})")
    for role in [r for r in roles if r != "timepoint"]:
        column = getattr(design, role)
        empty = ~_present(data[column]).to_numpy()
        if empty.any():
            where = int(np.flatnonzero(empty)[0])
            # the file's row number when the import kept it (as in QA records), else the table's (1-based)
            first = int(data["source_row"].iloc[where]) if "source_row" in data.columns else where + 1
            raise CpevalError(f"column '{column}' is missing in {int(empty.sum())} row(s) (first: row {first}); "
                              f"expected every row to have a value ({_ROLE_TEXT[role].split('; ')[0]})")
    arm = _as_text(data[design.arm]) if design.arm in data.columns else None
    if arm is not None:
        odd = ~arm.isin(design.arms)
        if odd.any():
            values = pd.unique(arm[odd])
            raise CpevalError(
                f"column '{design.arm}' has value {values[0]!r} in {int((arm == values[0]).sum())} row(s); expected "
                f"{design.treatment!r} (treatment) or {design.control!r} (control), as the plan's arm values say"
            )
        for value, role in ((design.treatment, "treatment"), (design.control, "control")):
            if not (arm == value).any():
                found = ", ".join(repr(v) for v in pd.unique(arm)) or "nothing"
                raise CpevalError(f"arm {value!r} (the plan's {role} arm) has no participants: column "
                                  f"'{design.arm}' holds {found}; expected participants in both arms")
    if "participant" in roles:
        _check_constant(data, design.participant, design.arm, "participant", "arm")
        if "cluster" in roles:
            _check_constant(data, design.participant, design.cluster, "participant", "team")
    if "cluster" in roles:
        # teams, not people, are allocated: each team belongs to one arm
        _check_constant(data, design.cluster, design.arm, "team", "arm")


def _check_constant(data: pd.DataFrame, key: str, column: str, what: str, of: str) -> None:
    counts = data.groupby(data[key], sort=False)[column].nunique(dropna=True)
    bad = counts[counts > 1]
    if len(bad):
        ident = bad.index[0]
        values = ", ".join(repr(_show(v)) for v in pd.unique(data.loc[data[key] == ident, column]))
        raise CpevalError(f"{what} {_show(ident)!s} (column '{key}') is in more than one {of} ({values} in column "
                          f"'{column}'); expected one {of} per {what}")


def _check_one_row(data: pd.DataFrame, design: Design, timepoints: Iterable) -> None:
    rows = data[data[design.timepoint].isin(list(timepoints))]
    dup = rows.duplicated(subset=[design.participant, design.timepoint], keep=False)
    if dup.any():
        first = rows[dup].iloc[0]
        n = int(((rows[design.participant] == first[design.participant])
                 & (rows[design.timepoint] == first[design.timepoint])).sum())
        raise CpevalError(f"participant {_show(first[design.participant])} has {n} rows at time point "
                          f"{first[design.timepoint]!r} (columns '{design.participant}', '{design.timepoint}'); "
                          "expected one row per participant and time point")


def _check_variables(data: pd.DataFrame, names: object, what: str, allow_empty: bool = False) -> list[str]:
    if isinstance(names, str):
        names = [names]
    if names is None:
        names = []
    names = list(dict.fromkeys(names))  # type: ignore[call-overload]  (a name given twice counts once)
    if not names and not allow_empty:
        raise CpevalError(f"{what}: none given; expected at least one column name")
    for name in names:
        if name not in data.columns:
            raise CpevalError(f"{what}: column '{name}' is not in the data; expected one of the data's columns "
                              "(a score column such as wemwbs_total, or a characteristic such as age)")
    return names


def _participants(data: pd.DataFrame, design: Design) -> pd.DataFrame:
    """One row per participant (in order of first appearance): arm, team, site."""
    first = data.drop_duplicates(subset=[design.participant], keep="first")
    site = (first[design.site].to_numpy() if design.site and design.site in data.columns
            else np.full(len(first), None, dtype=object))
    return pd.DataFrame({"arm": _as_text(first[design.arm]).to_numpy(),
                         "team": first[design.cluster].to_numpy(), "site": site},
                        index=pd.Index(first[design.participant].to_numpy(), name="participant"))


def _has_any(data: pd.DataFrame, design: Design, timepoint: str, columns: list[str] | None,
             index: pd.Index) -> pd.Series:
    """Per participant: a row at this time point with at least one of the columns non-missing (or any row)."""
    rows = data[data[design.timepoint] == timepoint]
    if columns is None:
        present = pd.Series(True, index=rows[design.participant].to_numpy())
    else:
        present = pd.Series(_present(rows[columns]).any(axis=1).to_numpy(), index=rows[design.participant].to_numpy())
    present = present.groupby(level=0).any()
    return present.reindex(index, fill_value=False).astype(bool)


def _team_order(teams: pd.Series) -> list:
    return _sorted(pd.unique(teams))


def _percent(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else np.nan


# ------------------------------------------------------------------------------------------------------------------
# Flow
# ------------------------------------------------------------------------------------------------------------------


def flow_counts(data: pd.DataFrame, design: Design, outcomes: list[str], *,
                covariates: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Teams and participants per arm at each stage of the study (CONSORT for cluster trials).

    Parameters
    ----------
    data : DataFrame
        Scored long table: one row per participant and time point, with the design columns.
    design : Design
        The plan's design (participant, cluster, arm and time point columns and values; site is optional).
    outcomes : list of str
        Outcome (score) columns. "Has data at a time point" means at least one of them is non-missing there;
        each gets its own rows in ``analysed``.
    covariates : list of str, optional
        Covariates of the primary model; a participant is analysed only if each has a value in the baseline row
        (or, where that is missing, in the follow-up row).

    Returns
    -------
    dict of DataFrames
        ``by_arm``    FLOW_BY_ARM_COLUMNS, one row per arm (treatment, control): teams and participants recruited,
                      with data at baseline, with data at follow-up, lost (recruited without follow-up data; a team
                      is lost when none of its participants has follow-up data) and percent of participants lost;
        ``by_team``   FLOW_BY_TEAM_COLUMNS, one row per team: participants recruited, with baseline data, with
                      follow-up data, lost (recruited - follow_up), percent lost; ``site`` when the plan names a site
                      column that is in the data, else None;
        ``analysed``  FLOW_ANALYSED_COLUMNS, per outcome and arm: participants excluded from the primary ANCOVA
                      model for, in this order, no outcome at follow-up, no outcome at baseline, a missing
                      covariate; the number analysed and the teams they come from.

    Examples
    --------
    >>> flow = flow_counts(scored, plan.design, ["rguk_total", "wemwbs_total"],
    ...                    covariates=["age", "gender"])  # doctest: +SKIP
    >>> flow["by_arm"]  # doctest: +SKIP
    """
    _check_design(data, design, ("participant", "cluster", "arm", "timepoint"))
    outcomes = _check_variables(data, outcomes, "outcomes")
    covariates = _check_variables(data, covariates, "covariates", allow_empty=True)
    _check_one_row(data, design, design.timepoints)

    people = _participants(data, design)
    idx = people.index
    people["baseline"] = _has_any(data, design, design.baseline, outcomes, idx).to_numpy()
    people["follow_up"] = _has_any(data, design, design.follow_up, outcomes, idx).to_numpy()

    by_arm = []
    for arm in design.arms:
        p = people[people["arm"] == arm]
        teams = p["team"].nunique()
        teams_fu = p.loc[p["follow_up"], "team"].nunique()
        lost = int((~p["follow_up"]).sum())
        by_arm.append(dict(
            arm=arm, teams_recruited=teams, participants_recruited=len(p),
            teams_baseline=p.loc[p["baseline"], "team"].nunique(), participants_baseline=int(p["baseline"].sum()),
            teams_follow_up=teams_fu, participants_follow_up=int(p["follow_up"].sum()),
            teams_lost=teams - teams_fu, participants_lost=lost, percent_lost=_percent(lost, len(p)),
        ))

    by_team = []
    for arm in design.arms:
        p = people[people["arm"] == arm]
        for team in _team_order(p["team"]):
            t = p[p["team"] == team]
            sites = [s for s in pd.unique(t["site"]) if s is not None and not pd.isna(s)]
            fu = int(t["follow_up"].sum())
            by_team.append(dict(arm=arm, team=team, site=", ".join(map(_show, sites)) if sites else None,
                                recruited=len(t), baseline=int(t["baseline"].sum()), follow_up=fu,
                                lost=len(t) - fu, percent_lost=_percent(len(t) - fu, len(t))))

    # a covariate as at baseline: the baseline row's value, else the follow-up row's (per covariate)
    covariates_ok = pd.Series(True, index=idx)
    for cov in covariates:
        covariates_ok &= (_has_any(data, design, design.baseline, [cov], idx)
                          | _has_any(data, design, design.follow_up, [cov], idx))
    analysed = []
    for outcome in outcomes:
        at_fu = _has_any(data, design, design.follow_up, [outcome], idx)
        at_bl = _has_any(data, design, design.baseline, [outcome], idx)
        for arm in design.arms:
            in_arm = (people["arm"] == arm).to_numpy()
            f, b, c = at_fu.to_numpy()[in_arm], at_bl.to_numpy()[in_arm], covariates_ok.to_numpy()[in_arm]
            ok = f & b & c
            teams = people["team"].to_numpy()[in_arm]
            analysed.append(dict(
                outcome=outcome, arm=arm, recruited=int(in_arm.sum()),
                missing_follow_up=int((~f).sum()), missing_baseline=int((f & ~b).sum()),
                missing_covariates=int((f & b & ~c).sum()), analysed=int(ok.sum()),
                percent_analysed=_percent(ok.sum(), in_arm.sum()),
                teams_recruited=len(pd.unique(teams)), teams_analysed=len(pd.unique(teams[ok])),
            ))

    return {
        "by_arm": _typed(pd.DataFrame(by_arm, columns=FLOW_BY_ARM_COLUMNS), floats=["percent_lost"]),
        "by_team": _typed(pd.DataFrame(by_team, columns=FLOW_BY_TEAM_COLUMNS), floats=["percent_lost"],
                          objects=["team", "site"]),
        "analysed": _typed(pd.DataFrame(analysed, columns=FLOW_ANALYSED_COLUMNS), floats=["percent_analysed"]),
    }


def _typed(frame: pd.DataFrame, floats: Iterable[str] = (), objects: Iterable[str] = (),
           texts: Iterable[str] = ("arm", "outcome", "variable", "kind", "level")) -> pd.DataFrame:
    """Fixed dtypes whatever the data: counts int64, rates float64, labels object."""
    floats, objects, texts = set(floats), set(objects), set(texts)
    for column in frame.columns:
        if column in floats:
            frame[column] = frame[column].astype("float64")
        elif column in objects or column in texts:
            values = frame[column].astype(object)
            frame[column] = values.where(values.notna(), None)  # missing labels are None, never NaN
        else:
            frame[column] = frame[column].astype("int64")
    return frame


# ------------------------------------------------------------------------------------------------------------------
# Standardised differences
# ------------------------------------------------------------------------------------------------------------------


def smd_continuous(mean_t: float, sd_t: float, mean_c: float, sd_c: float) -> float:
    """(mean_t - mean_c) / sqrt((sd_t^2 + sd_c^2) / 2); 0 when the means are equal, NaN when undefined."""
    diff = mean_t - mean_c
    pooled = np.sqrt((sd_t ** 2 + sd_c ** 2) / 2)
    if np.isnan(diff) or np.isnan(pooled):
        return np.nan
    if diff == 0:
        return 0.0
    return float(diff / pooled) if pooled > 0 else np.nan


def smd_proportion(p_t: float, p_c: float) -> float:
    """(p_t - p_c) / sqrt((p_t(1 - p_t) + p_c(1 - p_c)) / 2); 0 when equal, NaN when undefined."""
    diff = p_t - p_c
    pooled = np.sqrt((p_t * (1 - p_t) + p_c * (1 - p_c)) / 2)
    if np.isnan(diff):
        return np.nan
    if diff == 0:
        return 0.0
    return float(diff / pooled) if pooled > 0 else np.nan


def smd_categorical(p_t: Sequence[float], p_c: Sequence[float]) -> float:
    """Yang & Dalton (2012) multivariate SMD for a categorical variable, from each arm's level proportions.

    sqrt((T - C)' S^+ (T - C)) with T, C the proportions of levels 2..K and S = (S_T + S_C) / 2, where
    S_X[k, k] = p_k (1 - p_k) and S_X[k, l] = -p_k p_l; S^+ is the Moore-Penrose inverse (as R tableone uses a
    generalised inverse). Equals the absolute per-level SMD for two levels; does not depend on level order.
    """
    t = np.asarray(p_t, dtype=float)
    c = np.asarray(p_c, dtype=float)
    if t.shape != c.shape or np.isnan(t).any() or np.isnan(c).any():
        return np.nan
    if len(t) < 2:
        return 0.0
    t, c = t[1:], c[1:]
    diff = t - c
    if not np.any(np.abs(diff) > 1e-15):
        return 0.0
    s = (np.diag(t) - np.outer(t, t) + np.diag(c) - np.outer(c, c)) / 2
    value = float(diff @ np.linalg.pinv(s) @ diff)
    return float(np.sqrt(max(value, 0.0)))


# ------------------------------------------------------------------------------------------------------------------
# Table 1
# ------------------------------------------------------------------------------------------------------------------


def _levels(series: pd.Series) -> list:
    if isinstance(series.dtype, pd.CategoricalDtype):
        return list(series.cat.categories)
    return _sorted(pd.unique(series[_present(series).to_numpy()]))


def baseline_table(data: pd.DataFrame, design: Design, variables: list[str], *,
                   categorical: list[str] | None = None, timepoint: str | None = None) -> pd.DataFrame:
    """Participant characteristics at baseline by arm, with standardised differences ("Table 1").

    Parameters
    ----------
    data : DataFrame
        Scored long table (one row per participant and time point).
    design : Design
        The plan's design: participant, arm and time point columns and values.
    variables : list of str
        Columns to describe, in display order.
    categorical : list of str, optional
        Which of ``variables`` to describe as categories (e.g. a numeric code such as gender 1/2). Columns holding
        text, categories or booleans are categorical anyway; the others are continuous.
    timepoint : str, optional
        The time point to describe; default the plan's baseline.

    Returns
    -------
    DataFrame with columns ``BASELINE_COLUMNS``, tidy long: one row per variable x arm (continuous) or
    variable x level x arm (categorical), variables in the order given, levels in category order (pandas
    categories) or sorted, arms treatment first. ``level`` is None for continuous rows, else the level as text
    (a categorical variable with no value at all gets one row per arm with level None, n 0).

    - Participants: everyone with a row at the time point (so people never interviewed count as missing).
    - Continuous: ``n`` non-missing, ``missing``, ``mean``, ``sd`` (n - 1), ``median``, ``q1``, ``q3`` (linear
      interpolation, R type 7), ``min``, ``max``; ``count``/``percent`` NaN.
    - Categorical: ``count`` per level and ``percent`` = 100 * count / n, where ``n`` is the arm's participants
      with a value (missing shown in ``missing``, not as a level); ``mean`` .. ``max`` NaN.
    - ``smd``: treatment minus control (see ``SMD_NOTE``): continuous, difference in means over
      sqrt((SD_t^2 + SD_c^2) / 2); categorical, the per-level SMD for proportions. ``smd_variable``: the same number
      for a continuous variable; for a categorical one the Yang & Dalton multivariate SMD (>= 0), repeated on every
      row of the variable. Both are NaN when an arm has too few values (SD needs 2).
    """
    _check_design(data, design, ("participant", "arm", "timepoint"))
    variables = _check_variables(data, variables, "variables")
    categorical = _check_variables(data, categorical, "categorical", allow_empty=True)
    not_listed = [c for c in categorical if c not in variables]
    if not_listed:
        raise CpevalError(f"categorical: '{not_listed[0]}' is not one of the variables ({', '.join(variables)}); "
                          "expected the categorical variables to be listed in variables too")
    tp = design.baseline if timepoint is None else timepoint
    rows = data[data[design.timepoint] == tp]
    if rows.empty:
        found = ", ".join(repr(_show(v)) for v in pd.unique(data[design.timepoint].dropna())) or "nothing"
        raise CpevalError(f"no rows at time point {tp!r} in column '{design.timepoint}' (it holds {found}); "
                          "expected the baseline value named in the plan")
    _check_one_row(data, design, [tp])
    arm = _as_text(rows[design.arm])
    for value in design.arms:
        if not (arm == value).any():
            raise CpevalError(f"arm {value!r} has no participants at time point {tp!r} (column '{design.arm}'); "
                              "expected participants in both arms")

    out = []
    for var in variables:
        series = rows[var]
        is_cat = (var in categorical or isinstance(series.dtype, pd.CategoricalDtype)
                  or pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series))
        by_arm = {a: series[(arm == a).to_numpy()] for a in design.arms}
        if is_cat:
            out += _categorical_rows(var, series, by_arm, design)
        else:
            out += _continuous_rows(var, by_arm, design)
    frame = pd.DataFrame(out, columns=BASELINE_COLUMNS)
    return _typed(frame, floats=["mean", "sd", "median", "q1", "q3", "min", "max", "count", "percent", "smd",
                                 "smd_variable"])


def _continuous_rows(var: str, by_arm: dict[str, pd.Series], design: Design) -> list[dict]:
    stats = {}
    for a, s in by_arm.items():
        x = s.astype("float64").dropna()
        stats[a] = dict(
            n=len(x), missing=int(len(s) - len(x)),
            mean=x.mean() if len(x) else np.nan, sd=x.std(ddof=1) if len(x) > 1 else np.nan,
            median=x.median() if len(x) else np.nan,
            q1=x.quantile(0.25) if len(x) else np.nan, q3=x.quantile(0.75) if len(x) else np.nan,
            min=x.min() if len(x) else np.nan, max=x.max() if len(x) else np.nan,
        )
    t, c = stats[design.treatment], stats[design.control]
    smd = smd_continuous(t["mean"], t["sd"], c["mean"], c["sd"])
    return [dict(variable=var, kind="continuous", level=None, arm=a, count=np.nan, percent=np.nan, smd=smd,
                 smd_variable=smd, **stats[a]) for a in design.arms]


def _categorical_rows(var: str, series: pd.Series, by_arm: dict[str, pd.Series], design: Design) -> list[dict]:
    levels = _levels(series)
    counts = {}
    for a, s in by_arm.items():
        present = s[_present(s).to_numpy()]
        counts[a] = dict(n=len(present), missing=int(len(s) - len(present)),
                         counts=[int((present == level).sum()) for level in levels])

    def props(a: str) -> np.ndarray:
        n = counts[a]["n"]
        return np.array(counts[a]["counts"], dtype=float) / n if n else np.full(len(levels), np.nan)

    p_t, p_c = props(design.treatment), props(design.control)
    smd_var = smd_categorical(p_t, p_c) if levels else np.nan
    empty = dict(mean=np.nan, sd=np.nan, median=np.nan, q1=np.nan, q3=np.nan, min=np.nan, max=np.nan)
    if not levels:
        # no value at all: one row per arm (level None) so that the variable still shows, as all missing
        return [dict(variable=var, kind="categorical", level=None, arm=a, n=0, missing=counts[a]["missing"],
                     count=np.nan, percent=np.nan, smd=np.nan, smd_variable=np.nan, **empty) for a in design.arms]
    rows = []
    for i, level in enumerate(levels):
        smd = smd_proportion(p_t[i], p_c[i])
        for a in design.arms:
            n = counts[a]["n"]
            rows.append(dict(variable=var, kind="categorical", level=_show(level), arm=a, n=n,
                             missing=counts[a]["missing"], **empty, count=counts[a]["counts"][i],
                             percent=_percent(counts[a]["counts"][i], n), smd=smd, smd_variable=smd_var))
    return rows


# ------------------------------------------------------------------------------------------------------------------
# Teams
# ------------------------------------------------------------------------------------------------------------------


def team_table(data: pd.DataFrame, design: Design, *, outcomes: list[str] | None = None) -> pd.DataFrame:
    """Cluster-level characteristics: teams per arm and participants per team (recruited and at baseline).

    Parameters
    ----------
    data : DataFrame
        Scored long table.
    design : Design
        The plan's design.
    outcomes : list of str, optional
        As in ``flow_counts``: a participant is "at baseline" when one of these is non-missing in their baseline
        row. Without outcomes: when they have a baseline row at all (people never interviewed then count).

    Returns
    -------
    DataFrame with columns ``TEAM_COLUMNS``, rows in this order:

    - ``level == "arm"``: one per arm (treatment first): ``teams``, participants ``recruited`` and ``baseline``
      (sums over the arm's teams), and the mean, min and max per team of each; ``team``/``site`` None;
    - ``level == "total"``: the same over both arms (``arm`` None);
    - ``level == "team"``: one per team (arm order, then team): ``teams`` 1, its ``recruited`` and ``baseline``
      counts, ``site`` when the plan's site column is in the data; the per-team mean/min/max columns NaN.
    """
    _check_design(data, design, ("participant", "cluster", "arm", "timepoint"))
    outcomes = _check_variables(data, outcomes, "outcomes", allow_empty=True) or None
    _check_one_row(data, design, [design.baseline])
    people = _participants(data, design)
    people["baseline"] = _has_any(data, design, design.baseline, outcomes, people.index).to_numpy()

    teams = []
    for arm in design.arms:
        p = people[people["arm"] == arm]
        for team in _team_order(p["team"]):
            t = p[p["team"] == team]
            sites = [s for s in pd.unique(t["site"]) if s is not None and not pd.isna(s)]
            teams.append(dict(level="team", arm=arm, team=team, site=", ".join(map(_show, sites)) if sites else None,
                              teams=1, recruited=len(t), baseline=int(t["baseline"].sum())))
    team_frame = pd.DataFrame(teams)

    def summary(level: str, arm: str | None, part: pd.DataFrame) -> dict:
        row = dict(level=level, arm=arm, team=None, site=None, teams=len(part))
        for stage in ("recruited", "baseline"):
            row[stage] = int(part[stage].sum())
            row[f"{stage}_mean"] = float(part[stage].mean())
            row[f"{stage}_min"] = float(part[stage].min())
            row[f"{stage}_max"] = float(part[stage].max())
        return row

    rows = [summary("arm", arm, team_frame[team_frame["arm"] == arm]) for arm in design.arms]
    rows.append(summary("total", None, team_frame))
    rows += teams
    frame = pd.DataFrame(rows, columns=TEAM_COLUMNS)
    floats = [c for c in TEAM_COLUMNS if c.endswith(("_mean", "_min", "_max"))]
    return _typed(frame, floats=floats, objects=["level", "team", "site"])
