"""Costs and cost-effectiveness: service use to costs, a two-stage cluster bootstrap, QALYs, CE plane and CEAC.

The chain (docs/costs.md documents the plan keys and file formats):

1. **Unit costs** — a CSV (service, unit, cost, price_year, source; optional category, description), brought to the
   plan's price year with an optional price index (cost x index[target] / index[year]).
2. **Service use** — CSRI-style records per participant and period (wide columns named in the plan, or a long file):
   contacts, minutes, hours or days, converted to the unit of the service's unit cost. Cost = quantity x unit cost.
   A negative or non-numeric record is a QA record and counts as missing; a period with any service missing has a
   missing total (never zero).
3. **Implementation costs** per team (training, supervision, worker time ...), spread over the team's caseload.
4. **Per participant**: total cost over follow-up (follow-up-period service cost + implementation cost), baseline
   service cost, QALYs by area under the curve = horizon in years x (u0 + u1) / 2.
5. **Comparison** (comparator = the plan's treatment arm, reference = its control arm): mean cost difference
   (unadjusted, and adjusted for baseline cost by least squares), QALY difference adjusted for baseline utility,
   primary-outcome difference adjusted for its baseline; CE-plane quadrant shares, the acceptability curve,
   incremental net benefit (INB) and the ICER where it is meaningful; cost per unit of the primary outcome.
6. **Intervals** — a two-stage cluster bootstrap (teams resampled with replacement within arm, then participants
   with replacement within each sampled team; Davison & Hinkley 1997, sec. 3.8; Ng et al. 2013, Health Econ
   22:1038), vectorised: each replicate is a row of integer frequency weights, and every statistic is a weighted
   mean or a weighted least-squares coefficient computed for all replicates at once. Percentile intervals are
   computed exactly as R ``boot.ci(type = "perc")`` (tests/r/boot_reference.R checks this).
7. **Missing data** — complete-case results plus multiple imputation (cpeval.imputation, as the outcomes use: PMM
   within arm), each completed data set bootstrapped with the same replicates, pooled by Rubin's rules.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cpeval import __version__
from cpeval.errors import CpevalError
from cpeval.imputation import add_team_mean, impute_columns, rubin_pool
from cpeval.plan import CostSettings, Plan
from cpeval.qa import concat_qa, empty_qa, qa_frame

UNITS = ("contact", "hour", "minute", "day")
UNIT_COST_COLUMNS = ("service", "unit", "cost", "price_year", "source")
LONG_MEASURES = ("contacts", "minutes_per_contact", "minutes", "hours", "days")
NO_SERVICE = "none"  # a long service-use row saying "used nothing this period"
CHUNK = 250  # replicates drawn per step: fixed, so a seed gives the same replicates whatever the total

COST_RECORD_COLUMNS = [
    "analysis", "key", "quantity", "unit", "sample", "estimate", "std_error", "conf_low", "conf_high",
    "interval_method",
    "mean_treatment", "mean_control", "n_participants_treatment", "n_participants_control",
    "n_clusters_treatment", "n_clusters_control", "replicates", "imputations", "notes",
]
INTERVAL_BOOTSTRAP = "two-stage cluster bootstrap, percentile"
INTERVAL_RUBIN = "Rubin's rules over imputations (bootstrap within-imputation variance), t interval"


# ----------------------------------------------------------------------------------------------------------------
# Files: unit costs, price index, implementation costs
# ----------------------------------------------------------------------------------------------------------------


def resolve_cost_file(value: str, settings: CostSettings, key: str, plan_source: str) -> Path:
    """A file named in the plan: relative to the plan's folder, else one shipped in cpeval's analysis/ folder."""
    from cpeval.resources import analysis_dir

    path = Path(value)
    candidates = [path] if path.is_absolute() else [Path(settings.base_dir) / path, analysis_dir() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    where = " or ".join(str(c.parent) for c in candidates)
    raise CpevalError(f"{plan_source}: costs.{key} file {value!r} not found (looked in {where}); expected an "
                      "existing file")


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise CpevalError(f"{path}: cannot be read as CSV ({str(exc).splitlines()[0]})") from None


def _to_number(text: str) -> float | None:
    try:
        value = float(str(text).strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def load_unit_costs(path: str | Path) -> pd.DataFrame:
    """Read and validate a unit-cost table; errors name the file, the line, the column, the value and what was
    expected. Returns columns service, category, unit, cost, price_year, source, description."""
    path = Path(path)
    raw = _read_csv(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    absent = [c for c in UNIT_COST_COLUMNS if c not in raw.columns]
    if absent:
        raise CpevalError(f"{path}: column(s) {', '.join(absent)} missing; expected columns "
                          f"{', '.join(UNIT_COST_COLUMNS)} (optional: category, description)")
    rows = []
    seen: dict[str, int] = {}
    for i, r in enumerate(raw.to_dict(orient="records")):
        line = i + 2  # the header is line 1
        service = str(r["service"]).strip()
        if not service:
            raise CpevalError(f"{path}: line {line}: column service is empty; expected a service name")
        if service in seen:
            raise CpevalError(f"{path}: line {line}: service {service!r} appears again (first on line "
                              f"{seen[service]}); expected one unit cost per service")
        seen[service] = line
        unit = str(r["unit"]).strip().lower()
        if unit not in UNITS:
            raise CpevalError(f"{path}: line {line}: unit of {service!r} is {r['unit']!r}; expected one of "
                              f"{', '.join(UNITS)}")
        cost = _to_number(r["cost"])
        if cost is None or cost < 0:
            raise CpevalError(f"{path}: line {line}: cost of {service!r} is {r['cost']!r}; expected a number of "
                              "0 or more (pounds per unit)")
        year = str(r["price_year"]).strip()
        source = str(r["source"]).strip()
        for column, value in (("price_year", year), ("source", source)):
            if not value:
                raise CpevalError(f"{path}: line {line}: column {column} of {service!r} is empty; expected "
                                  + ("the price year, e.g. 2013/14" if column == "price_year"
                                     else "where the unit cost comes from"))
        rows.append(dict(service=service, category=str(r.get("category", "") or "").strip() or service, unit=unit,
                         cost=cost, price_year=year, source=source,
                         description=str(r.get("description", "") or "").strip()))
    if not rows:
        raise CpevalError(f"{path}: no unit costs; expected one row per service")
    return pd.DataFrame(rows)


def load_price_index(path: str | Path) -> dict[str, float]:
    """A price index table (price_year, index) -> {price year: index}."""
    path = Path(path)
    raw = _read_csv(path)
    raw.columns = [str(c).strip() for c in raw.columns]
    absent = [c for c in ("price_year", "index") if c not in raw.columns]
    if absent:
        raise CpevalError(f"{path}: column(s) {', '.join(absent)} missing; expected columns price_year, index")
    out: dict[str, float] = {}
    for i, r in enumerate(raw.to_dict(orient="records")):
        year, value = str(r["price_year"]).strip(), _to_number(r["index"])
        if not year or value is None or value <= 0:
            raise CpevalError(f"{path}: line {i + 2}: price_year {r['price_year']!r}, index {r['index']!r}; expected "
                              "a price year and a positive index")
        if year in out:
            raise CpevalError(f"{path}: line {i + 2}: price year {year!r} appears twice; expected each year once")
        out[year] = value
    return out


def inflation_factor(year: str, target: str, index: dict[str, float] | None, what: str, index_name: str) -> float:
    """index[target] / index[year]; 1 when the years agree. A missing year is an error naming what needs it."""
    if year == target:
        return 1.0
    if index is None:
        raise CpevalError(f"{what} is in price year {year!r} but the plan's price_year is {target!r}; expected a "
                          "price_index in the plan's costs section (price_year, index) to convert it")
    for needed in (year, target):
        if needed not in index:
            raise CpevalError(f"{index_name}: no index for price year {needed!r} (needed for {what}); expected a row "
                              f"for it (the table has {', '.join(index)})")
    return index[target] / index[year]


def priced_unit_costs(unit_costs: pd.DataFrame, target: str, index: dict[str, float] | None,
                      source_name: str, index_name: str = "price index") -> pd.DataFrame:
    """The unit-cost table with ``inflation_factor`` and ``unit_cost`` (in the target price year) added."""
    out = unit_costs.copy()
    out["inflation_factor"] = [
        inflation_factor(y, target, index, f"{source_name}: unit cost of {s!r}", index_name)
        for s, y in zip(out["service"], out["price_year"], strict=True)]
    out["unit_cost"] = out["cost"] * out["inflation_factor"]
    return out


def _team_key(value) -> str:
    """Team identifiers compare as text, with 3.0 written as 3 (CSV text against numeric SPSS columns)."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def load_implementation_costs(spec, settings: CostSettings, plan: Plan, data: pd.DataFrame,
                              index: dict[str, float] | None, index_name: str) -> tuple[pd.DataFrame, list[str]]:
    """Implementation costs per team -> (table: team, arm, <components>, total, caseload, per_participant; notes)."""
    d = plan.design
    if isinstance(spec, str):
        path = resolve_cost_file(spec, settings, "implementation_costs", plan.source)
        raw, name = _read_csv(path), str(path)
        raw.columns = [str(c).strip() for c in raw.columns]
    else:
        raw = pd.DataFrame(list(spec)).astype(object)
        raw, name = raw.where(raw.notna(), "").astype(str), f"{plan.source}: costs.implementation_costs"
    if "team" not in raw.columns:
        raise CpevalError(f"{name}: no column team; expected team, optional caseload and price_year, and one column "
                          "per cost component (e.g. training, supervision, worker_time)")
    components = [c for c in raw.columns if c not in ("team", "caseload", "price_year", "source", "notes")]
    if not components:
        raise CpevalError(f"{name}: no cost columns; expected one column per cost component (e.g. training)")
    people = data.drop_duplicates(d.participant)
    team_arm = {_team_key(t): str(a) for t, a in zip(people[d.cluster], people[d.arm], strict=True)}
    team_n = people.groupby(people[d.cluster].map(_team_key)).size().to_dict()
    rows, notes, seen = [], [], set()
    for i, r in enumerate(raw.to_dict(orient="records")):
        where = f"{name}: line {i + 2}" if isinstance(spec, str) else f"{name}[{i}]"
        team = _team_key(r["team"])
        if team not in team_arm:
            raise CpevalError(f"{where}: team {r['team']!r} is not in the data's {d.cluster} column; expected one of "
                              f"{', '.join(sorted(team_arm, key=_natural))}")
        if team in seen:
            raise CpevalError(f"{where}: team {team!r} appears twice; expected one row per team")
        seen.add(team)
        row = {"team": team, "arm": team_arm[team]}
        for c in components:
            value = _to_number(r[c]) if str(r[c]).strip() != "" else 0.0
            if value is None or value < 0:
                raise CpevalError(f"{where}: {c} is {r[c]!r}; expected an amount in pounds (0 or more)")
            row[c] = value
        year = str(r.get("price_year", "") or "").strip() or settings.price_year
        factor = inflation_factor(year, settings.price_year, index, f"{where}: implementation costs", index_name)
        for c in components:
            row[c] *= factor
        row["total"] = sum(row[c] for c in components)
        caseload = str(r.get("caseload", "") or "").strip()
        if caseload:
            n = _to_number(caseload)
            if n is None or n <= 0:
                raise CpevalError(f"{where}: caseload is {caseload!r}; expected the number of service users the "
                                  "team supports (above 0)")
            row["caseload"], row["spread_over"] = n, "caseload"
        else:
            row["caseload"], row["spread_over"] = float(team_n[team]), "study participants"
        row["per_participant"] = row["total"] / row["caseload"]
        rows.append(row)
    missing = sorted((t for t, a in team_arm.items() if a == d.treatment and t not in seen), key=_natural)
    if missing:
        raise CpevalError(f"{name}: {d.treatment} team(s) {', '.join(missing)} have no implementation costs; expected "
                          f"a row for every team of the {d.treatment} arm")
    table = pd.DataFrame(rows)
    if (table["spread_over"] == "study participants").any():
        notes.append("implementation costs of team(s) "
                     + ", ".join(table.loc[table["spread_over"] == "study participants", "team"])
                     + " were spread over the team's study participants because no caseload was given; this "
                       "overstates the cost per service user if the team supports more people")
    return table, notes


def _natural(text: str) -> tuple:
    import re

    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", str(text)))


# ----------------------------------------------------------------------------------------------------------------
# Service use -> costs
# ----------------------------------------------------------------------------------------------------------------


def _quantity(service: str, unit: str, m: dict[str, np.ndarray], source: str) -> np.ndarray:
    """Use in the unit of the unit cost, from the measures recorded (see docs/costs.md)."""
    has = set(m)
    if unit == "contact":
        if "contacts" not in has:
            raise CpevalError(f"{source}: service {service!r} is costed per contact, but its use is recorded as "
                              f"{', '.join(sorted(has))}; expected contacts")
        return m["contacts"]
    if unit in ("hour", "minute"):
        if "contacts" in has and "minutes_per_contact" in has:
            minutes = np.where(m["contacts"] == 0, 0.0, m["contacts"] * m["minutes_per_contact"])
        elif "minutes" in has:
            minutes = m["minutes"]
        elif "hours" in has:
            minutes = m["hours"] * 60
        else:
            raise CpevalError(f"{source}: service {service!r} is costed per {unit}, but its use is recorded as "
                              f"{', '.join(sorted(has))}; expected contacts with minutes_per_contact, minutes or "
                              "hours")
        return minutes / 60 if unit == "hour" else minutes
    if "days" not in has:
        raise CpevalError(f"{source}: service {service!r} is costed per day, but its use is recorded as "
                          f"{', '.join(sorted(has))}; expected days")
    return m["days"]


def _clean_measure(values: pd.Series, rows: pd.DataFrame, plan: Plan, source: str, variable: str,
                   qa: list[dict]) -> np.ndarray:
    """Numbers of 0 or more; anything else becomes a QA record and missing."""
    d = plan.design
    numeric = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan, copy=True)
    present = values.notna().to_numpy()
    text_bad = present & np.isnan(numeric)
    negative = ~np.isnan(numeric) & (numeric < 0)
    for where, reason, expected in ((text_bad, "not_numeric", "a number of 0 or more"),
                                    (negative, "out_of_range", "a number of 0 or more (service use)")):
        for i in np.flatnonzero(where):
            qa.append(dict(source=source, row=rows["source_row"].iat[i] if "source_row" in rows else None,
                           participant_id=rows[d.participant].iat[i], timepoint=rows[d.timepoint].iat[i],
                           variable=variable, value=values.iat[i], reason=reason, expected=expected,
                           action="treated as missing: the period's service cost is missing"))
    numeric[text_bad | negative] = np.nan
    return numeric


def service_costs_wide(data: pd.DataFrame, plan: Plan, settings: CostSettings, prices: pd.DataFrame,
                       source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Costs per participant, period and service from the wide service-use columns -> (tidy use table, QA)."""
    d = plan.design
    wanted = [c for s in settings.services for c in s.columns.values()]
    absent = sorted({c for c in wanted if c not in data.columns})
    if absent:
        raise CpevalError(f"{plan.source}: service-use column(s) {', '.join(absent)} (costs.services) are not in the "
                          f"data; expected the cpeval names after the variable map")
    rows = data[data[d.timepoint].isin(d.timepoints)].reset_index(drop=True)
    priced = prices.set_index("service")
    qa: list[dict] = []
    cleaned: dict[str, np.ndarray] = {}
    for column in dict.fromkeys(wanted):
        cleaned[column] = _clean_measure(rows[column], rows, plan, source, column, qa)
    pieces = []
    for spec in settings.services:
        if spec.service not in priced.index:
            continue  # unpriced: excluded (checked by the caller) 
        p = priced.loc[spec.service]
        quantity = _quantity(spec.service, p["unit"], {m: cleaned[c] for m, c in spec.columns.items()},
                             f"{plan.source}: costs.services")
        pieces.append(pd.DataFrame({
            "participant": rows[d.participant].to_numpy(), "timepoint": rows[d.timepoint].astype(str).to_numpy(),
            "service": spec.service, "category": p["category"], "unit": p["unit"], "quantity": quantity,
            "unit_cost": p["unit_cost"], "cost": quantity * p["unit_cost"]}))
    return pd.concat(pieces, ignore_index=True), qa_frame(qa) if qa else empty_qa()


def service_costs_long(use: pd.DataFrame, use_source: str, data: pd.DataFrame, plan: Plan, prices: pd.DataFrame,
                       excluded: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Costs per participant, period and service from a long service-use file -> (tidy use table, QA).

    A participant's period with at least one row is recorded (services without a row were not used); a period with
    no rows is missing. Rows for unknown participants or time points are QA records and are not used.
    """
    d = plan.design
    for column in (d.participant, d.timepoint, "service"):
        if column not in use.columns:
            raise CpevalError(f"{use_source}: no column {column}; expected {d.participant}, {d.timepoint}, service and "
                              f"one or more of {', '.join(LONG_MEASURES)}")
    measures = [m for m in LONG_MEASURES if m in use.columns]
    if not measures:
        raise CpevalError(f"{use_source}: no measure column; expected one or more of {', '.join(LONG_MEASURES)}")
    use = use.reset_index(drop=True)
    qa: list[dict] = []
    known = set(data[d.participant].dropna().map(_team_key))
    pid = use[d.participant].map(_team_key)
    tp = use[d.timepoint].astype(str)
    service = use["service"].astype(str).str.strip()
    if "source_row" not in use.columns:
        use["source_row"] = np.arange(len(use)) + 1
    bad_rows = np.zeros(len(use), dtype=bool)
    for mask, variable, reason, expected in (
            (~pid.isin(known), d.participant, "unknown_participant", "a participant of the study data"),
            (~tp.isin(d.timepoints), d.timepoint, "not_allowed", f"{d.baseline} or {d.follow_up}")):
        for i in np.flatnonzero(mask.to_numpy() & ~bad_rows):
            qa.append(dict(source=use_source, row=use["source_row"].iat[i], participant_id=use[d.participant].iat[i],
                           timepoint=use[d.timepoint].iat[i], variable=variable, value=use[variable].iat[i],
                           reason=reason, expected=expected, action="row not used"))
        bad_rows |= mask.to_numpy()
    unknown_services = sorted(set(service[~bad_rows]) - set(prices["service"]) - {NO_SERVICE} - set(excluded))
    if unknown_services:
        raise CpevalError(f"{use_source}: service(s) {', '.join(unknown_services)} have no unit cost; expected a row "
                          "for each in the unit-cost table, or costs.exclude_unpriced: true in the plan")
    dropped = service.isin(excluded).to_numpy() & ~bad_rows
    cleaned = {m: _clean_measure(use[m], use, plan, use_source, m, qa) for m in measures}
    priced = prices.set_index("service")
    use_rows = pd.DataFrame({"participant": pid, "timepoint": tp, "service": service})
    quantity = np.full(len(use), np.nan)
    for name, p in priced.iterrows():
        rows_of = (service == name).to_numpy() & ~bad_rows
        if rows_of.any():
            m = {k: v[rows_of] for k, v in cleaned.items() if not np.isnan(v[rows_of]).all()}
            quantity[rows_of] = _quantity(name, p["unit"], m, use_source) if m else np.nan
    none_rows = (service == NO_SERVICE).to_numpy() & ~bad_rows
    quantity[none_rows] = 0.0
    use_rows["quantity"] = quantity
    use_rows = use_rows[~bad_rows & ~dropped & ~none_rows]
    recorded = pd.DataFrame({"participant": pid, "timepoint": tp})[~bad_rows].drop_duplicates()
    # every recorded period gets every priced service (0 when not listed), so means are over all recorded people
    people = data.drop_duplicates(d.participant)[[d.participant]].assign(key=lambda f: f[d.participant].map(_team_key))
    grid = pd.MultiIndex.from_product([people["key"], list(d.timepoints), list(priced.index)],
                                      names=["participant", "timepoint", "service"]).to_frame(index=False)
    keys = ["participant", "timepoint", "service"]
    grid = grid.merge(_sum_or_missing(use_rows, keys, "quantity").reset_index(), how="left", on=keys, indicator=True)
    listed = (grid.pop("_merge") == "both").to_numpy()
    is_recorded = grid.set_index(["participant", "timepoint"]).index.isin(
        recorded.set_index(["participant", "timepoint"]).index)
    # a listed service keeps its quantity (missing if a record was); an unlisted one in a recorded period was not used
    grid["quantity"] = np.where(listed, grid["quantity"], np.where(is_recorded, 0.0, np.nan))
    back = dict(zip(people["key"], people[d.participant], strict=True))
    grid["participant"] = grid["participant"].map(back)
    grid = grid.merge(priced[["category", "unit", "unit_cost"]], left_on="service", right_index=True)
    grid["cost"] = grid["quantity"] * grid["unit_cost"]
    return grid, qa_frame(qa) if qa else empty_qa()


def _sum_or_missing(frame: pd.DataFrame, keys: list[str], value: str) -> pd.Series:
    """Sum of ``value`` per group of ``keys``, missing when any value in the group is (vectorised, no Python loop)."""
    grouped = frame[value].fillna(0.0).groupby([frame[k] for k in keys], observed=True)
    out = grouped.sum()
    out[frame[value].isna().groupby([frame[k] for k in keys], observed=True).any()] = np.nan
    return out


def period_costs(use: pd.DataFrame) -> pd.DataFrame:
    """Per participant and period: cost by category and in total (missing if any service is missing)."""
    by_cat = _sum_or_missing(use, ["participant", "timepoint", "category"], "cost").unstack("category")
    by_cat.columns = [f"cost_{c}".replace(" ", "_") for c in by_cat.columns]
    by_cat["service_cost"] = _sum_or_missing(use, ["participant", "timepoint"], "cost")
    return by_cat.reset_index()


def service_use_table(use: pd.DataFrame, arms: pd.Series, plan: Plan) -> pd.DataFrame:
    """By service, period and arm: participants recorded, users (n, %), mean quantity and mean (SD) cost.

    Means are over every participant with a record for the service in that period (non-users count as 0).
    """
    d = plan.design
    frame = use.merge(arms.rename("arm"), left_on="participant", right_index=True)
    frame = frame[frame["quantity"].notna()]
    rows = []
    for (service, tp, arm), g in frame.groupby(["service", "timepoint", "arm"], sort=False):
        rows.append(dict(service=service, category=g["category"].iat[0], unit=g["unit"].iat[0], timepoint=tp,
                         arm=arm, role="comparator" if arm == d.treatment else "reference", n=len(g),
                         users=int((g["quantity"] > 0).sum()), mean_quantity=g["quantity"].mean(),
                         mean_cost=g["cost"].mean(), sd_cost=g["cost"].std(ddof=1) if len(g) > 1 else np.nan))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["pct_users"] = 100 * table["users"] / table["n"]
    order = {s: i for i, s in enumerate(dict.fromkeys(use["service"]))}
    table["_s"] = table["service"].map(order)
    table["_t"] = table["timepoint"].map({t: i for i, t in enumerate(d.timepoints)})
    table["_a"] = table["arm"].map({a: i for i, a in enumerate(d.arms)})
    return table.sort_values(["_t", "_s", "_a"]).drop(columns=["_s", "_t", "_a"]).reset_index(drop=True)


def cost_summary_table(costs: pd.DataFrame, plan: Plan, columns: list[str]) -> pd.DataFrame:
    """Mean (SD), median and n of each cost column by arm and period (costs: one row per participant and period)."""
    d = plan.design
    rows = []
    for tp in d.timepoints:
        for column in columns:
            for arm in d.arms:
                values = costs.loc[(costs["timepoint"] == tp) & (costs["arm"] == arm), column].dropna()
                rows.append(dict(timepoint=tp, cost=column, arm=arm,
                                 role="comparator" if arm == d.treatment else "reference", n=len(values),
                                 mean=values.mean() if len(values) else np.nan,
                                 sd=values.std(ddof=1) if len(values) > 1 else np.nan,
                                 median=values.median() if len(values) else np.nan))
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------------------------
# The bootstrap: vectorised statistics over replicate weights
# ----------------------------------------------------------------------------------------------------------------


def two_stage_counts(clusters, strata, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Frequency weights (replicates x N) of a two-stage cluster bootstrap.

    Within each stratum (arm): stage 1 draws as many clusters as the stratum has, with replacement; stage 2 draws,
    within each drawn cluster, as many participants as the cluster has, with replacement. Row r, column i is how
    often participant i appears in replicate r. With one participant per cluster this is R boot's stratified
    (single-stage) bootstrap.
    """
    clusters = np.asarray(clusters)
    strata = np.asarray(strata)
    n = clusters.size
    counts = np.zeros(replicates * n, dtype=np.int64)
    for stratum in pd.unique(strata):
        members = np.flatnonzero(strata == stratum)
        _, inverse = np.unique(clusters[members], return_inverse=True)
        order = members[np.argsort(inverse, kind="stable")]        # members grouped by cluster
        sizes = np.bincount(inverse)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        k = sizes.size
        picks = rng.integers(0, k, size=(replicates, k))           # stage 1: clusters
        drawn = sizes[picks]
        cluster_of_draw = np.repeat(picks.ravel(), drawn.ravel())
        replicate_of_draw = np.repeat(np.arange(replicates), drawn.sum(axis=1))
        position = rng.integers(0, sizes[cluster_of_draw])          # stage 2: people within each drawn cluster
        person = order[offsets[cluster_of_draw] + position]
        counts += np.bincount(replicate_of_draw * n + person, minlength=replicates * n)
    return counts.reshape(replicates, n)


def _weights(weights) -> tuple[np.ndarray, bool]:
    w = np.asarray(weights, dtype=float)
    return (w[None, :], True) if w.ndim == 1 else (w, False)


def mean_difference(weights, y, treated) -> np.ndarray:
    """Per replicate: weighted mean of y among the treated minus among the others (NaN in y is left out)."""
    w, single = _weights(weights)
    y = np.asarray(y, dtype=float)
    treated = np.asarray(treated, dtype=bool)
    ok = ~np.isnan(y)
    yv = np.where(ok, y, 0.0)
    t, c = (treated & ok).astype(float), (~treated & ok).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (w @ (t * yv)) / (w @ t) - (w @ (c * yv)) / (w @ c)
    return out[0] if single else out


def group_mean(weights, y, group) -> np.ndarray:
    """Per replicate: weighted mean of y within the group (NaN in y left out)."""
    w, single = _weights(weights)
    y = np.asarray(y, dtype=float)
    g = (np.asarray(group, dtype=bool) & ~np.isnan(y)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (w @ (g * np.nan_to_num(y))) / (w @ g)
    return out[0] if single else out


def adjusted_difference(weights, y, treated, covariate) -> np.ndarray:
    """Per replicate: the coefficient of ``treated`` in the weighted least squares of y on 1 + treated + covariate.

    With integer frequency weights this is ordinary least squares on the resampled data (R:
    ``coef(lm(y ~ treated + covariate, data = d[i, ]))["treated"]``). Rows with NaN in y or the covariate are left
    out; a replicate where the coefficient is not identified (an arm absent, a constant covariate) gives NaN.
    The normal equations are formed for all replicates at once: six weighted sums per replicate, then a 3 x 3
    solve each (the covariate is centred first, which leaves the treated coefficient unchanged).
    """
    w, single = _weights(weights)
    y = np.asarray(y, dtype=float)
    x = np.asarray(covariate, dtype=float)
    ok = ~np.isnan(y) & ~np.isnan(x)
    t = np.asarray(treated, dtype=float)[ok]
    x = x[ok] - x[ok].mean() if ok.any() else x[ok]
    y = y[ok]
    w = w[:, ok]
    columns = (np.ones_like(t), t, x)
    a = np.empty((w.shape[0], 3, 3))
    b = np.empty((w.shape[0], 3))
    for i in range(3):
        b[:, i] = w @ (columns[i] * y)
        for j in range(i, 3):
            a[:, i, j] = a[:, j, i] = w @ (columns[i] * columns[j])
    diag = np.sqrt(np.abs(np.einsum("rii->ri", a)))
    with np.errstate(invalid="ignore", divide="ignore"):
        scaled = a / (diag[:, :, None] * diag[:, None, :])
        bad = ~(np.abs(np.linalg.det(np.nan_to_num(scaled))) > 1e-10) | (diag == 0).any(axis=1)
    a[bad] = np.eye(3)
    b[bad] = 0.0
    out = np.linalg.solve(a, b[:, :, None])[:, 1, 0]
    out[bad] = np.nan
    return out[0] if single else out


def percentile_interval(values, conf_level: float = 0.95) -> tuple[float, float]:
    """Percentile interval as R ``boot.ci(type = "perc")``: boot's ``norm.inter``.

    With R finite replicates sorted t(1) <= ... <= t(R) and alpha = (1 -/+ conf) / 2, the endpoint is t(k) when
    k = (R + 1) alpha is a whole number; otherwise it interpolates between t(k) and t(k + 1), k = floor((R + 1)
    alpha), on the normal quantile scale: t(k) + (qnorm(alpha) - qnorm(k/(R+1))) / (qnorm((k+1)/(R+1)) -
    qnorm(k/(R+1))) (t(k+1) - t(k)); k = 0 or R gives the extreme replicate. Non-finite replicates are dropped.
    """
    from scipy.stats import norm

    t = np.sort(np.asarray(values, dtype=float)[np.isfinite(values)])
    r = t.size
    if r == 0:
        return (math.nan, math.nan)
    out = []
    for alpha in ((1 - conf_level) / 2, (1 + conf_level) / 2):
        rk = (r + 1) * alpha
        k = math.trunc(rk)
        if k == rk and 0 < k <= r:
            out.append(float(t[k - 1]))
        elif k <= 0:
            out.append(float(t[0]))
        elif k >= r:
            out.append(float(t[r - 1]))
        else:
            z, zk, zk1 = norm.ppf(alpha), norm.ppf(k / (r + 1)), norm.ppf((k + 1) / (r + 1))
            out.append(float(t[k - 1] + (z - zk) / (zk1 - zk) * (t[k] - t[k - 1])))
    return out[0], out[1]


def quadrant_shares(delta_effect: np.ndarray, delta_cost: np.ndarray) -> dict[str, float]:
    """Shares of replicates in each quadrant of the CE plane (east: more effective; north: more costly)."""
    ok = np.isfinite(delta_effect) & np.isfinite(delta_cost)
    e, c = delta_effect[ok], delta_cost[ok]
    if e.size == 0:
        return {q: math.nan for q in ("NE", "NW", "SE", "SW")}
    return {"NE": float(np.mean((e > 0) & (c > 0))), "NW": float(np.mean((e <= 0) & (c > 0))),
            "SE": float(np.mean((e > 0) & (c <= 0))), "SW": float(np.mean((e <= 0) & (c <= 0)))}


def acceptability_curve(delta_qaly: np.ndarray, delta_cost: np.ndarray, thresholds) -> pd.DataFrame:
    """CEAC: for each threshold lambda, the share of replicates with positive net benefit lambda dQ - dC."""
    ok = np.isfinite(delta_qaly) & np.isfinite(delta_cost)
    lam = np.asarray(thresholds, dtype=float)
    if not ok.any():  # no replicate could be computed: the curve is unknown, not zero
        return pd.DataFrame({"threshold": lam, "probability_cost_effective": np.full(lam.size, np.nan)})
    nb = lam[:, None] * delta_qaly[ok][None, :] - delta_cost[ok][None, :]
    return pd.DataFrame({"threshold": lam, "probability_cost_effective": (nb > 0).mean(axis=1)})


def icer_statement(delta_cost: float, delta_effect: float, unit: str = "QALY") -> tuple[float, str]:
    """The ICER where it is meaningful, else what the point estimate means (an ICER alone is ambiguous)."""
    if not (math.isfinite(delta_cost) and math.isfinite(delta_effect)):
        return math.nan, "not estimated (the incremental cost or effect could not be computed)"
    if delta_effect == 0:
        return math.nan, "not defined (no difference in effect)"
    ratio = delta_cost / delta_effect
    if delta_effect > 0 and delta_cost > 0:
        return ratio, f"£{ratio:,.0f} per {unit} gained (north-east: more costly, more effective)"
    if delta_effect < 0 and delta_cost < 0:
        return ratio, f"£{ratio:,.0f} saved per {unit} lost (south-west: less costly, less effective)"
    if delta_effect > 0:
        return math.nan, "dominant: less costly and more effective (south-east); no ICER is reported"
    return math.nan, "dominated: more costly and less effective (north-west); no ICER is reported"


# ----------------------------------------------------------------------------------------------------------------
# The analysis
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class CostAnalysis:
    """Everything ``analyse_costs`` found (tables are tidy DataFrames; docs/costs.md describes them)."""

    plan: Plan
    settings: CostSettings
    unit_costs: pd.DataFrame        # the unit-cost table used, with inflation factors and unit_cost in price_year
    implementation: pd.DataFrame    # per team
    use: pd.DataFrame               # per participant, period and service: quantity, unit cost, cost
    period_costs: pd.DataFrame      # per participant and period: cost by category, service cost, arm, team
    frame: pd.DataFrame             # per participant: total cost, baseline cost, utilities, QALYs, effect scores
    service_use: pd.DataFrame       # by service, period and arm
    cost_summary: pd.DataFrame      # by cost category, period and arm
    results: pd.DataFrame           # COST_RECORD_COLUMNS
    replicates: pd.DataFrame        # one row per bootstrap replicate (complete case): delta_cost, delta_qaly, ...
    ceac: pd.DataFrame              # threshold, probability_cost_effective
    quadrants: pd.DataFrame         # plane, quadrant, share
    icer: dict                      # value and statement
    cost_per_effect: dict           # value and statement for the primary outcome
    imputed_counts: dict            # variable -> number of values imputed
    excluded_services: list[str]
    qa: pd.DataFrame
    methods: str
    notes: list[str] = field(default_factory=list)


def _utility_label(plan: Plan, utility: str) -> str:
    if utility.startswith("eq5d5l"):
        return "EQ-5D-5L utilities (England 2018 value set)"
    if utility.startswith("eq5d3l"):
        return "EQ-5D-3L utilities (UK 1997 time trade-off value set)"
    return f"utilities ({utility})"


def _discount_factor(rate: float, horizon_years: float) -> float:
    """Average discount factor over the horizon: the first year undiscounted, then continuous discounting at the
    annual rate, accrual even over time. 1 when the rate is 0 or the horizon is at most a year."""
    if rate <= 0 or horizon_years <= 1:
        return 1.0
    later = (1 - (1 + rate) ** -(horizon_years - 1)) / math.log(1 + rate)
    return (1 + later) / horizon_years


def cost_frame(period: pd.DataFrame, implementation: pd.DataFrame, data: pd.DataFrame, plan: Plan,
               settings: CostSettings, utility: str, effect: str | None) -> pd.DataFrame:
    """One row per recruited participant: the quantities the comparison needs."""
    d = plan.design
    people = data.drop_duplicates(d.participant).set_index(d.participant)
    out = pd.DataFrame({"participant": people.index, "cluster": people[d.cluster].to_numpy(),
                        "arm": people[d.arm].astype(str).to_numpy()})
    out["treated"] = out["arm"] == d.treatment
    service = period.set_index(["participant", "timepoint"])["service_cost"]
    for tp, column in ((d.baseline, "baseline_cost"), (d.follow_up, "service_cost")):
        out[column] = service.reindex(pd.MultiIndex.from_arrays([out["participant"], [tp] * len(out)])).to_numpy()
    per_team = dict(zip(implementation["team"], implementation["per_participant"], strict=True)) \
        if len(implementation) else {}
    out["implementation_cost"] = out["cluster"].map(_team_key).map(per_team).fillna(0.0).to_numpy(dtype=float)
    horizon_years = settings.horizon_months / 12
    factor = _discount_factor(settings.discount_rate, horizon_years)
    out["total_cost"] = (out["service_cost"] + out["implementation_cost"]) * factor
    by_tp = {tp: data[data[d.timepoint] == tp].drop_duplicates(d.participant).set_index(d.participant)
             for tp in d.timepoints}
    for tp, suffix in ((d.baseline, "0"), (d.follow_up, "1")):
        out["u" + suffix] = by_tp[tp][utility].reindex(out["participant"]).to_numpy(dtype=float, na_value=np.nan)
        if effect:
            out["e" + suffix] = by_tp[tp][effect].reindex(out["participant"]).to_numpy(dtype=float, na_value=np.nan)
    out["qaly"] = horizon_years * (out["u0"] + out["u1"]) / 2 * factor
    return out


def _estimates(w, f: dict[str, np.ndarray], thresholds: tuple[float, ...], has_effect: bool) -> dict[str, np.ndarray]:
    """Every bootstrapped quantity for weights w (replicates x N) on arrays f (see analyse_costs)."""
    t = f["treated"]
    joint = f["joint"]
    out = {
        "cost_unadjusted": mean_difference(w, f["total_cost"], t),
        "mean_cost_treatment": group_mean(w, f["total_cost"], t),
        "mean_cost_control": group_mean(w, f["total_cost"], ~t),
        "cost_adjusted": adjusted_difference(w, f["total_cost"], t, f["baseline_cost"]),
        "qaly_adjusted": adjusted_difference(w, f["qaly"], t, f["u0"]),
        "delta_cost": adjusted_difference(w, np.where(joint, f["total_cost"], np.nan), t, f["baseline_cost"]),
        "delta_qaly": adjusted_difference(w, np.where(joint, f["qaly"], np.nan), t, f["u0"]),
    }
    for lam in thresholds:
        out[f"inb_{lam:g}"] = lam * out["delta_qaly"] - out["delta_cost"]
    if has_effect:
        je = f["joint_effect"]
        out["effect_adjusted"] = adjusted_difference(w, f["e1"], t, f["e0"])
        out["delta_cost_e"] = adjusted_difference(w, np.where(je, f["total_cost"], np.nan), t, f["baseline_cost"])
        out["delta_effect"] = adjusted_difference(w, np.where(je, f["e1"], np.nan), t, f["e0"])
    return out


def _arrays(frame: pd.DataFrame, has_effect: bool) -> dict[str, np.ndarray]:
    f = {c: frame[c].to_numpy(dtype=float) for c in ("total_cost", "baseline_cost", "u0", "u1", "qaly")}
    f["treated"] = frame["treated"].to_numpy(dtype=bool)
    f["joint"] = ~np.isnan(f["total_cost"]) & ~np.isnan(f["baseline_cost"]) & ~np.isnan(f["qaly"])
    if has_effect:
        f["e0"], f["e1"] = frame["e0"].to_numpy(dtype=float), frame["e1"].to_numpy(dtype=float)
        f["joint_effect"] = (~np.isnan(f["total_cost"]) & ~np.isnan(f["baseline_cost"]) & ~np.isnan(f["e0"])
                             & ~np.isnan(f["e1"]))
    return f


def bootstrap(frame: pd.DataFrame, settings: CostSettings, *, has_effect: bool,
              progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Bootstrapped quantities (each an array of ``settings.replicates`` values) for one per-participant frame.

    The replicates are drawn in fixed chunks from ``numpy.random.default_rng(settings.seed)``, so the same seed gives
    the same replicates for any frame with the same teams and arms (imputed data sets share them).
    """
    f = _arrays(frame, has_effect)
    rng = np.random.default_rng(settings.seed)
    clusters = frame["cluster"].map(_team_key).to_numpy()
    strata = frame["arm"].to_numpy()
    pieces: list[dict[str, np.ndarray]] = []
    done = 0
    while done < settings.replicates:
        size = min(CHUNK, settings.replicates - done)
        counts = two_stage_counts(clusters, strata, size, rng)
        pieces.append(_estimates(counts, f, settings.inb_thresholds, has_effect))
        done += size
        if progress:
            progress(size)
    return {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]}


def _counts(frame: pd.DataFrame, plan: Plan, need: np.ndarray) -> dict:
    d = plan.design
    sub = frame[need]
    t = sub["arm"] == d.treatment
    return dict(n_participants_treatment=int(t.sum()), n_participants_control=int((~t).sum()),
                n_clusters_treatment=int(sub.loc[t, "cluster"].nunique()),
                n_clusters_control=int(sub.loc[~t, "cluster"].nunique()))


QUANTITIES = {  # key -> (label, sample, the columns it needs)
    "cost_unadjusted": ("cost difference, unadjusted (difference in mean total cost)", "cost", ("total_cost",)),
    "cost_adjusted": ("cost difference, adjusted for baseline service cost", "cost",
                      ("total_cost", "baseline_cost")),
    "qaly_adjusted": ("QALY difference, adjusted for baseline utility", "QALY", ("qaly", "u0")),
    "delta_cost": ("incremental cost (cost-effectiveness sample, adjusted)", "cost-effectiveness",
                   ("total_cost", "baseline_cost", "qaly")),
    "delta_qaly": ("incremental QALYs (cost-effectiveness sample, adjusted)", "cost-effectiveness",
                   ("total_cost", "baseline_cost", "qaly")),
    "effect_adjusted": ("primary outcome difference, adjusted for baseline", "primary outcome", ("e1", "e0")),
}


def unit_of(key: str) -> str:
    """The unit of a bootstrapped quantity: pounds, QALYs or points of the primary outcome."""
    if key.startswith(("cost", "delta_cost", "inb_", "mean_cost")):
        return "£"
    if key.startswith(("qaly", "delta_qaly")):
        return "QALYs"
    return "points"


def _record(analysis: str, key: str, quantity: str, sample: str, estimate: float, reps: np.ndarray, conf: float,
            counts: dict, **extra) -> dict:
    finite = reps[np.isfinite(reps)]
    low, high = percentile_interval(finite, conf)
    rec = dict(analysis=analysis, key=key, quantity=quantity, unit=unit_of(key), sample=sample,
               estimate=float(estimate),
               std_error=float(finite.std(ddof=1)) if finite.size > 1 else math.nan, conf_low=low, conf_high=high,
               interval_method=INTERVAL_BOOTSTRAP, replicates=int(finite.size), imputations=None, notes="")
    rec.update(counts)
    rec.update(extra)
    if finite.size < reps.size:
        rec["notes"] = (f"{reps.size - finite.size} replicate(s) could not be computed (an arm with no participants "
                        "with the data needed) and were left out")
    return rec


def _complete_case(frame: pd.DataFrame, plan: Plan, settings: CostSettings, effect: str | None,
                   progress) -> tuple[list[dict], dict[str, np.ndarray], dict[str, float], dict[str, np.ndarray]]:
    has_effect = effect is not None
    f = _arrays(frame, has_effect)
    point = {k: float(v) for k, v in _estimates(np.ones(len(frame)), f, settings.inb_thresholds, has_effect).items()}
    reps = bootstrap(frame, settings, has_effect=has_effect, progress=progress)
    conf = settings.conf_level
    records = []
    for key, (label, sample, needs) in QUANTITIES.items():
        if key not in point:
            continue
        need = np.all([~np.isnan(frame[c].to_numpy(dtype=float)) for c in needs], axis=0)
        extra = {}
        if key == "cost_unadjusted":
            extra = dict(mean_treatment=point["mean_cost_treatment"], mean_control=point["mean_cost_control"])
        if key == "effect_adjusted":
            label = f"{effect} difference, adjusted for baseline {effect}"
        records.append(_record("complete_case", key, label, sample, point[key], reps[key], conf,
                               _counts(frame, plan, need), **extra))
    joint = f["joint"]
    for lam in settings.inb_thresholds:
        key = f"inb_{lam:g}"
        records.append(_record("complete_case", key, f"incremental net benefit at £{lam:,.0f} per QALY",
                               "cost-effectiveness", point[key], reps[key], conf, _counts(frame, plan, joint)))
    return records, reps, point, f


def _multiple_imputation(frame: pd.DataFrame, plan: Plan, settings: CostSettings, effect: str | None,
                         progress) -> tuple[list[dict], dict[str, int], list[str]]:
    """Impute total cost, baseline cost, utilities (and the primary outcome) within arm; bootstrap each completed
    data set with the same replicates; pool by Rubin's rules (bootstrap variance as within-imputation variance)."""
    md = plan.missing_data
    d = plan.design
    has_effect = effect is not None
    columns = ["total_cost", "baseline_cost", "u0", "u1"] + (["e0", "e1"] if has_effect else [])
    missing = {c: int(frame[c].isna().sum()) for c in columns}
    if not any(missing.values()):
        return [], missing, ["no missing costs or utilities: the complete-case analysis is the analysis"]
    rng = np.random.default_rng(md.seed)
    completed: list[list[pd.DataFrame]] = [[] for _ in range(md.imputations)]
    notes = []
    for arm in d.arms:
        part = frame[frame["arm"] == arm].copy()
        team_mean = add_team_mean(part, "baseline_cost")  # as the outcomes' imputation uses the baseline score
        filled, left = impute_columns(part, columns + [team_mean], md.imputations, rng)
        if left:
            notes.append(f"multiple imputation: {', '.join(left)} has fewer than 2 observed values in the {arm} "
                         "arm and could not be imputed there")
        for i, piece in enumerate(filled):
            completed[i].append(piece)
    horizon_years = settings.horizon_months / 12
    factor = _discount_factor(settings.discount_rate, horizon_years)
    per_key: dict[str, tuple[list[float], list[float]]] = {}
    for pieces in completed:
        full = pd.concat(pieces).loc[frame.index]
        full["qaly"] = horizon_years * (full["u0"] + full["u1"]) / 2 * factor
        f = _arrays(full, has_effect)
        point = _estimates(np.ones(len(full)), f, settings.inb_thresholds, has_effect)
        reps = bootstrap(full, settings, has_effect=has_effect, progress=progress)
        for key, value in point.items():
            est, var = per_key.setdefault(key, ([], []))
            est.append(float(value))
            finite = reps[key][np.isfinite(reps[key])]
            var.append(float(finite.var(ddof=1)) if finite.size > 1 else math.nan)
    n = len(frame)
    everyone = _counts(frame, plan, np.ones(n, dtype=bool))
    imputed_text = ", ".join(f"{c} {k}" for c, k in missing.items() if k)
    records = []
    keys = [k for k in ("cost_adjusted", "qaly_adjusted", "effect_adjusted") if k in per_key]
    keys += [f"inb_{lam:g}" for lam in settings.inb_thresholds]
    for key in keys:
        est, var = per_key[key]
        if not all(np.isfinite(var)):
            continue
        pooled = rubin_pool(np.array(est), np.array(var), float(n - 3), settings.conf_level)
        if key.startswith("inb_"):
            label, sample = f"incremental net benefit at £{float(key[4:]):,.0f} per QALY", "cost-effectiveness"
        else:
            label, sample, _ = QUANTITIES[key]
            if key == "effect_adjusted":
                label = f"{effect} difference, adjusted for baseline {effect}"
        records.append(dict(
            analysis="multiple_imputation", key=key, quantity=label, unit=unit_of(key), sample=sample,
            estimate=pooled["estimate"],
            std_error=pooled["std_error"], conf_low=pooled["conf_low"], conf_high=pooled["conf_high"],
            interval_method=INTERVAL_RUBIN, replicates=settings.replicates, imputations=md.imputations,
            notes=(f"imputed within arm by chained equations (predictive mean matching), {md.imputations} "
                   f"imputations, seed {md.seed}; values imputed: {imputed_text}; fraction of missing information "
                   f"{pooled['fraction_missing_info']:.2f}"),
            **everyone))
    return records, missing, notes


def analyse_costs(data: pd.DataFrame, plan: Plan, *, source: str = "data",
                  progress: Callable[[int], None] | None = None) -> CostAnalysis:
    """The whole costs analysis the plan's ``costs`` section describes, on scored long data.

    ``progress`` (optional) is called with the number of bootstrap replicates just finished; the total is
    ``bootstrap_total(plan)``.
    """
    settings = plan.costs
    if settings is None:
        raise CpevalError(f"{plan.source}: no costs section in the plan; expected costs: {{unit_costs: ..., "
                          "price_year: ..., services: ...} (docs/costs.md)")
    d = plan.design
    notes: list[str] = []
    utility = settings.utility or "eq5d5l_index"
    effect = settings.effect or plan.primary
    for column, key in ((utility, "utility"), (effect, "effect")):
        if column and column not in data.columns:
            raise CpevalError(f"{plan.source}: costs.{key} column {column!r} is not in the data; expected a score "
                              f"column (e.g. eq5d5l_index for utility, rguk_total for the primary outcome)")
    unit_path = resolve_cost_file(settings.unit_costs, settings, "unit_costs", plan.source)
    index, index_name = None, "price index"
    if settings.price_index:
        index_path = resolve_cost_file(settings.price_index, settings, "price_index", plan.source)
        index, index_name = load_price_index(index_path), str(index_path)
    prices = priced_unit_costs(load_unit_costs(unit_path), settings.price_year, index, str(unit_path), index_name)

    excluded: list[str] = []
    if settings.services:
        unpriced = [s.service for s in settings.services if s.service not in set(prices["service"])]
        if unpriced and not settings.exclude_unpriced:
            raise CpevalError(f"{plan.source}: service(s) {', '.join(unpriced)} (costs.services) have no unit cost in "
                              f"{unit_path}; expected a row for each, or costs.exclude_unpriced: true to leave them "
                              "out (they are then listed in the report)")
        excluded = unpriced
        use, qa = service_costs_wide(data, plan, settings, prices, source)
    else:
        from cpeval.io import load_variable_map, read_data

        use_path = resolve_cost_file(settings.service_use, settings, "service_use", plan.source)
        use_map = None
        if settings.service_use_map:
            use_map = load_variable_map(resolve_cost_file(settings.service_use_map, settings, "service_use_map",
                                                          plan.source))
        imported = read_data(use_path, variable_map=use_map)
        if settings.exclude_unpriced:
            named = set(imported.data["service"].astype(str).str.strip()) if "service" in imported.data else set()
            excluded = sorted(named - set(prices["service"]) - {NO_SERVICE})
        use, qa = service_costs_long(imported.data, imported.source, data, plan, prices, excluded)
        qa = concat_qa(imported.qa, qa)
    if excluded:
        notes.append(f"service(s) with no unit cost left out of the costs (costs.exclude_unpriced): "
                     f"{', '.join(excluded)}")
    prices = prices[prices["service"].isin(set(use["service"]))].reset_index(drop=True)
    implementation = pd.DataFrame(columns=["team", "arm", "total", "caseload", "per_participant", "spread_over"])
    if settings.implementation_costs is not None:
        implementation, impl_notes = load_implementation_costs(settings.implementation_costs, settings, plan, data,
                                                               index, index_name)
        notes += impl_notes
    else:
        notes.append("no implementation costs in the plan: only service use is costed")

    period = period_costs(use)
    people = data.drop_duplicates(d.participant).set_index(d.participant)
    arms = people[d.arm].astype(str)
    period["arm"] = period["participant"].map(arms)
    period["team"] = period["participant"].map(people[d.cluster])
    frame = cost_frame(period, implementation, data, plan, settings, utility, effect)
    period = period.merge(frame[["participant", "implementation_cost"]], on="participant", how="left")
    period.loc[period["timepoint"] != d.follow_up, "implementation_cost"] = np.nan
    for arm in d.arms:
        if frame.loc[frame["arm"] == arm, "cluster"].nunique() < 2:
            raise CpevalError(f"{plan.source}: the {arm} arm has fewer than 2 teams in the data; the cluster "
                              "bootstrap needs at least 2 teams per arm")
    categories = [c for c in period.columns if c.startswith("cost_")]
    summary = cost_summary_table(period, plan, categories + ["service_cost"])
    fu = frame.assign(timepoint=d.follow_up)
    summary = pd.concat([summary, cost_summary_table(fu, plan, ["implementation_cost", "total_cost"])
                         .query("timepoint == @d.follow_up")], ignore_index=True)

    records, reps, point, arrays = _complete_case(frame, plan, settings, effect, progress)
    icer_value, icer_text = icer_statement(point["delta_cost"], point["delta_qaly"])
    records.append(dict(analysis="complete_case", key="icer", quantity="ICER (incremental cost per QALY)",
                        unit="£ per QALY",
                        sample="cost-effectiveness", estimate=icer_value, interval_method="",
                        notes=icer_text + "; no interval (a ratio's interval is unreliable): see the acceptability "
                                          "curve and net benefit",
                        **_counts(frame, plan, arrays["joint"])))
    quadrants = [dict(plane="QALY", quadrant=q, share=s)
                 for q, s in quadrant_shares(reps["delta_qaly"], reps["delta_cost"]).items()]
    per_effect = {"value": math.nan, "statement": "no primary outcome", "effect": effect}
    if effect:
        value, text = icer_statement(point["delta_cost_e"], point["delta_effect"], unit=f"extra point of {effect}")
        per_effect = {"value": value, "statement": text, "effect": effect,
                      "delta_cost": point["delta_cost_e"], "delta_effect": point["delta_effect"]}
        records.append(dict(analysis="complete_case", key="cost_per_effect",
                            quantity=f"incremental cost per extra point of {effect}", unit="£ per point",
                            sample="cost and primary outcome", estimate=value, interval_method="",
                            notes=text + "; no interval: see the plane's quadrant shares",
                            **_counts(frame, plan, arrays["joint_effect"])))
        quadrants += [dict(plane=effect, quadrant=q, share=s)
                      for q, s in quadrant_shares(reps["delta_effect"], reps["delta_cost_e"]).items()]
    imputed_counts: dict[str, int] = {}
    if plan.missing_data.enabled:
        mi_records, imputed_counts, mi_notes = _multiple_imputation(frame, plan, settings, effect, progress)
        records += mi_records
        notes += mi_notes
    if not np.isfinite(point["delta_qaly"]) or not np.isfinite(point["delta_cost"]):
        notes.append("the cost-effectiveness analysis could not be done: an arm has no participant with total cost, "
                     "baseline cost and utilities at both time points")
    lo, hi, step = settings.thresholds
    grid = np.arange(lo, hi + step / 2, step)
    for lam in settings.inb_thresholds:
        if lam not in grid:
            grid = np.sort(np.append(grid, lam))
    ceac = acceptability_curve(reps["delta_qaly"], reps["delta_cost"], grid)
    replicate_table = pd.DataFrame({k: v for k, v in reps.items()
                                    if k in ("cost_unadjusted", "cost_adjusted", "delta_cost", "delta_qaly",
                                             "delta_cost_e", "delta_effect")})
    results = pd.DataFrame(records).reindex(columns=COST_RECORD_COLUMNS)
    analysis = CostAnalysis(
        plan=plan, settings=settings, unit_costs=prices, implementation=implementation, use=use, period_costs=period,
        frame=frame, service_use=service_use_table(use, arms, plan), cost_summary=summary, results=results,
        replicates=replicate_table, ceac=ceac, quadrants=pd.DataFrame(quadrants),
        icer={"value": icer_value, "statement": icer_text}, cost_per_effect=per_effect,
        imputed_counts=imputed_counts, excluded_services=excluded, qa=qa, methods="", notes=notes)
    analysis.methods = methods_paragraph(analysis, utility)
    return analysis


def bootstrap_total(plan: Plan) -> int:
    """How many bootstrap replicates analyse_costs will draw (for a progress bar)."""
    s = plan.costs
    if s is None:
        return 0
    return s.replicates * (1 + (plan.missing_data.imputations if plan.missing_data.enabled else 0))


def methods_paragraph(analysis: CostAnalysis, utility: str) -> str:
    """A methods paragraph for the costs analysis, generated from the plan and what was used."""
    s, d = analysis.settings, analysis.plan.design
    sources = "; ".join(sorted(set(analysis.unit_costs["source"])))
    years = sorted(set(analysis.unit_costs["price_year"]))
    index = (f" Unit costs from other price years ({', '.join(y for y in years if y != s.price_year)}) were "
             f"converted with the price index {Path(s.price_index).name}." if s.price_index and
             any(y != s.price_year for y in years) else "")
    impl = analysis.implementation
    spread = ("each team's caseload" if len(impl) and (impl["spread_over"] == "caseload").all()
              else "the team's caseload or, where not given, its study participants")
    text = [
        f"Costs were estimated from the {s.perspective} perspective in "
        f"pounds sterling at {s.price_year} prices. Service use over the {s.recall_months:g} months before each "
        "interview was recorded with the Client Service Receipt Inventory and multiplied by unit costs "
        f"({sources}).{index}",
        (f"Implementation costs of the {d.treatment} teams (" + ", ".join(
            c for c in impl.columns if c not in ("team", "arm", "total", "caseload", "per_participant", "spread_over"))
         + f") were divided by {spread}. " if len(impl) else "")
        + f"Total cost per participant was the service cost over the {s.horizon_months:g}-month follow-up plus the "
        "implementation cost.",
        f"Quality-adjusted life years (QALYs) were the area under the {_utility_label(analysis.plan, utility)} curve "
        f"between baseline and {s.horizon_months:g} months (trapezium rule).",
        ("Costs and QALYs were not discounted because the horizon is " + ("not more than a year." if
         s.horizon_months <= 12 else "discounting was not requested.") if (s.discount_rate == 0 or
         s.horizon_months <= 12) else f"Costs and QALYs beyond the first year were discounted at "
         f"{100 * s.discount_rate:g}% a year."),
        f"Differences are {d.treatment} (comparator) minus {d.control} (reference). Mean costs were compared "
        "unadjusted and adjusted for baseline service cost, and QALYs adjusted for baseline utility, by least "
        "squares; incremental cost and QALYs for the cost-effectiveness analysis come from the participants with "
        "both, so each bootstrap replicate gives a pair.",
        f"Uncertainty was estimated with a two-stage cluster bootstrap ({s.replicates} replicates, seed {s.seed}): "
        "teams were resampled with replacement within each arm, then participants with replacement within each "
        "sampled team; no shrinkage correction was applied. Intervals are bootstrap percentile intervals "
        f"({100 * s.conf_level:g}%) computed as R boot.ci does.",
        "The replicates give the cost-effectiveness plane and its quadrant shares, the cost-effectiveness "
        f"acceptability curve (thresholds £{s.thresholds[0]:,.0f} to £{s.thresholds[1]:,.0f} per QALY) and "
        "incremental net benefit (threshold x incremental QALYs - incremental cost) at "
        + " and ".join(f"£{v:,.0f}" for v in s.inb_thresholds)
        + " per QALY. An ICER is reported only when the point estimate lies in the north-east or south-west "
          "quadrant.",
    ]
    if analysis.cost_per_effect.get("effect"):
        text.append(f"Because the primary outcome ({analysis.cost_per_effect['effect']}) is not a QALY, the "
                    "incremental cost per extra point of it is also reported, from the participants with costs and "
                    "both scores, adjusted for its baseline.")
    md = analysis.plan.missing_data
    if md.enabled:
        text.append("Complete cases were analysed; as a sensitivity analysis, missing costs, utilities and outcome "
                    "scores were imputed by chained equations with predictive mean matching within each arm "
                    f"({md.imputations} imputations, seed {md.seed}), each completed data set was bootstrapped with "
                    "the same design, and estimates were pooled by Rubin's rules with the bootstrap variance as the "
                    "within-imputation variance.")
    text.append(f"Analyses used cpeval {__version__}.")
    return " ".join(text)


# ----------------------------------------------------------------------------------------------------------------
# Output
# ----------------------------------------------------------------------------------------------------------------


def costs_as_dict(analysis: CostAnalysis) -> dict:
    from cpeval.compare import _records

    s, d = analysis.settings, analysis.plan.design
    return {
        "cpeval_version": __version__,
        "study": d.study,
        "plan": analysis.plan.source,
        "reference": d.control,
        "comparator": d.treatment,
        "perspective": s.perspective,
        "price_year": s.price_year,
        "bootstrap": {"design": "two-stage cluster (teams within arm, then participants within team)",
                      "replicates": s.replicates, "seed": s.seed, "conf_level": s.conf_level,
                      "interval": "percentile (as R boot.ci type='perc')"},
        "unit_costs": _records(analysis.unit_costs),
        "excluded_services": analysis.excluded_services,
        "implementation_costs": _records(analysis.implementation),
        "service_use": _records(analysis.service_use),
        "cost_summary": _records(analysis.cost_summary),
        "results": _records(analysis.results),
        "icer": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in analysis.icer.items()},
        "cost_per_effect": {k: (None if isinstance(v, float) and math.isnan(v) else v)
                            for k, v in analysis.cost_per_effect.items()},
        "quadrants": _records(analysis.quadrants),
        "ceac": _records(analysis.ceac),
        "imputed": analysis.imputed_counts,
        "methods": analysis.methods,
        "notes": analysis.notes,
        "qa_records": int(len(analysis.qa)),
    }


def write_costs(analysis: CostAnalysis, path: str | Path) -> None:
    """COSTS.json (every table) or COSTS.csv (the results records)."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        analysis.results.to_csv(path, index=False)
    else:
        path.write_text(json.dumps(costs_as_dict(analysis), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def participant_costs_table(analysis: CostAnalysis) -> pd.DataFrame:
    """Per participant and period: costs by category, service cost, implementation cost (follow-up), team, arm."""
    d = analysis.plan.design
    out = analysis.period_costs.rename(columns={"participant": d.participant, "timepoint": d.timepoint,
                                                "team": d.cluster, "arm": d.arm})
    first = [d.participant, d.cluster, d.arm, d.timepoint]
    return out[first + [c for c in out.columns if c not in first]]
