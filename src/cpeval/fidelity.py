"""Fidelity to the Connecting People Intervention: CPIFS-W (workers) and CPIFS-SU (service users).

Analysis functions only (no CLI, no report). Every function takes and returns pandas DataFrames with fixed,
documented columns.

- :func:`fidelity_scores` - one row per rater (worker or service user): version, team, five domain scores, total,
  completeness; plus a QA table (``cpeval.qa.QA_COLUMNS``) of service users whose worker is not in the worker data
  (they are kept, flagged ``worker_linked = False``).
- :func:`team_fidelity` - per team x version x domain (and total): mean, SD, n; optional bands for each team's
  total. :func:`band_scores` bands any scores (e.g. individual workers) with the same rule.
- :func:`worker_service_user_agreement` - ICC(A,1) and Bland-Altman bias / limits of agreement between each
  worker's CPIFS-W score and the mean CPIFS-SU score of that worker's service users.
- :func:`domain_reliability` - Cronbach's alpha with a Feldt interval per domain (``cpeval.reliability``).
- :func:`fidelity_outcome_models` - within the implementation arm, follow-up outcome ~ fidelity + baseline outcome
  + (1 | team) by ``cpeval.mixed.fit_mixed``; an observational (non-randomised) comparison.

Scoring rule: as the instrument definitions (instruments/cpifs_w.yaml, cpifs_su.yaml) say - domain score = mean of
its items (at most one missing), total = mean of the five domain scores. When the data already hold the scored
columns (``cpifs_w_com`` ...) they are used as they are; otherwise the items are scored here by
``cpeval.scoring.score`` with the same definitions. Neither the aggregation rule nor any fidelity cut-off is
published, so :func:`team_fidelity` has no default bands: the caller (the analysis plan) states them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats

from cpeval.errors import CpevalError
from cpeval.instruments import Instrument, load_instruments
from cpeval.mixed import fit_mixed
from cpeval.outcomes import ancova_frame, notes_for_term
from cpeval.plan import Plan
from cpeval.qa import qa_frame
from cpeval.reliability import cronbach_alpha
from cpeval.scoring import score, validated_items

__all__ = [
    "DOMAINS", "VERSIONS", "SCORE_COLUMNS", "TEAM_COLUMNS", "AGREEMENT_COLUMNS", "RELIABILITY_COLUMNS",
    "MODEL_COLUMNS", "FidelityScores", "fidelity_scores", "parse_bands", "band_scores", "format_bands",
    "team_fidelity", "agreement_pairs", "icc_a1", "bland_altman", "worker_service_user_agreement",
    "domain_reliability", "fidelity_outcome_models",
]

DOMAINS = ("com", "ass", "pla", "par", "rel")
DOMAIN_LABELS = {
    "com": "engagement with service users' community", "ass": "assessment", "pla": "planning",
    "par": "equal partnership", "rel": "relationships", "total": "total (mean of the five domains)",
}
VERSIONS = {"W": "cpifs_w", "SU": "cpifs_su"}

#: fidelity_scores: one row per rater
SCORE_COLUMNS = [
    "version", "rater_id", "team", "arm", "timepoint", "worker_id", "worker_linked",
    *DOMAINS, "total", "examples", "items_answered", "n_items", "completeness",
]
#: team_fidelity: one row per team x version x domain
TEAM_COLUMNS = ["team", "arm", "version", "domain", "mean", "sd", "n", "band", "bands"]
#: worker_service_user_agreement: one row per domain (and total)
AGREEMENT_COLUMNS = [
    "domain", "n_pairs", "n_service_users", "icc_type", "icc", "icc_conf_low", "icc_conf_high",
    "mean_worker", "mean_service_users", "bias", "sd_difference", "loa_low", "loa_high", "note",
]
#: domain_reliability
RELIABILITY_COLUMNS = ["version", "domain", "n_items", "n", "alpha", "conf_low", "conf_high", "note"]
#: fidelity_outcome_models: the outcome-record keys of cpeval.outcomes
MODEL_COLUMNS = [
    "outcome", "model", "term", "estimate", "std_error", "df", "df_method", "conf_low", "conf_high", "p_value",
    "n_participants", "n_clusters", "notes",
]

ICC_TYPE = "ICC(A,1): two-way random effects, absolute agreement, single rater (Shrout-Fleiss ICC2)"
MIN_PAIRS = 5  # fewer worker / service-user pairs: no ICC (pingouin and psych need a few targets)
LOA_Z = 1.96

MODEL_WORKER = "fidelity_worker"
MODEL_SERVICE_USER = "fidelity_service_user"
TERM_WORKER = "CPIFS-W total of the participant's worker (per point)"
TERM_SERVICE_USER = "CPIFS-SU total rated by the participant (per point)"
OBSERVATIONAL_NOTE = ("observational comparison within the {arm} arm: fidelity was not randomised, so the "
                      "association may be confounded (by worker, team or service-user characteristics)")


class FidelityScores(NamedTuple):
    """What :func:`fidelity_scores` returns: the scores and the QA records of unlinked service users."""

    scores: pd.DataFrame
    qa: pd.DataFrame


# ----------------------------------------------------------------------------------------------------------------
# Scores
# ----------------------------------------------------------------------------------------------------------------


def _instrument(version: str, instruments: Mapping[str, Instrument] | None) -> Instrument:
    if version not in VERSIONS:
        raise CpevalError(f"version is {version!r}; expected one of {', '.join(VERSIONS)} (workers / service users)")
    registry = instruments if instruments is not None else load_instruments()
    inst_id = VERSIONS[version]
    if inst_id not in registry:
        raise CpevalError(f"instrument '{inst_id}' is not among the instrument definitions; expected a definition "
                          f"{inst_id}.yaml")
    inst = registry[inst_id]
    for domain in (*DOMAINS, "total"):
        if not any(s.id == domain for s in inst.scales):
            raise CpevalError(f"{inst.path}: instrument '{inst_id}' has no scale '{domain}'; expected the five "
                              f"domains {', '.join(DOMAINS)} and total")
    return inst


def _domain_items(inst: Instrument) -> list[str]:
    """Item ids of the five domains (the self-rated items; practice examples excluded)."""
    items: list[str] = []
    for domain in DOMAINS:
        items += list(inst.scale(domain).items)
    return items


def _score_block(data: pd.DataFrame, version: str, inst: Instrument) -> pd.DataFrame:
    """Domain scores, total, examples and completeness for each row of ``data`` (same index)."""
    scales = [inst.scale(d) for d in (*DOMAINS, "total")]
    has_examples = any(s.id == "examples" for s in inst.scales)
    if has_examples:
        scales.append(inst.scale("examples"))
    item_ids = _domain_items(inst)
    present = validated_items(data, inst)
    columns = [inst.item(i).column for i in item_ids]
    if all(present[i] is None for i in item_ids) and not all(s.column in data.columns for s in scales[:6]):
        raise CpevalError(f"{version} data: none of the {inst.id} item columns ({columns[0]} ... {columns[-1]}) "
                          f"and not all score columns ({', '.join(s.column for s in scales[:6])}) are in the data")
    scored = data
    if not all(s.column in data.columns for s in scales[:6]):  # the five domains and the total
        scored = score(data.reset_index(drop=True), [inst], source=f"{version} data").data
        scored.index = data.index
    out = pd.DataFrame(index=data.index)
    for s in scales:
        name = "examples" if s.id == "examples" else s.id
        out[name] = pd.to_numeric(scored[s.column], errors="coerce").astype(float) if s.column in scored else np.nan
    if not has_examples:
        out["examples"] = np.nan
    answered = np.zeros(len(data))
    for i in item_ids:
        if present[i] is not None:
            answered += ~np.isnan(present[i])
    if all(present[i] is None for i in item_ids):  # scores given without items: completeness unknown
        out["items_answered"] = pd.array([pd.NA] * len(data), dtype="Int64")
        out["completeness"] = np.nan
    else:
        out["items_answered"] = pd.array(answered.astype(int), dtype="Int64")
        out["completeness"] = answered / len(item_ids)
    out["n_items"] = len(item_ids)
    return out


def _require(data: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    absent = [c for c in columns if c not in data.columns]
    if absent:
        raise CpevalError(f"{what}: column(s) {', '.join(absent)} not in the data; expected {', '.join(columns)}")


def _text(value: Any) -> Any:
    """IDs as comparable values: 111.0 and 111 and '111' are the same worker."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def fidelity_scores(workers: pd.DataFrame, service_users: pd.DataFrame, *, team: str = "team_id",
                    worker: str = "worker_id", participant: str = "participant_id", arm: str = "arm",
                    timepoint: str = "timepoint",
                    instruments: Mapping[str, Instrument] | None = None) -> FidelityScores:
    """One row per rater: every worker (CPIFS-W) and every service-user row with any CPIFS-SU answer.

    Parameters
    ----------
    workers : DataFrame
        One row per worker: ``worker``, ``team`` and the CPIFS-W items (``cpifs_w_com1`` ...) and/or scores.
    service_users : DataFrame
        The study data (long: one row per participant and time point). Rows where no CPIFS-SU item or score is
        present (e.g. baseline interviews) are not raters and are left out; every other row is kept.
    team, worker, participant, arm, timepoint : str
        Column names. ``arm`` and ``timepoint`` are optional (NA when absent).
    instruments : mapping, optional
        Instrument definitions (id -> Instrument); default: cpeval's shipped definitions.

    Returns
    -------
    FidelityScores(scores, qa)
        ``scores`` has the columns ``SCORE_COLUMNS``: version ("W" / "SU"), rater_id (worker / participant id as
        text), team, arm, timepoint, worker_id (for a service user: the worker named in their row), worker_linked
        (False for a service user whose worker is missing or not among the workers; True for workers), the domain
        scores com, ass, pla, par, rel, total, examples (workers' consensus-rated practice examples; NA for
        service users), items_answered, n_items, completeness (= items_answered / n_items, practice examples not
        counted; NA when the data hold scores but no item columns). ``qa`` lists each unlinked service user (reason ``worker_not_found`` or ``worker_missing``) and
        each service user whose worker belongs to another team (``worker_other_team``).

    Raises
    ------
    CpevalError
        A column absent; a worker without an id or a team (named); a worker id twice; no CPIFS data.
    """
    inst_w = _instrument("W", instruments)
    inst_su = _instrument("SU", instruments)
    _require(workers, [worker, team], "workers")
    _require(service_users, [participant, worker, team], "service users")

    w_ids = workers[worker].map(_text)
    no_id = np.flatnonzero(w_ids.isna().to_numpy())
    if no_id.size:
        raise CpevalError(f"workers: row {no_id[0] + 1} has no {worker}; expected an id for every worker")
    dup = w_ids[w_ids.duplicated()]
    if not dup.empty:
        raise CpevalError(f"workers: {worker} {dup.iloc[0]} appears in more than one row; expected one row per "
                          "worker")
    w_team = workers[team].map(_text)
    no_team = w_ids[w_team.isna()]
    if not no_team.empty:
        raise CpevalError(f"workers: worker {no_team.iloc[0]} has no {team}; expected the team of every worker "
                          f"({len(no_team)} worker(s) without one: {', '.join(no_team.astype(str).head(10))})")

    w_block = _score_block(workers, "workers", inst_w)
    w_out = pd.DataFrame({
        "version": "W", "rater_id": w_ids.to_numpy(), "team": w_team.to_numpy(),
        "arm": workers[arm].map(_text).to_numpy() if arm in workers else None,
        "timepoint": workers[timepoint].map(_text).to_numpy() if timepoint in workers else None,
        "worker_id": w_ids.to_numpy(), "worker_linked": True,
    })
    w_out = pd.concat([w_out, w_block.reset_index(drop=True)], axis=1)

    su_block = _score_block(service_users, "service users", inst_su)
    su_cols = [inst_su.item(i).column for i in _domain_items(inst_su)]
    su_cols += [inst_su.scale(d).column for d in (*DOMAINS, "total")]
    rated = service_users[[c for c in su_cols if c in service_users.columns]].notna().any(axis=1).to_numpy()
    su = service_users[rated]
    su_block = su_block[rated]
    su_worker = su[worker].map(_text)
    su_team = su[team].map(_text)
    team_of_worker = dict(zip(w_ids, w_team))
    linked = su_worker.isin(set(w_ids)).to_numpy() & su_worker.notna().to_numpy()
    su_out = pd.DataFrame({
        "version": "SU", "rater_id": su[participant].map(_text).to_numpy(), "team": su_team.to_numpy(),
        "arm": su[arm].map(_text).to_numpy() if arm in su else None,
        "timepoint": su[timepoint].map(_text).to_numpy() if timepoint in su else None,
        "worker_id": su_worker.to_numpy(), "worker_linked": linked,
    })
    su_out = pd.concat([su_out, su_block.reset_index(drop=True)], axis=1)

    qa = []
    rows = np.flatnonzero(rated) + 1
    for k in range(len(su_out)):
        record = dict(source="service users", row=int(rows[k]), participant_id=su_out.at[k, "rater_id"],
                      timepoint=su_out.at[k, "timepoint"], variable=worker, value=su_out.at[k, "worker_id"])
        wid = su_out.at[k, "worker_id"]
        if pd.isna(wid):
            qa.append({**record, "reason": "worker_missing", "expected": f"the {worker} of the participant's worker",
                       "action": "kept (worker_linked = False); left out of worker-service user agreement and of "
                                 "the worker-fidelity outcome model"})
        elif not linked[k]:
            qa.append({**record, "reason": "worker_not_found", "expected": f"a {worker} in the workers data",
                       "action": "kept (worker_linked = False); left out of worker-service user agreement and of "
                                 "the worker-fidelity outcome model"})
        elif not pd.isna(su_out.at[k, "team"]) and team_of_worker[wid] != su_out.at[k, "team"]:
            qa.append({**record, "reason": "worker_other_team",
                       "expected": f"a worker of the participant's team ({su_out.at[k, 'team']}); the worker's "
                                   f"team is {team_of_worker[wid]}",
                       "action": "kept as linked; each rater keeps their own team"})
    scores = pd.concat([w_out, su_out], ignore_index=True)[SCORE_COLUMNS]
    scores["worker_linked"] = scores["worker_linked"].astype(bool)
    # a rater who answered some items but too few in a domain has no score there: listed, never silently absent
    for dom in DOMAINS:
        for k in np.flatnonzero(scores[dom].isna().to_numpy() & scores["total"].isna().to_numpy()
                                & (scores["items_answered"].fillna(0).to_numpy() > 0)):
            r = scores.iloc[k]
            qa.append(dict(source="workers" if r["version"] == "W" else "service users", row=None,
                           participant_id=r["rater_id"] if r["version"] == "SU" else None,
                           timepoint=r["timepoint"], variable=f"{VERSIONS[r['version']]}_{dom}", value=None,
                           reason="domain_not_scored",
                           expected="enough answered items for the domain score (at most 1 missing)",
                           action=f"{DOMAIN_LABELS[dom]} and the total left missing for rater {r['rater_id']}"))
    return FidelityScores(scores, qa_frame(qa))


# ----------------------------------------------------------------------------------------------------------------
# Teams and bands
# ----------------------------------------------------------------------------------------------------------------


def parse_bands(bands: Any) -> list[dict]:
    """Validate bands: a list of ``{label, max}`` with increasing inclusive upper limits; the last has no max.

    Example: ``[{"label": "low", "max": 4.99}, {"label": "moderate", "max": 6.99}, {"label": "high"}]``.
    Returns a list of ``{"label": str, "max": float | None}``.
    """
    if not isinstance(bands, (list, tuple)) or len(bands) < 2:
        raise CpevalError(f"bands is {bands!r}; expected a list of at least 2 bands like [{{label: low, max: 4.99}}, "
                          "{label: high}] (inclusive upper limits, the last band open)")
    out: list[dict] = []
    previous = -math.inf
    for i, band in enumerate(bands):
        if not isinstance(band, Mapping) or "label" not in band:
            raise CpevalError(f"bands[{i}] is {band!r}; expected a mapping with a label and (except the last) a max")
        unknown = sorted(set(band) - {"label", "max"})
        if unknown:
            raise CpevalError(f"bands[{i}] has key '{unknown[0]}'; expected only label and max")
        label = band["label"]
        if not isinstance(label, str) or not label.strip():
            raise CpevalError(f"bands[{i}].label is {label!r}; expected a non-empty text")
        last = i == len(bands) - 1
        upper = band.get("max")
        if last:
            if upper is not None:
                raise CpevalError(f"bands[{i}] ({label}) has max {upper!r}; expected no max for the last band "
                                  "(it takes every higher score)")
        else:
            if isinstance(upper, bool) or not isinstance(upper, (int, float)) or not math.isfinite(upper):
                raise CpevalError(f"bands[{i}] ({label}) max is {upper!r}; expected a number (inclusive upper limit)")
            if upper <= previous:
                raise CpevalError(f"bands[{i}] ({label}) max is {upper!r}; expected more than the previous band's "
                                  f"max ({previous:g})")
            previous = float(upper)
        if label in [b["label"] for b in out]:
            raise CpevalError(f"bands[{i}].label '{label}' is used twice; expected each label once")
        out.append({"label": label, "max": None if last else float(upper)})
    return out


def format_bands(bands: Any) -> str:
    """The band thresholds as one line, e.g. ``low <= 4.99 < moderate <= 6.99 < high``."""
    parsed = parse_bands(bands)
    text = parsed[0]["label"]
    for before, band in zip(parsed, parsed[1:]):
        text += f" <= {before['max']:g} < {band['label']}"
    return text


def band_scores(values: Any, bands: Any) -> pd.Series:
    """The band label of each score (NA for a missing score); same index as ``values`` if it is a Series.

    A score equal to a band's max belongs to that band (inclusive upper limits).
    """
    parsed = parse_bands(bands)
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    x = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
    labels = np.full(len(x), None, dtype=object)
    done = np.isnan(x)
    for band in parsed:
        hit = ~done if band["max"] is None else (~done & (x <= band["max"]))
        labels[hit] = band["label"]
        done = done | hit
    return pd.Series(labels, index=series.index, dtype="object", name="band")


def team_fidelity(scores: pd.DataFrame, *, bands: Any = None) -> pd.DataFrame:
    """Team summaries of :func:`fidelity_scores`: per team x version x domain (com ... rel, total).

    Columns ``TEAM_COLUMNS``: team, arm (the team's arm; "mixed" if its raters disagree), version, domain, mean,
    sd (n - 1 denominator; NA for n < 2), n (raters with that score), band (for the total rows when ``bands`` is
    given; NA otherwise), bands (the thresholds as text, on every row; "" without bands). Raters are weighted
    equally (a team mean is the mean of its raters' scores). The thresholds are also in ``result.attrs["bands"]``.

    ``bands`` has no default: no CPIFS cut-off is published, so the analysis plan states them.
    """
    _require(scores, ["version", "team", *DOMAINS, "total"], "scores")
    text = format_bands(bands) if bands is not None else ""
    rows = []
    for (team, version), block in scores.groupby(["team", "version"], sort=True, dropna=False):
        arms = block["arm"].dropna().unique() if "arm" in block else []
        arm = arms[0] if len(arms) == 1 else ("mixed" if len(arms) > 1 else None)
        for domain in (*DOMAINS, "total"):
            x = pd.to_numeric(block[domain], errors="coerce").dropna()
            rows.append(dict(team=team, arm=arm, version=version, domain=domain,
                             mean=float(x.mean()) if len(x) else np.nan,
                             sd=float(x.std(ddof=1)) if len(x) > 1 else np.nan, n=int(len(x))))
    out = pd.DataFrame(rows, columns=TEAM_COLUMNS[:-2])
    out["band"] = None
    if bands is not None:
        total = out["domain"] == "total"
        out.loc[total, "band"] = band_scores(out.loc[total, "mean"], bands).to_numpy()
    out["band"] = out["band"].astype("object")
    out["bands"] = text
    out.attrs["bands"] = parse_bands(bands) if bands is not None else None
    return out[TEAM_COLUMNS]


# ----------------------------------------------------------------------------------------------------------------
# Worker - service user agreement
# ----------------------------------------------------------------------------------------------------------------


def agreement_pairs(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per worker with at least one linked service user: worker_id, team, n_service_users, and for each
    domain and the total ``w_<domain>`` (the worker's score) and ``su_<domain>`` (mean of the service users')."""
    _require(scores, ["version", "worker_id", "worker_linked", "team", *DOMAINS, "total"], "scores")
    workers = scores[scores["version"] == "W"].set_index("worker_id")
    su = scores[(scores["version"] == "SU") & scores["worker_linked"].astype(bool)]
    domains = [*DOMAINS, "total"]
    means = su.groupby("worker_id")[domains].mean()
    counts = su.groupby("worker_id").size()
    ids = [w for w in workers.index if w in counts.index]
    out = pd.DataFrame({"worker_id": ids, "team": workers.loc[ids, "team"].to_numpy(),
                        "n_service_users": counts.reindex(ids).to_numpy(dtype=int)})
    for d in domains:
        out[f"w_{d}"] = workers.loc[ids, d].to_numpy(dtype=float)
        out[f"su_{d}"] = means.loc[ids, d].to_numpy(dtype=float)
    return out


def icc_a1(x: Sequence[float], y: Sequence[float], *, conf_level: float = 0.95) -> dict:
    """ICC(A,1) of paired ratings by two raters (two-way random, absolute agreement, single rater), with the
    McGraw & Wong (1996) interval - R ``psych::ICC`` "ICC2" and ``pingouin.intraclass_corr`` row "ICC(A,1)".

    Computed here from the two-way ANOVA mean squares (targets MSR, raters MSC, error MSE; n targets, k = 2)
    with pingouin's and psych's formulas, because pingouin 0.7 rounds the interval to 2 decimals:
    ``ICC = (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)``. Pairs with a missing value are left out.
    Returns ``icc, conf_low, conf_high, n, note`` (NaN with a note for fewer than MIN_PAIRS pairs or no variance).
    tests/test_fidelity.py checks all three numbers against psych 2.2.9 and the point value against pingouin.
    """
    if isinstance(conf_level, bool) or not isinstance(conf_level, (int, float)) or not 0 < conf_level < 1:
        raise CpevalError(f"conf_level is {conf_level!r}; expected a number between 0 and 1, e.g. 0.95")
    return icc_a1_matrix(np.column_stack([np.asarray(x, dtype=float), np.asarray(y, dtype=float)]),
                         conf_level=conf_level)


def icc_a1_matrix(ratings: np.ndarray, *, conf_level: float = 0.95) -> dict:
    """ICC(A,1) for n targets x k raters (the same formulas as :func:`icc_a1`, for any k >= 2); targets with a
    missing rating are left out (the two-way ANOVA needs complete rows)."""
    if isinstance(conf_level, bool) or not isinstance(conf_level, (int, float)) or not 0 < conf_level < 1:
        raise CpevalError(f"conf_level is {conf_level!r}; expected a number between 0 and 1, e.g. 0.95")
    ratings = np.asarray(ratings, dtype=float)
    ok = ~np.isnan(ratings).any(axis=1)
    n = int(ok.sum())
    out = dict(icc=np.nan, conf_low=np.nan, conf_high=np.nan, n=n, note="")
    if n < MIN_PAIRS:
        what = "pairs" if ratings.shape[1] == 2 else "complete sets of ratings"
        out["note"] = f"fewer than {MIN_PAIRS} {what} (n = {n}): no ICC"
        return out
    r = ratings[ok]
    k = r.shape[1]
    grand = r.mean()
    ssr = k * float(((r.mean(axis=1) - grand) ** 2).sum())
    ssc = n * float(((r.mean(axis=0) - grand) ** 2).sum())
    sst = float(((r - grand) ** 2).sum())
    sse = sst - ssr - ssc
    msr, msc, mse = ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    if not denom > 1e-12 * max(1.0, sst) or not mse > 0:
        out["note"] = ("every score is the same: no ICC" if sst <= 0
                       else "no residual variance (the ratings differ by a constant or do not vary): no ICC")
        return out
    icc = (msr - mse) / denom
    a = 1 - conf_level
    fj = msc / mse
    df2 = (n - 1) * (k - 1)
    vn = df2 * (k * icc * fj + n * (1 + (k - 1) * icc) - k * icc) ** 2
    vd = (n - 1) * k ** 2 * icc ** 2 * fj ** 2 + (n * (1 + (k - 1) * icc) - k * icc) ** 2
    v = vn / vd
    f_u = stats.f.ppf(1 - a / 2, n - 1, v)
    f_l = stats.f.ppf(1 - a / 2, v, n - 1)
    low = n * (msr - f_u * mse) / (f_u * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (f_l * msr - mse) / (k * msc + (k * n - k - n) * mse + n * f_l * msr)
    out.update(icc=float(icc), conf_low=float(low), conf_high=float(high))
    return out


def bland_altman(x: Sequence[float], y: Sequence[float]) -> dict:
    """Bland-Altman agreement of ``x - y``: bias (mean difference), SD of the differences (n - 1) and the 95 %
    limits of agreement ``bias -/+ 1.96 SD``. Pairs with a missing value are left out."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    d = x[ok] - y[ok]
    out = dict(bias=np.nan, sd_difference=np.nan, loa_low=np.nan, loa_high=np.nan, n=int(ok.sum()))
    if d.size >= 1:
        out["bias"] = float(d.mean())
    if d.size >= 2:
        sd = float(d.std(ddof=1))
        out.update(sd_difference=sd, loa_low=out["bias"] - LOA_Z * sd, loa_high=out["bias"] + LOA_Z * sd)
    return out


def worker_service_user_agreement(scores: pd.DataFrame) -> pd.DataFrame:
    """Agreement between workers and their service users, per domain and total (columns ``AGREEMENT_COLUMNS``).

    Unit of analysis: **the worker.** Each worker with at least one linked service user gives one pair: the
    worker's CPIFS-W score and the mean CPIFS-SU score of that worker's service users. (Pairing each service user
    with their worker would repeat the worker's score, so the pairs would not be independent and workers with more
    service users would weigh more.) On these pairs:

    - ICC(A,1) (``icc_type``): two-way random effects, absolute agreement, single rater - McGraw & Wong's
      ICC(A,1), Shrout & Fleiss ICC(2,1), R ``psych::ICC`` "ICC2", pingouin "ICC(A,1)" - with its 95 % interval
      (:func:`icc_a1`);
    - Bland-Altman: bias = mean of (worker - service users' mean), sd_difference, limits of agreement
      bias -/+ 1.96 SD.

    Note that a mean of several service users' ratings varies less than one rating; the ICC describes agreement of
    a worker's self-rating with the average view of their service users.
    """
    pairs = agreement_pairs(scores)
    rows = []
    for domain in (*DOMAINS, "total"):
        x, y = pairs[f"w_{domain}"].to_numpy(), pairs[f"su_{domain}"].to_numpy()
        ok = ~(np.isnan(x) | np.isnan(y))
        icc = icc_a1(x, y)
        ba = bland_altman(x, y)
        rows.append(dict(domain=domain, n_pairs=int(ok.sum()),
                         n_service_users=int(pairs.loc[ok, "n_service_users"].sum()), icc_type=ICC_TYPE,
                         icc=icc["icc"], icc_conf_low=icc["conf_low"], icc_conf_high=icc["conf_high"],
                         mean_worker=float(x[ok].mean()) if ok.any() else np.nan,
                         mean_service_users=float(y[ok].mean()) if ok.any() else np.nan,
                         bias=ba["bias"], sd_difference=ba["sd_difference"], loa_low=ba["loa_low"],
                         loa_high=ba["loa_high"], note=icc["note"]))
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


# ----------------------------------------------------------------------------------------------------------------
# Reliability
# ----------------------------------------------------------------------------------------------------------------


def domain_reliability(data: pd.DataFrame, version: str, *, conf_level: float = 0.95,
                       instruments: Mapping[str, Instrument] | None = None) -> pd.DataFrame:
    """Cronbach's alpha with a Feldt interval for each domain of CPIFS-W (``version="W"``) or CPIFS-SU ("SU"),
    and for all domain items together ("all items"); columns ``RELIABILITY_COLUMNS``.

    Items are read as the scoring engine reads them (out-of-range values and missing codes as missing); rows with
    no item of the version answered (e.g. baseline interviews) are left out; within a domain, incomplete rows are
    left out (listwise, as ``cronbach_alpha``). A domain with an item column absent raises CpevalError.
    """
    inst = _instrument(version, instruments)
    item_ids = _domain_items(inst)
    values = validated_items(data, inst)
    absent = [inst.item(i).column for i in item_ids if values[i] is None]
    if absent:
        raise CpevalError(f"{version} data: item column(s) {', '.join(absent)} not in the data; expected every "
                          f"{inst.id} item for domain reliability")
    items = pd.DataFrame({i: values[i] for i in item_ids})
    items = items[items.notna().any(axis=1)]
    rows = []
    for domain in (*DOMAINS, "all items"):
        ids = item_ids if domain == "all items" else list(inst.scale(domain).items)
        a = cronbach_alpha(items[ids], conf_level=conf_level)
        rows.append(dict(version=version, domain=domain, n_items=a["n_items"], n=a["n"], alpha=a["alpha"],
                         conf_low=a["conf_low"], conf_high=a["conf_high"], note=a["note"]))
    return pd.DataFrame(rows, columns=RELIABILITY_COLUMNS)


# ----------------------------------------------------------------------------------------------------------------
# Fidelity and outcomes
# ----------------------------------------------------------------------------------------------------------------


def _record(outcome: str, model: str, term: str, note: str) -> dict:
    record = dict.fromkeys(MODEL_COLUMNS, np.nan)
    record.update(outcome=outcome, model=model, term=term, df_method="", notes=note)
    return record


def _fit_one(frame: pd.DataFrame, outcome: str, model: str, term: str, cluster: str, base_note: str,
             excluded_note: str) -> dict:
    analysed = frame[frame[["y", "y0", "fidelity"]].notna().all(axis=1)]
    n_out = len(frame) - len(analysed)
    problem = None
    if analysed.empty:
        problem = "no participant with follow-up, baseline and fidelity scores"
    elif analysed["cluster"].nunique() < 2:
        problem = (f"only {analysed['cluster'].nunique()} team with follow-up, baseline and fidelity scores: "
                   "the random team intercept needs at least 2")
    elif analysed["fidelity"].nunique() < 2:
        problem = "fidelity is the same for every participant analysed: no association to estimate"
    elif analysed["y"].nunique() < 2:
        problem = f"{outcome} is constant at follow-up: nothing to model"
    notes = [base_note]
    if n_out:
        notes.append(f"{n_out} of {len(frame)} participants excluded ({excluded_note})")
    if problem:
        record = _record(outcome, model, term, "; ".join([problem, *notes]))
        record.update(n_participants=int(len(analysed)), n_clusters=int(analysed["cluster"].nunique()))
        return record
    X = pd.DataFrame({"(Intercept)": 1.0, term: analysed["fidelity"], f"baseline {outcome}": analysed["y0"]},
                     index=analysed.index)
    try:
        fit = fit_mixed(analysed["y"].to_numpy(dtype=float), X, analysed["cluster"].to_numpy(), [cluster])
    except CpevalError as exc:
        record = _record(outcome, model, term, "; ".join([f"model not fitted: {exc}", *notes]))
        record.update(n_participants=int(len(analysed)), n_clusters=int(analysed["cluster"].nunique()))
        return record
    row = fit.fixed.loc[term]
    record = _record(outcome, model, term, "")
    record.update(estimate=float(row["estimate"]), std_error=float(row["std_error"]), df=float(row["df"]),
                  df_method=fit.df_method, conf_low=float(row["conf_low"]), conf_high=float(row["conf_high"]),
                  p_value=float(row["p_value"]), n_participants=int(len(analysed)),
                  n_clusters=int(analysed["cluster"].nunique()), notes="; ".join([*notes_for_term(fit, term), *notes]))
    return record


def fidelity_outcome_models(service_users_scored: pd.DataFrame, scores: pd.DataFrame, plan: Plan,
                            outcomes: Sequence[str], *, arm_value: str = "implementation",
                            bands: Any = None) -> pd.DataFrame:
    """Within one arm (default the implementation arm): is higher fidelity associated with better outcomes?

    For each outcome two models, both ``follow-up outcome ~ fidelity + baseline outcome + (1 | team)`` fitted by
    REML with ``cpeval.mixed.fit_mixed`` (Satterthwaite df; between-within df for a singular fit, with fit_mixed's
    note):

    - ``model = "fidelity_worker"``: fidelity = the CPIFS-W total of the participant's worker (the worker named in
      the participant's CPIFS-SU row, else in any of their rows; unlinked participants are excluded with a note);
    - ``model = "fidelity_service_user"``: fidelity = the CPIFS-SU total the participant gave.

    The estimate is the difference in follow-up outcome per 1 point of fidelity (scale 1-9), adjusted for the
    baseline outcome. With ``bands``, a third model per outcome (``model = "fidelity_worker_band"``) replaces the
    worker's score by its band: one record per band against the lowest band present (reference), e.g. "worker
    fidelity band: high vs low". Columns ``MODEL_COLUMNS`` (the outcome-record keys of cpeval.outcomes). Every record notes
    that this is an observational comparison. With 5 teams, df are small; participants sharing a worker are not
    modelled as a further level (only the team intercept). A problem with one outcome gives a record with a note
    and no estimate; it does not stop the others.
    """
    d = plan.design
    _require(scores, ["version", "rater_id", "worker_id", "worker_linked", "total"], "scores")
    if not outcomes:
        raise CpevalError("outcomes is empty; expected at least one outcome score column, e.g. rguk_total")
    absent = [o for o in outcomes if o not in service_users_scored.columns]
    if absent:
        raise CpevalError(f"outcome column(s) {', '.join(absent)} not in the service-user data; expected score "
                          "columns such as rguk_total")
    arm_values = set(service_users_scored[d.arm].astype("string").dropna())
    if arm_value not in arm_values:
        raise CpevalError(f"arm_value is {arm_value!r}, which is not a value of column '{d.arm}'; expected one of "
                          f"{', '.join(sorted(arm_values))}")
    note = OBSERVATIONAL_NOTE.format(arm=arm_value)
    records = []
    for outcome in outcomes:
        frame = fidelity_outcome_frame(service_users_scored, scores, plan, outcome, arm_value=arm_value)
        frame_w = frame.assign(fidelity=frame["fidelity_worker"])
        records.append(_fit_one(frame_w, outcome, MODEL_WORKER, TERM_WORKER, d.cluster, note,
                                "no follow-up or baseline score, or no linked worker with a CPIFS-W total"))
        frame_s = frame.assign(fidelity=frame["fidelity_service_user"])
        records.append(_fit_one(frame_s, outcome, MODEL_SERVICE_USER, TERM_SERVICE_USER, d.cluster, note,
                                "no follow-up or baseline score, or no CPIFS-SU total"))
        if bands:
            records += _fit_banded(frame_w, outcome, parse_bands(bands), d.cluster, note)
    return pd.DataFrame(records, columns=MODEL_COLUMNS)


MODEL_WORKER_BAND = "fidelity_worker_band"


def fidelity_outcome_frame(service_users_scored: pd.DataFrame, scores: pd.DataFrame, plan: Plan, outcome: str, *,
                           arm_value: str) -> pd.DataFrame:
    """The analysis frame of the fidelity-outcome models: ``cpeval.outcomes.ancova_frame`` within one arm, plus
    ``fidelity_worker`` (the CPIFS-W total of the participant's linked worker) and ``fidelity_service_user`` (the
    participant's own CPIFS-SU total)."""
    su = scores[scores["version"] == "SU"]
    own_total = su.dropna(subset=["total"]).drop_duplicates("rater_id", keep="last").set_index("rater_id")["total"]
    linked = su[su["worker_linked"].astype(bool)].drop_duplicates("rater_id", keep="last")
    worker_of = dict(zip(linked["rater_id"], linked["worker_id"]))
    worker_total = scores[scores["version"] == "W"].set_index("rater_id")["total"]
    frame = ancova_frame(service_users_scored, plan, outcome)
    frame = frame[frame["arm"] == arm_value].copy()
    pid = frame["participant"].map(_text)
    frame["fidelity_worker"] = pid.map(worker_of).map(worker_total).astype(float).to_numpy()
    frame["fidelity_service_user"] = pid.map(own_total).astype(float).to_numpy()
    return frame


def _fit_banded(frame: pd.DataFrame, outcome: str, bands: list[dict], cluster: str, base_note: str) -> list[dict]:
    """Follow-up outcome ~ worker fidelity band (indicators, lowest band present = reference) + baseline + team."""
    analysed = frame[frame[["y", "y0", "fidelity"]].notna().all(axis=1)].copy()
    analysed["band"] = band_scores(analysed["fidelity"], bands).to_numpy()
    present = [b["label"] for b in bands if (analysed["band"] == b["label"]).any()]
    term0 = f"worker fidelity band ({format_bands(bands)})"
    if len(present) < 2:
        return [_record(outcome, MODEL_WORKER_BAND, term0,
                        f"fewer than 2 bands among the participants analysed ({', '.join(present) or 'none'}): "
                        f"no banded comparison; {base_note}")]
    if analysed["cluster"].nunique() < 2:
        return [_record(outcome, MODEL_WORKER_BAND, term0, f"fewer than 2 teams: no model; {base_note}")]
    reference = present[0]
    terms = {label: f"worker fidelity band: {label} vs {reference}" for label in present[1:]}
    X = pd.DataFrame({"(Intercept)": 1.0, **{t: (analysed["band"] == label).astype(float)
                                             for label, t in terms.items()},
                      f"baseline {outcome}": analysed["y0"]}, index=analysed.index)
    try:
        fit = fit_mixed(analysed["y"].to_numpy(dtype=float), X, analysed["cluster"].to_numpy(), [cluster])
    except CpevalError as exc:
        return [_record(outcome, MODEL_WORKER_BAND, term0, f"model not fitted: {exc}; {base_note}")]
    records = []
    for label, term in terms.items():
        row = fit.fixed.loc[term]
        record = _record(outcome, MODEL_WORKER_BAND, term, "; ".join([*notes_for_term(fit, term), base_note,
                                                                      "bands are the plan's assumption"]))
        record.update(estimate=float(row["estimate"]), std_error=float(row["std_error"]), df=float(row["df"]),
                      df_method=fit.df_method, conf_low=float(row["conf_low"]), conf_high=float(row["conf_high"]),
                      p_value=float(row["p_value"]), n_participants=int(len(analysed)),
                      n_clusters=int(analysed["cluster"].nunique()))
        records.append(record)
    return records


# ----------------------------------------------------------------------------------------------------------------
# Arms compared on fidelity, and the whole analysis a plan asks for
# ----------------------------------------------------------------------------------------------------------------

MODEL_ARMS = "fidelity_by_arm"


def compare_arms_on_fidelity(scores: pd.DataFrame, plan: Plan) -> pd.DataFrame:
    """How much more of the model happens in implementation teams than in control teams (when fidelity was
    measured in both): for each version, total ~ arm + (1 | team) by REML, Satterthwaite df (records with the
    outcome-record keys, ``outcome`` = ``cpifs_w_total`` / ``cpifs_su_total``)."""
    d = plan.design
    term = f"arm: {d.treatment} vs {d.control}"
    records = []
    for version, inst_id in VERSIONS.items():
        rows = scores[(scores["version"] == version) & scores["total"].notna()]
        outcome = f"{inst_id}_total"
        arms = rows["arm"].astype("string")
        teams_per_arm = [rows.loc[arms == a, "team"].nunique() for a in d.arms]
        if min(teams_per_arm) < 2:
            records.append(_record(outcome, MODEL_ARMS, term, "fewer than 2 teams with fidelity scores in an arm: "
                                                              "arms cannot be compared"))
            continue
        rows = rows[arms.isin(d.arms)]
        X = pd.DataFrame({"(Intercept)": 1.0, term: (rows["arm"].astype("string") == d.treatment).astype(float)},
                         index=rows.index)
        try:
            fit = fit_mixed(rows["total"].to_numpy(dtype=float), X, rows["team"].map(_text).to_numpy(), [d.cluster])
        except CpevalError as exc:
            records.append(_record(outcome, MODEL_ARMS, term, f"model not fitted: {exc}"))
            continue
        row = fit.fixed.loc[term]
        record = _record(outcome, MODEL_ARMS, term, "; ".join(notes_for_term(fit, term)))
        record.update(estimate=float(row["estimate"]), std_error=float(row["std_error"]), df=float(row["df"]),
                      df_method=fit.df_method, conf_low=float(row["conf_low"]), conf_high=float(row["conf_high"]),
                      p_value=float(row["p_value"]), n_participants=int(len(rows)),
                      n_clusters=int(rows["team"].nunique()))
        records.append(record)
    return pd.DataFrame(records, columns=MODEL_COLUMNS)


@dataclass
class FidelityAnalysis:
    """Everything the fidelity analysis of a plan produces (tidy tables with the columns documented above)."""

    plan: Plan
    scores: pd.DataFrame  # SCORE_COLUMNS, one row per rater, plus "band" when the plan has bands
    qa: pd.DataFrame  # unlinked service users and unscored domains (cpeval.qa.QA_COLUMNS)
    teams: pd.DataFrame  # TEAM_COLUMNS
    agreement: pd.DataFrame  # AGREEMENT_COLUMNS
    reliability: pd.DataFrame  # RELIABILITY_COLUMNS (both versions)
    outcome_models: pd.DataFrame  # MODEL_COLUMNS
    arm_comparison: pd.DataFrame | None  # MODEL_COLUMNS, when fidelity was measured in control teams
    bands_text: str  # the thresholds, printed with every banded result
    notes: list[str] = field(default_factory=list)
    consensus: Any = None  # ConsensusResult when several raters rated the practice examples

    @property
    def unlinked(self) -> pd.DataFrame:
        """QA records of service users whose worker is missing, unknown or in another team."""
        return self.qa[self.qa["reason"].astype("string").str.startswith("worker_").fillna(False)]


def analyse_fidelity(service_users: pd.DataFrame, workers: pd.DataFrame, plan: Plan,
                     instruments: Mapping[str, Instrument] | None = None,
                     consensus: pd.DataFrame | None = None) -> FidelityAnalysis:
    """The fidelity analysis the plan describes (its ``fidelity:`` section), on scored service-user data (long)
    and the workers' data (one row per worker); ``consensus``: researchers' ratings of the practice examples
    (see :func:`consensus_ratings`), when there are any."""
    d = plan.design
    settings = plan.fidelity
    try:
        bands = parse_bands(list(settings.bands)) if settings.bands else None
    except CpevalError as exc:
        raise CpevalError(f"{plan.source}: fidelity.bands: {exc}") from None
    result = fidelity_scores(workers, service_users, team=d.cluster, participant=d.participant, arm=d.arm,
                             timepoint=d.timepoint, instruments=instruments)
    scores = result.scores.copy()
    notes = []
    if bands:
        scores["band"] = band_scores(scores["total"], bands).to_numpy()
        notes.append(f"bands (an assumption of the plan, not published thresholds): {format_bands(bands)}; "
                     f"{settings.bands_note}")
    arm_value = settings.arm or d.treatment
    outcomes = list(settings.outcomes or plan.outcomes)
    if not settings.measured_in_control:
        in_control = scores["arm"].astype("string") == d.control
        if in_control.any():
            notes.append(f"{int(in_control.sum())} fidelity rating(s) from control teams are shown but arms are not "
                         "compared (the plan says fidelity.measured_in_control: false)")
    models = (fidelity_outcome_models(service_users, scores, plan, outcomes, arm_value=arm_value,
                                      bands=list(settings.bands) if settings.bands else None) if outcomes
              else pd.DataFrame(columns=MODEL_COLUMNS))
    reliability = pd.concat([domain_reliability(workers, "W", instruments=instruments),
                             domain_reliability(service_users, "SU", instruments=instruments)], ignore_index=True)
    return FidelityAnalysis(
        plan=plan, scores=scores, qa=result.qa, teams=team_fidelity(scores, bands=bands),
        agreement=worker_service_user_agreement(scores), reliability=reliability, outcome_models=models,
        arm_comparison=compare_arms_on_fidelity(scores, plan) if settings.measured_in_control else None,
        bands_text=format_bands(bands) if bands else "", notes=notes,
        consensus=consensus_ratings(consensus, workers, worker="worker_id") if consensus is not None else None)


def fidelity_as_dict(analysis: FidelityAnalysis) -> dict:
    """The analysis as JSON-ready data (NaN as null)."""
    from cpeval.compare import _records  # one JSON-cleaning rule for every result file

    return {
        "study": analysis.plan.design.study,
        "plan": analysis.plan.source,
        "bands": analysis.bands_text,
        "bands_note": analysis.plan.fidelity.bands_note,
        "scores": _records(analysis.scores),
        "teams": _records(analysis.teams),
        "agreement": _records(analysis.agreement),
        "reliability": _records(analysis.reliability),
        "fidelity_outcome_models": _records(analysis.outcome_models),
        "arm_comparison": None if analysis.arm_comparison is None else _records(analysis.arm_comparison),
        "unlinked_service_users": _records(analysis.unlinked),
        "qa": _records(analysis.qa),
        "consensus": None if analysis.consensus is None else {
            "scores": _records(analysis.consensus.consensus), "agreement": _records(analysis.consensus.agreement),
            "unrated": _records(analysis.consensus.unrated)},
        "notes": analysis.notes,
    }


def write_fidelity(analysis: FidelityAnalysis, path) -> None:
    """``.json``: every table; ``.csv``: the team-by-domain table (TEAM_COLUMNS)."""
    import json
    from pathlib import Path

    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(fidelity_as_dict(analysis), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    elif path.suffix.lower() == ".csv":
        analysis.teams.to_csv(path, index=False)
    else:
        raise CpevalError(f"{path}: fidelity results are written as .json or .csv; expected one of those suffixes")


# ----------------------------------------------------------------------------------------------------------------
# Consensus ratings of the practice examples
# ----------------------------------------------------------------------------------------------------------------

CONSENSUS_COLUMNS = ["worker_id", "domain", "n_raters", "consensus", "ratings"]
RATER_AGREEMENT_COLUMNS = ["domain", "n_examples", "n_raters", "icc_type", "icc", "icc_conf_low", "icc_conf_high",
                           "note"]


class ConsensusResult(NamedTuple):
    consensus: pd.DataFrame  # CONSENSUS_COLUMNS: one row per worker x domain with at least one rating
    agreement: pd.DataFrame  # RATER_AGREEMENT_COLUMNS: inter-rater ICC(A,1) per domain
    unrated: pd.DataFrame  # worker_id, domain: examples with no rating (every worker x domain is expected)


def consensus_ratings(ratings: pd.DataFrame, workers: pd.DataFrame, *, worker: str = "worker_id") -> ConsensusResult:
    """Researchers' ratings of each worker's practice example per domain, when several raters rated them.

    ``ratings`` is long: ``worker_id, rater, domain, rating`` (domain one of com, ass, pla, par, rel; rating 1-9).
    The consensus score of an example is the mean of its raters' ratings (a team that agreed one score by discussion
    records it as a single rater, e.g. ``consensus``). Inter-rater agreement per domain is ICC(A,1) over the
    examples rated by every rater (:func:`icc_a1_matrix`, as R psych ``ICC2``). Every worker x domain without a
    rating is listed in ``unrated``. A rating out of 1-9, an unknown domain or a worker not in ``workers`` is a
    CpevalError naming the row.
    """
    _require(ratings, [worker, "rater", "domain", "rating"], "consensus ratings")
    _require(workers, [worker], "workers")
    data = ratings.copy()
    data["_worker"] = data[worker].map(_text)
    data["domain"] = data["domain"].astype("string").str.strip().str.lower()
    values = pd.to_numeric(data["rating"], errors="coerce")
    for i, (dom, val, raw) in enumerate(zip(data["domain"], values, data["rating"])):
        if dom not in DOMAINS:
            raise CpevalError(f"consensus ratings: row {i + 1}, domain is {dom!r}; expected one of "
                              f"{', '.join(DOMAINS)}")
        if not pd.isna(raw) and (pd.isna(val) or not 1 <= val <= 9 or val != int(val)):
            raise CpevalError(f"consensus ratings: row {i + 1}, rating is {raw!r}; expected a whole number 1-9")
    known = set(workers[worker].map(_text))
    unknown = sorted(set(data["_worker"]) - known)
    if unknown:
        raise CpevalError(f"consensus ratings: worker(s) {', '.join(map(str, unknown[:5]))} not in the workers' data; "
                          "expected every rated example to belong to a known worker")
    data["rating"] = values
    rated = data.dropna(subset=["rating"])
    grouped = rated.groupby(["_worker", "domain"])["rating"]
    consensus = pd.DataFrame({"n_raters": grouped.count(), "consensus": grouped.mean(),
                              "ratings": grouped.apply(lambda r: ", ".join(f"{v:g}" for v in r))}).reset_index()
    consensus = consensus.rename(columns={"_worker": "worker_id"})[CONSENSUS_COLUMNS]
    expected = pd.MultiIndex.from_product([sorted(known, key=str), list(DOMAINS)], names=["worker_id", "domain"])
    have = pd.MultiIndex.from_frame(consensus[["worker_id", "domain"]])
    unrated = expected.difference(have).to_frame(index=False)
    rows = []
    for dom in DOMAINS:
        grid = rated[rated["domain"] == dom].pivot_table(index="_worker", columns="rater", values="rating",
                                                          aggfunc="mean")
        n_raters = grid.shape[1]
        if n_raters < 2:
            rows.append(dict(domain=dom, n_examples=int(len(grid)), n_raters=n_raters, icc_type=ICC_TYPE,
                             icc=np.nan, icc_conf_low=np.nan, icc_conf_high=np.nan,
                             note="fewer than 2 raters: no inter-rater agreement"))
            continue
        icc = icc_a1_matrix(grid.to_numpy())
        rows.append(dict(domain=dom, n_examples=icc["n"], n_raters=n_raters, icc_type=ICC_TYPE, icc=icc["icc"],
                         icc_conf_low=icc["conf_low"], icc_conf_high=icc["conf_high"], note=icc["note"]))
    return ConsensusResult(consensus=consensus, agreement=pd.DataFrame(rows, columns=RATER_AGREEMENT_COLUMNS),
                           unrated=unrated)
