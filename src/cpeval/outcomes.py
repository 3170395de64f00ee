"""Comparing implementation and control teams on each outcome: mixed models with small-sample inference.

For each outcome of the plan:

- **primary (ANCOVA) model** — follow-up score ~ arm + baseline score + covariates + (1 | team), fitted by REML on
  the participants with both scores and all covariates (complete cases); the arm effect is the adjusted mean
  difference (implementation - control) with Satterthwaite df, t-based CI and p, as R lmerTest reports it;
- **longitudinal model** — score ~ arm x time + covariates + (1 | team) + (1 | participant) on every row with a
  score, so participants without follow-up still count; the arm x time term is the difference in change;
- **multiple-imputation sensitivity analysis** for the primary model — missing follow-up (and baseline, numeric
  covariates) imputed by chained equations with predictive mean matching (cpeval.imputation) separately within each
  arm, the model refitted on each completed data set and pooled with Rubin's rules (Barnard-Rubin df).

Results are tidy records with the same keys for every model and term (``RECORD_COLUMNS``). Problems that stop one
outcome (one team in an arm, no follow-up in an arm, a constant outcome) become a record with a note and no
estimate, so the other outcomes are still analysed; they never raise a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpeval.errors import CpevalError
from cpeval.imputation import add_team_mean, impute_columns, rubin_pool
from cpeval.mixed import fit_mixed
from cpeval.plan import Plan

RECORD_COLUMNS = [
    "outcome", "model", "term", "estimate", "std_error", "df", "df_method", "conf_low", "conf_high", "p_value",
    "n_participants", "n_clusters", "icc", "notes",
    # beyond the fixed keys: per-arm counts, the ICC's interval and the standardised effect
    "n_participants_treatment", "n_participants_control", "n_clusters_treatment", "n_clusters_control",
    "icc_conf_low", "icc_conf_high", "effect_size", "effect_size_sd", "imputations",
]

MODEL_PRIMARY = "primary"
MODEL_LONGITUDINAL = "longitudinal"
MODEL_IMPUTED = "multiple_imputation"
MODEL_DESCRIPTIONS = {
    MODEL_PRIMARY: "ANCOVA: follow-up ~ arm + baseline + covariates + (1 | team), complete cases",
    MODEL_LONGITUDINAL: "all time points: outcome ~ arm x time + covariates + (1 | team) + (1 | participant)",
    MODEL_IMPUTED: "sensitivity: the primary model after multiple imputation of missing data, Rubin's rules",
}


@dataclass
class OutcomeAnalysis:
    """Everything ``compare_outcomes`` found: tidy records plus notes that travel into the report."""

    records: pd.DataFrame
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------------------------
# Data preparation
# ----------------------------------------------------------------------------------------------------------------


def ancova_frame(data: pd.DataFrame, plan: Plan, outcome: str) -> pd.DataFrame:
    """One row per participant: follow-up and baseline score, arm, team, covariates (as at baseline).

    Columns: participant, cluster, arm (the plan's values), treated (1/0), y (follow-up), y0 (baseline), and the
    covariates. Covariates are taken from the baseline row, or from the follow-up row where baseline has none
    (age and gender do not change between interviews).
    """
    d = plan.design
    _require_columns(data, plan, [outcome])
    keep = [d.participant, d.cluster, d.arm, d.timepoint, outcome, *plan.covariates]
    frame = data[keep]
    base = frame[frame[d.timepoint] == d.baseline].drop_duplicates(d.participant).set_index(d.participant)
    follow = frame[frame[d.timepoint] == d.follow_up].drop_duplicates(d.participant).set_index(d.participant)
    people = frame.drop_duplicates(d.participant).set_index(d.participant)[[d.cluster, d.arm]]
    out = pd.DataFrame({
        "participant": people.index,
        "cluster": people[d.cluster].to_numpy(),
        "arm": people[d.arm].astype("string").to_numpy(),
    })
    out["treated"] = (out["arm"] == d.treatment).astype(float)
    out["y"] = follow[outcome].reindex(people.index).to_numpy(dtype=float, na_value=np.nan)
    out["y0"] = base[outcome].reindex(people.index).to_numpy(dtype=float, na_value=np.nan)
    for cov in plan.covariates:
        value = base[cov].reindex(people.index)
        fallback = follow[cov].reindex(people.index)
        out[cov] = value.where(value.notna(), fallback).to_numpy()
    return out


def _require_columns(data: pd.DataFrame, plan: Plan, extra: list[str]) -> None:
    d = plan.design
    needed = [d.participant, d.cluster, d.arm, d.timepoint, *extra, *plan.covariates]
    absent = [c for c in needed if c not in data.columns]
    if absent:
        raise CpevalError(f"{plan.source}: column(s) {', '.join(absent)} named in the plan are not in the data; "
                          "expected score columns (e.g. rguk_total) and the design and covariate columns")


def covariate_columns(frame: pd.DataFrame, covariates: tuple[str, ...]) -> pd.DataFrame:
    """Covariates as model columns: numbers as they are; text as treatment-coded indicators.

    As in R, the reference level of a categorical covariate is its first level in sorted order, and each other
    level gets a column named ``<covariate>[<level>]``.
    """
    columns = {}
    for cov in covariates:
        values = frame[cov]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            columns[cov] = values.astype(float)
        else:
            text = values.astype("string")
            levels = sorted(text.dropna().unique())
            for level in levels[1:]:
                columns[f"{cov}[{level}]"] = np.where(text.isna(), np.nan, (text == level).astype(float))
    return pd.DataFrame(columns, index=frame.index)


# ----------------------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------------------


def _empty_record(outcome: str, model: str, term: str, note: str) -> dict:
    record = dict.fromkeys(RECORD_COLUMNS, np.nan)
    record.update(outcome=outcome, model=model, term=term, df_method="", notes=note, imputations=0)
    return record


def _arm_problem(frame: pd.DataFrame, plan: Plan, what: str) -> str | None:
    """A reason why arms cannot be compared on ``frame`` (rows analysed), or None."""
    d = plan.design
    for arm in d.arms:
        rows = frame[frame["arm"] == arm]
        if rows.empty:
            return f"no participants in the {arm} arm with {what}: arms cannot be compared"
        n_teams = rows["cluster"].nunique()
        if n_teams < 2:
            return (f"only {n_teams} team in the {arm} arm with {what}: the arm effect cannot be separated from "
                    "the team effect")
    return None


def fit_primary(data: pd.DataFrame, plan: Plan, outcome: str, *, baseline_sd: float | None = None) -> list[dict]:
    """The primary ANCOVA model for one outcome; returns one record for the arm effect."""
    frame = ancova_frame(data, plan, outcome)
    cov_cols = covariate_columns(frame, plan.covariates)
    complete = frame[["y", "y0"]].notna().all(axis=1) & cov_cols.notna().all(axis=1)
    analysed = frame[complete]
    term = f"arm: {plan.design.treatment} vs {plan.design.control}"
    problem = _arm_problem(analysed, plan, "follow-up and baseline scores")
    if problem is None and analysed["y"].nunique() < 2:
        problem = f"{outcome} is constant at follow-up ({analysed['y'].iloc[0]:g}): nothing to compare"
    if problem:
        return [_empty_record(outcome, MODEL_PRIMARY, term, problem)]
    X = pd.concat([pd.DataFrame({"(Intercept)": 1.0, term: analysed["treated"], f"baseline {outcome}":
                                 analysed["y0"]}, index=analysed.index), cov_cols[complete]], axis=1)
    X = _drop_constant_covariates(X, keep=["(Intercept)", term])
    fit = fit_mixed(analysed["y"].to_numpy(), X, analysed["cluster"].to_numpy(), [plan.design.cluster])
    record = _record_from_fit(fit, term, outcome, MODEL_PRIMARY, analysed, plan, baseline_sd)
    excluded = len(frame) - len(analysed)
    if excluded:
        record["notes"] = _join(record["notes"], f"{excluded} of {len(frame)} participants excluded (no follow-up "
                                                 "or baseline score, or a covariate missing)")
    return [record]


def longitudinal_frame(data: pd.DataFrame, plan: Plan, outcome: str) -> pd.DataFrame:
    """One row per participant and time point: participant, cluster, arm, treated, follow (1 at follow-up), y,
    and the covariates as at baseline (carried to every row of the participant, as in the primary model)."""
    d = plan.design
    _require_columns(data, plan, [outcome])
    rows = data[data[d.timepoint].isin(d.timepoints)]
    frame = pd.DataFrame({
        "participant": rows[d.participant].to_numpy(),
        "cluster": rows[d.cluster].to_numpy(),
        "arm": rows[d.arm].astype("string").to_numpy(),
        "y": rows[outcome].to_numpy(dtype=float, na_value=np.nan),
        "follow": (rows[d.timepoint] == d.follow_up).to_numpy(dtype=float),
    })
    people = ancova_frame(data, plan, outcome).set_index("participant")
    for cov in plan.covariates:
        frame[cov] = people[cov].reindex(frame["participant"]).to_numpy()
    frame.insert(3, "treated", (frame["arm"] == d.treatment).astype(float))
    return frame


def fit_longitudinal(data: pd.DataFrame, plan: Plan, outcome: str, *, baseline_sd: float | None = None) -> list[dict]:
    """The all-time-points model; returns the arm x time record (difference in change, follow-up - baseline)."""
    d = plan.design
    frame = longitudinal_frame(data, plan, outcome)
    cov_cols = covariate_columns(frame, plan.covariates)
    complete = frame["y"].notna() & cov_cols.notna().all(axis=1)
    analysed = frame[complete]
    term = f"arm x time: {d.treatment} vs {d.control}, change {d.baseline} to {d.follow_up}"
    problem = _arm_problem(analysed, plan, "any score")
    if problem is None and analysed.loc[analysed["follow"] == 1, "arm"].nunique() < 2:
        problem = "one arm has no follow-up scores: the difference in change cannot be estimated"
    if problem is None and analysed["y"].nunique() < 2:
        problem = f"{outcome} is constant: nothing to compare"
    if problem:
        return [_empty_record(outcome, MODEL_LONGITUDINAL, term, problem)]
    X = pd.concat([pd.DataFrame({
        "(Intercept)": 1.0, "arm": analysed["treated"], "time": analysed["follow"],
        term: analysed["treated"] * analysed["follow"]}, index=analysed.index), cov_cols[complete]], axis=1)
    X = _drop_constant_covariates(X, keep=["(Intercept)", "arm", "time", term])
    fit = fit_mixed(analysed["y"].to_numpy(), X,
                    [analysed["cluster"].to_numpy(), analysed["participant"].to_numpy()],
                    [d.cluster, d.participant])
    people_frame = analysed.drop_duplicates("participant")
    return [_record_from_fit(fit, term, outcome, MODEL_LONGITUDINAL, people_frame, plan, baseline_sd)]


def _drop_constant_covariates(X: pd.DataFrame, keep: list[str]) -> pd.DataFrame:
    """A covariate with one value among the rows analysed (e.g. every analysed person female) says nothing."""
    constant = [c for c in X.columns if c not in keep and X[c].nunique() < 2]
    return X.drop(columns=constant)


def _record_from_fit(fit, term: str, outcome: str, model: str, people: pd.DataFrame, plan: Plan,
                     baseline_sd: float | None) -> dict:
    row = fit.fixed.loc[term]
    record = _empty_record(outcome, model, term, "")
    record.update(
        estimate=row["estimate"], std_error=row["std_error"], df=row["df"], df_method=fit.df_method,
        conf_low=row["conf_low"], conf_high=row["conf_high"], p_value=row["p_value"],
        n_participants=int(people["participant"].nunique()), n_clusters=int(people["cluster"].nunique()),
        notes="; ".join(notes_for_term(fit, term)), imputations=0,
    )
    d = plan.design
    for arm, suffix in ((d.treatment, "treatment"), (d.control, "control")):
        in_arm = people[people["arm"] == arm]
        record[f"n_participants_{suffix}"] = int(in_arm["participant"].nunique())
        record[f"n_clusters_{suffix}"] = int(in_arm["cluster"].nunique())
    if model == MODEL_PRIMARY:
        # the ICC reported for each outcome (CONSORT) comes from the primary model, with its profile interval;
        # other models give the point value only (the profile costs many refits)
        icc = fit.icc(d.cluster)
        record.update(icc=icc["icc"], icc_conf_low=icc["conf_low"], icc_conf_high=icc["conf_high"])
    else:
        record.update(icc=fit.variances[d.cluster] / sum(fit.variances.values()))
    if baseline_sd and baseline_sd > 0:
        record.update(effect_size=row["estimate"] / baseline_sd, effect_size_sd=baseline_sd)
    return record


def notes_for_term(fit, term: str) -> list[str]:
    """The fit's notes, with the singular-fit df note cut down to the term reported."""
    notes = []
    for note in fit.notes:
        if note.startswith("singular fit: between-within df used"):
            df = fit.fixed.loc[term, "df"]
            lmer = fit.lmertest_df[term] if fit.lmertest_df is not None else float("nan")
            note = (f"between-within df ({df:.0f}) used: R lmerTest would report Satterthwaite df {lmer:.1f}, "
                    "treating the zero variance as known")
        notes.append(note)
    return notes


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def baseline_sd(data: pd.DataFrame, plan: Plan, outcome: str) -> float:
    """The SD used for standardised effects: participant-level SD of the outcome at baseline, both arms pooled
    (the pooled within-arm SD, so a baseline imbalance between arms does not inflate it)."""
    d = plan.design
    base = data[data[d.timepoint] == d.baseline]
    groups = [base.loc[base[d.arm] == arm, outcome].dropna().to_numpy(dtype=float) for arm in d.arms]
    num = sum((len(g) - 1) * g.var(ddof=1) for g in groups if len(g) > 1)
    den = sum(len(g) - 1 for g in groups if len(g) > 1)
    return float(np.sqrt(num / den)) if den > 0 else float("nan")


# ----------------------------------------------------------------------------------------------------------------
# Multiple imputation
# ----------------------------------------------------------------------------------------------------------------


def fit_primary_imputed(data: pd.DataFrame, plan: Plan, outcome: str, *, baseline_sd: float | None = None) -> list[dict]:
    """The primary model after multiple imputation within arm, pooled by Rubin's rules."""
    settings = plan.missing_data
    frame = ancova_frame(data, plan, outcome)
    term = f"arm: {plan.design.treatment} vs {plan.design.control}"
    numeric = [c for c in plan.covariates if pd.api.types.is_numeric_dtype(frame[c])]
    text = [c for c in plan.covariates if c not in numeric]
    n_missing_y = int(frame["y"].isna().sum())
    if n_missing_y == 0 and not frame[["y0", *plan.covariates]].isna().any().any():
        return [_empty_record(outcome, MODEL_IMPUTED, term, "no missing data: the primary model is the analysis")]
    problem = _arm_problem(frame, plan, "a record")
    if problem:
        return [_empty_record(outcome, MODEL_IMPUTED, term, problem)]
    rng = np.random.default_rng(settings.seed)
    completed: list[list[pd.DataFrame]] = [[] for _ in range(settings.imputations)]
    for arm in plan.design.arms:
        part = frame[frame["arm"] == arm].copy()
        # text covariates: missing values drawn from the arm's observed distribution (documented simplification)
        for cov in text:
            observed = part[cov].dropna().to_numpy()
            missing = part[cov].isna().to_numpy()
            if missing.any() and observed.size:
                part.loc[missing, cov] = rng.choice(observed, missing.sum())
        # the team's mean observed baseline score is a predictor (MICEData would drop the rows of participants
        # recruited but never interviewed; with it, no row is entirely missing)
        team_mean = add_team_mean(part, "y0")
        filled, _ = impute_columns(part, ["y", "y0", team_mean, *numeric], settings.imputations, rng)
        for i, piece in enumerate(filled):
            completed[i].append(piece)
    estimates, variances, dfs, df_methods = [], [], [], set()
    for pieces in completed:
        full = pd.concat(pieces)
        cov_cols = covariate_columns(full, plan.covariates)
        X = pd.concat([pd.DataFrame({"(Intercept)": 1.0, term: full["treated"], f"baseline {outcome}": full["y0"]},
                                    index=full.index), cov_cols], axis=1)
        X = _drop_constant_covariates(X, keep=["(Intercept)", term])
        ok = X.notna().all(axis=1) & full["y"].notna()
        fit = fit_mixed(full.loc[ok, "y"].to_numpy(), X[ok], full.loc[ok, "cluster"].to_numpy(),
                        [plan.design.cluster])
        row = fit.fixed.loc[term]
        estimates.append(row["estimate"])
        variances.append(row["std_error"] ** 2)
        dfs.append(row["df"])
        df_methods.add(fit.df_method)
    pooled = rubin_pool(np.array(estimates), np.array(variances), float(np.mean(dfs)))
    record = _empty_record(outcome, MODEL_IMPUTED, term, "")
    record.update({k: pooled[k] for k in ("estimate", "std_error", "df", "conf_low", "conf_high", "p_value")})
    record.update(
        df_method=f"Barnard-Rubin (complete-data df: {' / '.join(sorted(df_methods))})",
        imputations=settings.imputations,
        n_participants=len(frame), n_clusters=int(frame["cluster"].nunique()),
        n_participants_treatment=int((frame["arm"] == plan.design.treatment).sum()),
        n_participants_control=int((frame["arm"] == plan.design.control).sum()),
        n_clusters_treatment=int(frame.loc[frame["arm"] == plan.design.treatment, "cluster"].nunique()),
        n_clusters_control=int(frame.loc[frame["arm"] == plan.design.control, "cluster"].nunique()),
        notes=(f"{n_missing_y} missing follow-up score(s) imputed {settings.imputations} times within arm by chained "
               f"equations (predictive mean matching; predictors: baseline score, team mean baseline score, numeric covariates); fraction "
               f"of missing information {pooled['fraction_missing_info']:.2f}"),
    )
    if baseline_sd and baseline_sd > 0:
        record.update(effect_size=pooled["estimate"] / baseline_sd, effect_size_sd=baseline_sd)
    return [record]


# ----------------------------------------------------------------------------------------------------------------
# All outcomes
# ----------------------------------------------------------------------------------------------------------------


def compare_outcomes(data: pd.DataFrame, plan: Plan) -> OutcomeAnalysis:
    """Every outcome of the plan through the primary, longitudinal and imputation models."""
    if not plan.outcomes:
        raise CpevalError(f"{plan.source}: no outcomes in the plan; expected outcomes: {{primary: <score column>, "
                          "secondary: [...]}")
    _require_columns(data, plan, plan.outcomes)
    records: list[dict] = []
    for outcome in plan.outcomes:
        sd = baseline_sd(data, plan, outcome)
        records += fit_primary(data, plan, outcome, baseline_sd=sd)
        records += fit_longitudinal(data, plan, outcome, baseline_sd=sd)
        if plan.missing_data.enabled:
            records += fit_primary_imputed(data, plan, outcome, baseline_sd=sd)
    table = pd.DataFrame(records, columns=RECORD_COLUMNS)
    return OutcomeAnalysis(records=table)
