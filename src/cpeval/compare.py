"""Comparing arms, as one result: flow counts, baseline tables, outcome models, reliability, methods text.

``compare_arms(data, plan, instruments)`` gathers the analysis modules' tidy tables into a ``Comparison`` that the
CLI writes as JSON (everything) or CSV (the outcome records), and that the report renders.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cpeval import __version__
from cpeval.baseline import SMD_NOTE, baseline_table, flow_counts, team_table
from cpeval.errors import CpevalError
from cpeval.outcomes import MODEL_DESCRIPTIONS, RECORD_COLUMNS, compare_outcomes
from cpeval.plan import Plan
from cpeval.reliability import reliability_table


@dataclass
class Comparison:
    plan: Plan
    flow: dict[str, pd.DataFrame]
    baseline: pd.DataFrame
    teams: pd.DataFrame
    records: pd.DataFrame  # outcome records (cpeval.outcomes.RECORD_COLUMNS)
    reliability: pd.DataFrame
    methods: str
    notes: list[str] = field(default_factory=list)


def compare_arms(data: pd.DataFrame, plan: Plan, instruments=None) -> Comparison:
    """Run the whole comparison the plan describes on scored long data."""
    if not plan.outcomes:
        raise CpevalError(f"{plan.source}: no outcomes in the plan; expected outcomes: {{primary: <score column>, "
                          "secondary: [...]}")
    design = plan.design
    categorical = [c for c in plan.covariates if c in data.columns and not pd.api.types.is_numeric_dtype(data[c])]
    flow = flow_counts(data, design, plan.outcomes, covariates=list(plan.covariates))
    baseline = baseline_table(data, design, [*plan.outcomes, *plan.covariates], categorical=categorical)
    teams = team_table(data, design, outcomes=plan.outcomes)
    outcomes = compare_outcomes(data, plan)
    reliability = reliability_table(data, instruments, design)
    return Comparison(plan=plan, flow=flow, baseline=baseline, teams=teams, records=outcomes.records,
                      reliability=reliability, methods=methods_paragraph(plan, outcomes.records),
                      notes=outcomes.notes)


def methods_paragraph(plan: Plan, records: pd.DataFrame) -> str:
    """A methods paragraph generated from the plan and what was actually used, to paste into a paper."""
    d = plan.design
    covs = ", ".join(plan.covariates) if plan.covariates else "no further covariates"
    df_methods = sorted(set(records["df_method"].dropna()) - {""})
    fallback = any("between-within" in m for m in df_methods)
    site = f" Teams were nested in {d.site}s; {d.site} was not modelled separately." if d.site else ""
    text = [
        f"Outcomes were compared between the {d.treatment} and {d.control} arms with linear mixed-effects models "
        f"fitted by restricted maximum likelihood (REML), with a random intercept for team ({d.cluster}) because "
        f"teams, not individuals, were allocated.{site}",
        f"The primary analysis of each outcome was an analysis of covariance of the {d.follow_up} score with arm, "
        f"the {d.baseline} score of the same outcome and {covs} as fixed effects, on participants with both scores "
        "and complete covariates. The arm effect is reported as the adjusted mean difference "
        f"({d.treatment} minus {d.control}) with its standard error from (X'V^-1 X)^-1, a 95% confidence interval "
        "and p value from the t distribution with Satterthwaite degrees of freedom (as R lmerTest computes them)"
        + ("; where Satterthwaite degrees of freedom could not be computed, between-within degrees of freedom "
           "were used and this is flagged in the results." if fallback else "."),
        "A secondary longitudinal model used every time point: outcome ~ arm x time + covariates, with random "
        "intercepts for team and for participant within team, so that participants without follow-up "
        "contributed; its arm x time term estimates the difference between arms in change from baseline.",
        "The intracluster correlation coefficient (ICC) for team is the team variance divided by the total "
        "variance in the primary model, with a 95% profile-likelihood confidence interval. Standardised effects "
        "divide the adjusted mean difference by the pooled within-arm standard deviation of the outcome at "
        "baseline.",
    ]
    if plan.missing_data.enabled:
        md = plan.missing_data
        text.append(
            "Sensitivity to missing data was assessed by multiple imputation by chained equations (predictive mean "
            f"matching, separately within each arm; {md.imputations} imputations, seed {md.seed}) of the follow-up "
            "and baseline scores and numeric covariates; the primary model was fitted to each completed data set "
            "and the results pooled with Rubin's rules, with Barnard-Rubin degrees of freedom."
        )
    text.append("Internal consistency of each multi-item scale at each time point was estimated with Cronbach's "
                "alpha and a Feldt 95% confidence interval. " + SMD_NOTE)
    text.append(f"Analyses used cpeval {__version__}.")
    return " ".join(text)


# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------


def _records(frame: pd.DataFrame) -> list[dict]:
    """DataFrame rows as JSON-safe dicts (NaN -> null, numpy scalars -> Python)."""
    out = []
    for row in frame.to_dict(orient="records"):
        clean = {}
        for key, value in row.items():
            if isinstance(value, (np.integer,)):
                value = int(value)
            elif isinstance(value, (np.floating, float)):
                value = None if math.isnan(value) else float(value)
            elif value is pd.NA or value is pd.NaT:
                value = None
            elif isinstance(value, np.bool_):
                value = bool(value)
            clean[str(key)] = value
        out.append(clean)
    return out


def comparison_as_dict(result: Comparison) -> dict:
    d = result.plan.design
    return {
        "cpeval_version": __version__,
        "study": d.study,
        "plan": result.plan.source,
        "design": {"participant": d.participant, "cluster": d.cluster, "site": d.site, "arm": d.arm,
                   "treatment": d.treatment, "control": d.control, "timepoint": d.timepoint,
                   "baseline": d.baseline, "follow_up": d.follow_up},
        "outcomes": {"primary": result.plan.primary, "secondary": list(result.plan.secondary)},
        "covariates": list(result.plan.covariates),
        "models": MODEL_DESCRIPTIONS,
        "flow": {name: _records(table) for name, table in result.flow.items()},
        "baseline_table": _records(result.baseline),
        "team_table": _records(result.teams),
        "results": _records(result.records),
        "reliability": _records(result.reliability),
        "methods": result.methods,
        "notes": result.notes,
    }


def write_comparison(result: Comparison, path: str | Path) -> None:
    """``.json``: flow counts, baseline tables, outcome records, reliability, methods; ``.csv``: the records."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        path.write_text(json.dumps(comparison_as_dict(result), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    elif suffix == ".csv":
        result.records[RECORD_COLUMNS].to_csv(path, index=False)
    else:
        raise CpevalError(f"{path}: results are written as .json or .csv; expected one of those suffixes")
