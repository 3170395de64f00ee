"""One scoring engine for every instrument.

``score(data, instruments)`` validates each item column once, turns odd values into missing values with a QA
record, and computes every scale of every instrument with whole-column NumPy operations (no loop over rows).
It never drops a row: the output is the input table with the score columns added.

Rules (``rule:`` in the YAML):
- ``sum``           sum of the items; missing if any item is missing
- ``mean``          mean of the answered items (or of earlier scales); missing if more than ``max_missing`` are missing
- ``prorated_sum``  mean of the answered items x number of items, if at most ``max_missing`` are missing
- ``count``         number of items whose answer is in ``count_codes``, if at most ``max_missing`` are missing
- ``lookup``        an earlier scale, rounded per ``rounding``, converted through ``table``
- ``value_set``     utility index of the item levels through a value set (shipped or user-supplied CSV)
- ``bands``         an earlier scale cut into labelled bands (inclusive upper limits)
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cpeval.errors import CpevalError
from cpeval.instruments import Instrument, Item, Scale, ValueSet
from cpeval.qa import concat_qa, empty_qa, qa_frame

# Column validation runs on two threads from this many rows on (below it, thread start-up costs more than it saves).
_PARALLEL_ROWS = 50_000
_WORKERS = min(2, os.cpu_count() or 1)

SCALE_SUMMARY_COLUMNS = [
    "instrument", "instrument_name", "scale", "column", "label", "rule", "output_min", "output_max", "n_rows",
    "n_scored", "n_complete", "n_prorated", "n_not_scored", "n_no_data", "value_set", "verified", "notes",
]


@dataclass
class ScoringResult:
    """What ``score`` returns.

    data    the input rows, all input columns kept, with one column per scale added
    qa      one record per odd value (cpeval.qa.QA_COLUMNS)
    scales  one row per scale: rule, range, how many scored / complete / prorated / not scored, value set, notes
    items   instrument id -> the item columns its scores were computed from
    """

    data: pd.DataFrame
    qa: pd.DataFrame
    scales: pd.DataFrame
    items: dict[str, list[str]] = field(default_factory=dict)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    # np.round rounds half to even (22.5 -> 22); scoring manuals round half up (22.5 -> 23).
    return np.floor(x + 0.5)


def item_source(item: Item, columns: Iterable[str]) -> str | None:
    """The column an item is read from: its own, else the column it can be derived from, else None."""
    columns = set(columns)
    if item.column in columns:
        return item.column
    if item.source_column and item.source_column in columns:
        return item.source_column
    return None


def select_instruments(columns: Iterable[str], registry: Mapping[str, Instrument],
                       requested: Iterable[str] | None = None) -> list[Instrument]:
    """Instruments to score: the requested ones (each must have items in the data), else all with items present.

    An instrument counts as present when at least one of its item columns (or the columns they derive from)
    is in the data. A derived instrument (SWEMWBS from WEMWBS) needs all the columns it derives from.
    """
    columns = list(columns)
    requested = list(requested or [])
    unknown = [r for r in requested if r not in registry]
    if unknown:
        raise CpevalError(f"unknown instrument '{unknown[0]}'; expected one of {', '.join(registry)}")
    chosen = []
    for inst in (registry[r] for r in requested) if requested else registry.values():
        own = [i for i in inst.items if i.column in columns]
        derived = [i for i in inst.items if item_source(i, columns) is not None]
        present = bool(own) or (len(derived) == len(inst.items) and all(i.source_column for i in inst.items))
        if present:
            chosen.append(inst)
        elif requested:
            raise CpevalError(
                f"instrument {inst.id}: none of its item columns ({inst.items[0].column} ... {inst.items[-1].column}) "
                "is in the data; expected columns named <instrument>_<item> (use a variable map to rename)"
            )
    return chosen


class _ItemValidator:
    """Validates each column once (a column shared by two instruments, e.g. wemwbs_6 for SWEMWBS, is read once)."""

    def __init__(self, data: pd.DataFrame, source: str, row_numbers: np.ndarray, ids: pd.DataFrame):
        self.data = data
        self.source = source
        self.row_numbers = row_numbers
        self.ids = ids
        self.cache: dict[str, np.ndarray] = {}
        self._local = threading.local()
        self._order = {c: i for i, c in enumerate(data.columns)}
        self.qa: dict[str, list[pd.DataFrame]] = {}  # by column, so the QA order never depends on threads

    def _record(self, column: str, mask: np.ndarray, raw: np.ndarray, reason: str, expected: str,
                action: str = "treated as missing") -> None:
        where = np.flatnonzero(mask)
        if where.size == 0:
            return
        frame = pd.DataFrame({
            "source": self.source,
            "row": self.row_numbers[where],
            "participant_id": self.ids["participant_id"].to_numpy()[where] if "participant_id" in self.ids else None,
            "timepoint": self.ids["timepoint"].to_numpy()[where] if "timepoint" in self.ids else None,
            "variable": column,
            "value": [_show(v) for v in raw[where]],
            "reason": reason,
            "expected": expected,
            "action": action,
        })
        self.qa.setdefault(column, []).append(frame)

    def _scratch(self, n: int) -> np.ndarray:
        # one buffer per thread (columns are validated in parallel on big tables)
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) != n:
            buffer = self._local.buffer = np.empty(n)
        return buffer

    def prefetch(self, jobs: list[tuple[Item, str, tuple[float, ...]]]) -> None:
        """Validate many columns at once, on two threads for big tables (NumPy releases the GIL)."""
        # one job per column; a column shared by two instruments is validated by its own instrument's item
        # definition (wemwbs_6 as WEMWBS item 6, not as SWEMWBS item 4)
        by_column: dict[str, tuple] = {}
        for job in jobs:
            if job[1] not in by_column or job[0].column == job[1]:
                by_column[job[1]] = job
        jobs = [j for j in by_column.values() if j[1] not in self.cache]
        if len(self.data) >= _PARALLEL_ROWS and len(jobs) > 1:
            with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
                list(pool.map(lambda job: self.values(*job), jobs))
        else:
            for job in jobs:
                self.values(*job)

    def qa_tables(self) -> list[pd.DataFrame]:
        return [frame for column in sorted(self.qa, key=self._order.get) for frame in self.qa[column]]

    def _mark(self, column: str, where: np.ndarray, raw: np.ndarray, reason: str, expected: str) -> None:
        if where.size:
            mask = np.zeros(len(raw), dtype=bool)
            mask[where] = True
            self._record(column, mask, raw, reason, expected)

    def values(self, item: Item, column: str, missing_codes: tuple[float, ...]) -> np.ndarray:
        if column in self.cache:
            return self.cache[column]
        series = self.data[column]
        if series.dtype == np.float64:
            x = series.to_numpy()  # no copy: x is never written to in place below
            raw = x
        elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            x = series.to_numpy(dtype=float, na_value=np.nan)
            raw = x
        else:
            # text in an item column (CSV typo, "n/a", "3 "): numbers inside text are used, the rest is flagged
            raw = series.to_numpy(dtype=object)
            x = pd.to_numeric(series.astype("string").str.strip(), errors="coerce").to_numpy(dtype=float,
                                                                                           na_value=np.nan)
            not_numeric = np.isnan(x) & ~pd.isna(series).to_numpy()
            self._record(column, not_numeric, raw, "not_numeric", item.response.describe())
            x = x.copy()
        resp = item.response
        lo, hi = resp.lowest, resp.highest
        # One pass finds every value outside [lo, hi] (NaN compares False); missing codes, disallowed codes and
        # out-of-range values are then sorted out on that usually tiny subset. Codes declared missing that lie
        # inside the range (unusual) need the full check.
        codes = np.asarray(missing_codes, dtype=float)
        codes_inside = bool(codes.size and ((codes >= lo) & (codes <= hi)).any())
        # fmin/fmax reductions ignore NaN: a clean column costs two passes and no temporary arrays
        if codes_inside or np.fmin.reduce(x, initial=np.inf) < lo or np.fmax.reduce(x, initial=-np.inf) > hi:
            outside = (x < lo) | (x > hi)
            if codes_inside:
                outside |= np.isin(x, codes)
        else:
            outside = None
        if outside is not None and outside.any():
            where = np.flatnonzero(outside)
            sub = x[where]
            is_code = np.isin(sub, codes)
            self._mark(column, where[is_code], raw, "missing_code",
                       "an answer; codes " + ", ".join(_show(c) for c in missing_codes) + " mean missing")
            self._mark(column, where[~is_code], raw, "out_of_range", resp.describe())
            x = x.copy()
            x[where] = np.nan
        if resp.codes is not None and len(resp.codes) < hi - lo + 1:
            bad = ~np.isnan(x) & ~np.isin(x, resp.codes)
            if bad.any():
                self._record(column, bad, raw, "not_allowed", resp.describe())
                x = np.where(bad, np.nan, x)
        # whole-number check in a reused scratch buffer: fresh 8 MB temporaries per column cost page faults
        fraction = self._scratch(len(x))
        np.floor(x, out=fraction)
        np.subtract(x, fraction, out=fraction)
        if np.fmax.reduce(fraction, initial=0.0) > 0:  # NaN ignored
            fractional = fraction > 0
            self._record(column, fractional, raw, "not_integer", resp.describe())
            x = np.where(fractional, np.nan, x)
        self.cache[column] = x
        return x


def _show(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _aggregate(arrays: list[np.ndarray], rule: str, max_missing: int,
               count_codes: tuple[float, ...] = (), rounding: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Score one scale from its input columns; returns (score, number of missing inputs per row).

    Speed matters here (a million rows is a normal benchmark): the sum is taken with NaN propagating, in place,
    so rows with no gaps are finished in one pass per column; only rows whose sum came out NaN (some input
    missing, usually a small minority) are looked at again, to count their gaps and score them from the
    answered inputs.
    """
    n_inputs = len(arrays)
    n = arrays[0].shape[0]
    if rule == "count":
        total = np.zeros(n)
        for a in arrays:
            total += np.isin(a, count_codes)
            total[np.isnan(a)] = np.nan  # mark gaps the same way as the sums below
    else:
        total = arrays[0].copy()
        for a in arrays[1:]:
            np.add(total, a, out=total)
    gaps = np.flatnonzero(np.isnan(total))
    n_missing = np.zeros(n, dtype=np.int16)
    if gaps.size:
        block = np.array([a[gaps] for a in arrays])  # inputs x gap rows: each gather is contiguous
        missing = np.isnan(block)
        gap_missing = np.count_nonzero(missing, axis=0)
        n_missing[gaps] = gap_missing
        answered = n_inputs - gap_missing
        if rule == "count":
            gap_total = np.count_nonzero(np.isin(block, count_codes), axis=0).astype(float)
        else:
            block[missing] = 0.0
            gap_total = block.sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if rule in ("mean", "prorated_sum"):
                gap_total = gap_total / answered * (n_inputs if rule == "prorated_sum" else 1)
        if rounding == "half_up":
            gap_total = _round_half_up(gap_total)
        ok = (gap_missing <= max_missing) & (answered > 0)
        total[gaps] = np.where(ok, gap_total, np.nan)
    if rule == "mean":
        # complete rows: divide by the number of inputs (gap rows were finished above)
        complete = np.ones(n, dtype=bool)
        complete[gaps] = False
        np.divide(total, n_inputs, out=total, where=complete)
    if rounding == "half_up" and rule == "mean":
        total = _round_half_up(total)
    return total, n_missing


class Scorer:
    """Scores a table with a set of instruments; see ``score`` for the plain-function entry point."""

    def __init__(self, instruments: list[Instrument], value_sets: Mapping[str, ValueSet] | None = None):
        self.instruments = instruments
        self.value_sets = dict(value_sets or {})
        for inst in instruments:
            for scale in inst.scales:
                if scale.rule == "value_set" and scale.value_set is None and inst.id not in self.value_sets:
                    raise CpevalError(
                        f"{inst.id}: scale {scale.column} needs a tariff/value set table and none is shipped; "
                        f"pass one with --value-set {inst.id}=FILE.csv (columns state,value or "
                        "dimension,level,value), or leave this instrument out with --instrument"
                    )

    def score(self, data: pd.DataFrame, source: str = "data") -> ScoringResult:
        n = len(data)
        row_numbers = (data["source_row"].to_numpy() if "source_row" in data.columns
                       else np.arange(1, n + 1))
        ids = data[[c for c in ("participant_id", "timepoint") if c in data.columns]]
        validator = _ItemValidator(data, source, row_numbers, ids)
        validator.prefetch([(item, column, inst.missing_codes) for inst in self.instruments for item in inst.items
                            if (column := item_source(item, data.columns)) is not None])
        # instruments are independent once their columns are validated: score them on two threads for big tables
        if n >= _PARALLEL_ROWS and len(self.instruments) > 1:
            with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
                parts = list(pool.map(lambda inst: self._score_instrument(inst, validator, data.columns, n, source),
                                      self.instruments))
        else:
            parts = [self._score_instrument(inst, validator, data.columns, n, source) for inst in self.instruments]
        new_columns: dict[str, object] = {}
        summaries: list[dict] = []
        extra_qa: list[dict] = []
        items_used: dict[str, list[str]] = {}
        for inst, (columns, inst_summaries, inst_qa, used) in zip(self.instruments, parts):
            new_columns.update(columns)
            summaries += inst_summaries
            extra_qa += inst_qa
            items_used[inst.id] = used

        scores = pd.DataFrame(new_columns, index=data.index)
        overlap = [c for c in scores.columns if c in data.columns]
        if overlap:
            # re-scoring a scored file: the new scores replace the old ones (stated in the summary notes)
            data = data.drop(columns=overlap)
        out = pd.concat([data, scores], axis=1)
        qa = concat_qa(qa_frame(extra_qa) if extra_qa else empty_qa(), *validator.qa_tables())
        scales = pd.DataFrame(summaries, columns=SCALE_SUMMARY_COLUMNS)
        if overlap:
            scales["notes"] = scales.apply(
                lambda r: (r["notes"] + " " if r["notes"] else "") + "replaced the column of the same name in the input"
                if r["column"] in overlap else r["notes"], axis=1)
        return ScoringResult(data=out, qa=qa, scales=scales, items=items_used)

    def _score_instrument(self, inst: Instrument, validator: _ItemValidator, columns, n: int, source: str):
        """Every scale of one instrument: (score columns, summary rows, column-absent QA records, columns used)."""
        new_columns: dict[str, object] = {}
        summaries: list[dict] = []
        extra_qa: list[dict] = []
        item_values: dict[str, np.ndarray] = {}
        used = []
        for item in inst.items:
            column = item_source(item, columns)
            if column is None:
                extra_qa.append(dict(source=source, variable=item.column, reason="column_absent",
                                     expected=f"a column {item.column}" + (
                                         f" (or {item.source_column})" if item.source_column else ""),
                                     action="item treated as missing for every row"))
                item_values[item.id] = np.full(n, np.nan)
                continue
            x = validator.values(item, column, inst.missing_codes)
            if item.reverse:
                x = item.response.lowest + item.response.highest - x
            item_values[item.id] = x
            used.append(column)

        scale_values: dict[str, np.ndarray] = {}
        scale_missing: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for scale in inst.scales:
            score, n_missing, no_data, vs_name, notes = self._score_scale(
                inst, scale, item_values, scale_values, scale_missing, n)
            scale_values[scale.id] = score
            scale_missing[scale.id] = (n_missing, no_data)
            new_columns[scale.column] = score
            summaries.append(self._summary(inst, scale, score, n_missing, no_data, vs_name, notes, n))
            if vs_name:
                # every output names the value set used: a column beside the index, constant per run
                new_columns[f"{scale.column}_value_set"] = pd.Categorical.from_codes(
                    np.where(np.isnan(score), -1, 0).astype(np.int8), categories=[vs_name])
        return new_columns, summaries, extra_qa, used

    def _score_scale(self, inst: Instrument, scale: Scale, item_values: dict[str, np.ndarray],
                     scale_values: dict[str, np.ndarray], scale_missing: dict, n: int):
        """Returns (score, missing inputs per row, rows with no input data at all, value set name, notes).

        A lookup or band inherits the missing-input counts of the scale it converts, so a SWEMWBS metric score
        from a prorated raw score is reported as prorated too.
        """
        notes = scale.note
        vs_name = ""
        if scale.rule in ("sum", "mean", "prorated_sum", "count"):
            if scale.scales:
                arrays = [scale_values[s] for s in scale.scales]
            else:
                arrays = [item_values[i] for i in scale.items]
                if scale.item_transform == "pomp":
                    arrays = [(a - it.response.lowest) / (it.response.highest - it.response.lowest) * 100.0
                              for a, it in zip(arrays, (inst.item(i) for i in scale.items))]
            # complete sums and counts of whole numbers are whole already: rounding only touches prorated rows
            score, n_missing = _aggregate(arrays, scale.rule, scale.max_missing, scale.count_codes, scale.rounding)
            return score, n_missing, n_missing == len(arrays), vs_name, notes
        if scale.rule == "lookup":
            base = scale_values[scale.of]
            base_scale = inst.scale(scale.of)
            already_whole = base_scale.rounding == "half_up" or (
                base_scale.rule in ("sum", "count") and not base_scale.scales and scale.rounding == "half_up")
            x = _round_half_up(base) if scale.rounding == "half_up" and not already_whole else base
            keys = np.fromiter(scale.table.keys(), dtype=float)
            vals = np.fromiter(scale.table.values(), dtype=float)
            if np.array_equal(keys, np.arange(keys[0], keys[0] + len(keys))):
                # consecutive whole scores (the usual conversion table): index directly, no search
                pos = np.where(np.isnan(x), 0, x - keys[0])
                np.clip(pos, 0, len(keys) - 1, out=pos)
                pos = pos.astype(np.intp)
            else:
                pos = np.searchsorted(keys, x)
                np.minimum(pos, len(keys) - 1, out=pos)
            found = keys[pos] == x  # NaN compares False
            score = np.where(found, vals[pos], np.nan)
            if (~np.isnan(x) & ~found).any():
                # cannot happen with a validated table and range; guard against a user definition's gaps
                raise CpevalError(f"{inst.path}: scale {scale.column}: {scale.of} value "
                                  f"{x[~np.isnan(x) & ~found][0]} has no entry in table")
            return score, *scale_missing[scale.of], vs_name, notes
        if scale.rule == "bands":
            base = scale_values[scale.of]
            labels = np.array([b.label for b in scale.bands], dtype=object)
            limits = np.array([b.max if b.max is not None else np.inf for b in scale.bands])
            # band number = how many inclusive upper limits the score exceeds (few bands: a compare per limit)
            codes = np.zeros(len(base), dtype=np.int16)
            for limit in limits[:-1]:
                codes += base > limit
            codes[np.isnan(base)] = -1
            return (pd.Categorical.from_codes(codes, categories=list(labels)), *scale_missing[scale.of],
                    vs_name, notes)
        if scale.rule == "value_set":
            vs = self.value_sets.get(inst.id) or inst.value_sets[scale.value_set]
            levels = int(inst.item(scale.items[0]).response.highest)
            score = vs.index_of_levels({d: item_values[d] for d in scale.items}, list(scale.items), levels)
            n_missing = np.zeros(n, dtype=np.int16)
            for d in scale.items:
                n_missing += np.isnan(item_values[d])
            unknown_state = (n_missing == 0) & np.isnan(score)
            if unknown_state.any():
                notes = (notes + " " if notes else "") + \
                    f"{int(unknown_state.sum())} complete state(s) not in the value set table: index missing."
            vs_name = vs.name
            return score, n_missing, n_missing == len(scale.items), vs_name, notes
        raise AssertionError(scale.rule)  # rules are validated at load time

    def _summary(self, inst, scale, score, n_missing, no_data, vs_name, notes, n) -> dict:
        numeric = scale.rule != "bands"
        scored = ~pd.isna(score) if not numeric else ~np.isnan(score)
        lo, hi = scale.range if scale.range is not None else (None, None)
        if scale.rule == "value_set":
            vs = self.value_sets.get(inst.id) or inst.value_sets[scale.value_set]
            lo, hi = vs.value_range(list(scale.items), int(inst.item(scale.items[0]).response.highest))
        if numeric and lo is not None and scored.any():
            s_min, s_max = np.fmin.reduce(score), np.fmax.reduce(score)  # NaN ignored
            if s_min < lo - 1e-9 or s_max > hi + 1e-9:
                # a definition whose rule can leave its stated range is a definition error, not a data error
                raise CpevalError(f"{inst.path}: scale {scale.column} produced {s_min:g} to {s_max:g}, "
                                  f"outside its range [{lo:g}, {hi:g}]; check the definition's rule and range")
        count = np.count_nonzero  # far faster than .sum() on boolean arrays
        return dict(
            instrument=inst.id, instrument_name=inst.name, scale=scale.id, column=scale.column, label=scale.label,
            rule=scale.rule, output_min=lo, output_max=hi, n_rows=n, n_scored=count(scored),
            n_complete=count(scored & (n_missing == 0)),
            n_prorated=count(scored & (n_missing > 0)),
            n_not_scored=n - count(scored), n_no_data=count(no_data),
            value_set=vs_name, verified=bool(scale.verified and
                                             (not vs_name or inst.id not in self.value_sets)),
            notes=notes,
        )


def validated_items(data: pd.DataFrame, inst: Instrument) -> dict[str, np.ndarray | None]:
    """Each item of ``inst`` as the engine reads it before scoring: odd values (out of range, missing codes, text,
    fractions) as NaN, reverse-scored items turned round; None for an item whose column is absent.

    For analyses that work on items (e.g. reliability), so that they read items exactly as the scores were built.
    """
    validator = _ItemValidator(data, "data", np.arange(1, len(data) + 1), data[[]])
    out: dict[str, np.ndarray | None] = {}
    for item in inst.items:
        column = item_source(item, data.columns)
        if column is None:
            out[item.id] = None
            continue
        x = validator.values(item, column, inst.missing_codes)
        out[item.id] = item.response.lowest + item.response.highest - x if item.reverse else x
    return out


def score(data: pd.DataFrame, instruments: list[Instrument], *, source: str = "data",
          value_sets: Mapping[str, ValueSet] | None = None) -> ScoringResult:
    """Score every scale of the given instruments on ``data``; see the module docstring for the rules.

    ``value_sets`` maps an instrument id to a value set that replaces the shipped one (e.g. a crosswalk CSV).
    """
    return Scorer(instruments, value_sets).score(data, source=source)
