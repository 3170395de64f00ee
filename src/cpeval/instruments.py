"""Instrument definitions: YAML files loaded and validated into small immutable objects.

One YAML file per instrument (see ``instruments/`` and README "Instrument definitions"). A bad definition fails
here, at load time, with the file, the key and what was expected — never later while scoring.

Column names follow one convention: an item ``6`` of instrument ``wemwbs`` is the column ``wemwbs_6``, a scale
``total`` is the column ``wemwbs_total``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cpeval.errors import CpevalError
from cpeval.resources import instruments_dir

RULES = ("sum", "mean", "prorated_sum", "count", "lookup", "value_set", "bands")
ROUNDING = ("none", "half_up")
ITEM_TRANSFORMS = ("none", "pomp")
STATUSES = ("verified", "unverified", "seed")

_TOP_KEYS = {"id", "name", "version", "source", "verification", "response", "missing_codes", "items", "scales",
             "value_sets"}
_ITEM_KEYS = {"id", "label", "response", "reverse", "role", "from"}
_RESPONSE_KEYS = {"min", "max", "codes", "labels"}
_SCALE_KEYS = {"id", "label", "rule", "items", "scales", "of", "max_missing", "rounding", "range", "verified", "note",
               "count_codes", "table", "value_set", "bands", "item_transform"}
_VALUE_SET_KEYS = {"name", "source", "verified", "intercept", "decrements", "values", "if_not_full_health",
                   "if_any_level"}


# ----------------------------------------------------------------------------------------------------------------
# The objects
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    """Allowed answers: a whole-number range (min..max) or a list of codes; value labels for both."""

    min: float | None = None
    max: float | None = None
    codes: tuple[float, ...] | None = None
    labels: Mapping[float, str] = field(default_factory=dict)

    @property
    def lowest(self) -> float:
        return min(self.codes) if self.codes is not None else self.min

    @property
    def highest(self) -> float:
        return max(self.codes) if self.codes is not None else self.max

    def describe(self) -> str:
        """What an answer should be, in words (used in QA records)."""
        if self.codes is not None:
            return "one of " + ", ".join(_fmt(c) for c in self.codes)
        return f"a whole number from {_fmt(self.min)} to {_fmt(self.max)}"


@dataclass(frozen=True)
class Item:
    id: str
    column: str
    label: str
    response: Response
    reverse: bool = False
    role: str = "item"
    source_column: str | None = None  # another instrument's column this item can be taken from (SWEMWBS <- WEMWBS)


@dataclass(frozen=True)
class ValueSet:
    """A utility/tariff value set: additive (intercept + per dimension-level terms) or a full state table.

    index = intercept + sum_d coef[d][level_d] + if_not_full_health * [any level > 1]
            + sum_L if_any_level[L] * [any dimension at level L]
    Decrements in YAML are stored as negative coefficients, so one formula serves EQ-5D and ICECAP-A tariffs.
    A state table (``states``) maps the state code (e.g. 21345) to its value instead.
    """

    id: str
    name: str
    source: str = ""
    verified: bool = False
    intercept: float = 0.0
    coefficients: Mapping[str, tuple[float, ...]] | None = None  # dimension item id -> value per level (level 1 first)
    if_not_full_health: float = 0.0
    if_any_level: Mapping[int, float] = field(default_factory=dict)
    states: Mapping[int, float] | None = None

    def value_range(self, dimensions: list[str], levels: int) -> tuple[float, float]:
        """Lowest and highest index over every possible state (at most a few thousand states)."""
        values = self.state_table(len(dimensions), levels)
        return (float(np.nanmin(values)), float(np.nanmax(values)))

    def index_of_levels(self, levels_by_dim: Mapping[str, np.ndarray], dimensions: list[str],
                        levels: int) -> np.ndarray:
        """Vectorised index for arrays of whole levels 1..L (NaN where any dimension is missing).

        Every state is first numbered 0..L^k-1 (dimension order as given, level 1 = digit 0), and the index is read
        from a table of all L^k states: one indexing pass over the data whatever the value set's form.
        """
        # code = sum_i (level_i - 1) * L^(k-1-i), built in place (NaN propagates: any missing dimension -> NaN)
        code = levels_by_dim[dimensions[0]].astype(float, copy=True)
        for d in dimensions[1:]:
            np.multiply(code, levels, out=code)
            np.add(code, levels_by_dim[d], out=code)
        code -= sum(levels ** i for i in range(len(dimensions)))
        missing = np.isnan(code)
        code[missing] = 0
        out = self.state_table(len(dimensions), levels)[code.astype(np.intp)]
        out[missing] = np.nan
        return out

    def state_table(self, n_dimensions: int, levels: int) -> np.ndarray:
        """Index of every state, numbered as in ``index_of_levels`` (NaN for a state absent from a state table)."""
        grid = np.array(list(product(range(1, levels + 1), repeat=n_dimensions)))  # state order = numbering order
        if self.states is not None:
            codes = (grid * 10 ** np.arange(n_dimensions - 1, -1, -1)).sum(axis=1)
            return np.array([self.states.get(int(c), np.nan) for c in codes])
        dims = list(self.coefficients)
        out = np.full(len(grid), float(self.intercept))
        for i, d in enumerate(dims):
            out += np.asarray(self.coefficients[d])[grid[:, i] - 1]
        out += np.where((grid > 1).any(axis=1), self.if_not_full_health, 0.0)
        for level, amount in self.if_any_level.items():
            out += np.where((grid == level).any(axis=1), amount, 0.0)
        return out


@dataclass(frozen=True)
class Band:
    label: str
    max: float | None  # inclusive upper limit; None for the last band


@dataclass(frozen=True)
class Scale:
    id: str
    column: str
    label: str
    rule: str
    items: tuple[str, ...] = ()
    scales: tuple[str, ...] = ()  # for a composite of earlier scales (e.g. CPIFS total of domain means)
    of: str | None = None  # input scale for lookup / bands
    max_missing: int = 0
    rounding: str = "none"
    range: tuple[float, float] | None = None
    verified: bool = False
    note: str = ""
    count_codes: tuple[float, ...] = ()
    table: Mapping[float, float] | None = None
    value_set: str | None = None
    bands: tuple[Band, ...] = ()
    item_transform: str = "none"


@dataclass(frozen=True)
class Instrument:
    id: str
    name: str
    version: str
    source: str
    verification: tuple[Mapping[str, str], ...]
    items: tuple[Item, ...]
    scales: tuple[Scale, ...]
    missing_codes: tuple[float, ...]
    value_sets: Mapping[str, ValueSet]
    path: str

    def item(self, item_id: str) -> Item:
        return next(i for i in self.items if i.id == item_id)

    def scale(self, scale_id: str) -> Scale:
        return next(s for s in self.scales if s.id == scale_id)

    @property
    def item_columns(self) -> list[str]:
        return [i.column for i in self.items]

    @property
    def unverified(self) -> list[str]:
        """Facts of this definition that are not verified in a published source."""
        facts = [v["fact"] for v in self.verification if v.get("status") != "verified"]
        facts += [f"scale {s.column}: {s.note or 'scoring rule unverified'}" for s in self.scales if not s.verified]
        return facts


# ----------------------------------------------------------------------------------------------------------------
# Loading and validation
# ----------------------------------------------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


class _Checker:
    """Raises CpevalError with the file, the key path, the value and what was expected."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, key: str, value: Any, expected: str) -> None:
        shown = "missing" if value is _MISSING else repr(value)
        raise CpevalError(f"{self.path}: key '{key}' is {shown}; expected {expected}")

    def keys(self, raw: Mapping, allowed: set[str], where: str) -> None:
        unknown = sorted(set(map(str, raw)) - allowed)
        if unknown:
            key = f"{where}.{unknown[0]}" if where else unknown[0]
            raise CpevalError(f"{self.path}: unknown key '{key}'; expected one of {', '.join(sorted(allowed))}")

    def text(self, raw: Mapping, key: str, where: str, required: bool = True, default: str = "") -> str:
        value = raw.get(key, _MISSING)
        if value is _MISSING or value is None:
            if required:
                self.fail(_join(where, key), value, "a non-empty text")
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = _fmt(value)
        if not isinstance(value, str) or not value.strip():
            self.fail(_join(where, key), value, "a non-empty text")
        return value.strip()

    def number(self, value: Any, key: str, expected: str = "a number") -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            self.fail(key, value, expected)
        return float(value)

    def whole(self, value: Any, key: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.fail(key, value, f"a whole number from {lo} to {hi}")
        return int(value)

    def boolean(self, raw: Mapping, key: str, where: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            self.fail(_join(where, key), value, "true or false")
        return value

    def choice(self, raw: Mapping, key: str, where: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = raw.get(key, default if default is not None else _MISSING)
        if value not in choices:
            self.fail(_join(where, key), value, "one of " + ", ".join(choices))
        return value

    def numbers(self, value: Any, key: str) -> tuple[float, ...]:
        if not isinstance(value, list):
            self.fail(key, value, "a list of numbers")
        return tuple(self.number(v, f"{key}[{i}]") for i, v in enumerate(value))


_MISSING = object()


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _response(chk: _Checker, raw: Any, where: str, inherited: Response | None) -> Response:
    if raw is None:
        if inherited is None:
            chk.fail(where, _MISSING, "a response with min and max, or codes (here or at the top level)")
        return inherited
    if not isinstance(raw, Mapping):
        chk.fail(where, raw, "a mapping with min/max or codes, and labels")
    chk.keys(raw, _RESPONSE_KEYS, where)
    labels_raw = raw.get("labels", {}) or {}
    if not isinstance(labels_raw, Mapping):
        chk.fail(f"{where}.labels", labels_raw, "a mapping of code: label")
    labels = {chk.number(k, f"{where}.labels", "numeric codes"): str(v) for k, v in labels_raw.items()}
    if "codes" in raw:
        if "min" in raw or "max" in raw:
            chk.fail(where, dict(raw), "either codes or min/max, not both")
        codes = chk.numbers(raw["codes"], f"{where}.codes")
        if not codes or len(set(codes)) != len(codes):
            chk.fail(f"{where}.codes", raw["codes"], "a non-empty list of distinct numbers")
        return Response(codes=tuple(sorted(codes)), labels=labels)
    lo = chk.number(raw.get("min", _MISSING), f"{where}.min")
    hi = chk.number(raw.get("max", _MISSING), f"{where}.max")
    if not (lo < hi and lo.is_integer() and hi.is_integer()):
        chk.fail(f"{where}.max", raw.get("max"), f"a whole number greater than min ({_fmt(lo)})")
    return Response(min=lo, max=hi, labels=labels)


def _value_set(chk: _Checker, vid: str, raw: Any, where: str, dims: list[str], levels: int) -> ValueSet:
    if not isinstance(raw, Mapping):
        chk.fail(where, raw, "a mapping describing the value set")
    chk.keys(raw, _VALUE_SET_KEYS, where)
    has_dec, has_val = "decrements" in raw, "values" in raw
    if has_dec == has_val:
        chk.fail(where, dict(raw), "exactly one of decrements (subtracted) or values (added)")
    key = "decrements" if has_dec else "values"
    sign = -1.0 if has_dec else 1.0
    table = raw[key]
    if not isinstance(table, Mapping) or set(map(str, table)) != set(dims):
        chk.fail(f"{where}.{key}", table if not isinstance(table, Mapping) else sorted(map(str, table)),
                 f"one entry per dimension: {', '.join(dims)}")
    coefficients = {}
    for d in dims:
        values = chk.numbers(table[d], f"{where}.{key}.{d}")
        if len(values) != levels:
            chk.fail(f"{where}.{key}.{d}", table[d], f"{levels} values, one per level (level 1 first)")
        coefficients[d] = tuple(sign * v for v in values)
    any_level_raw = raw.get("if_any_level", {}) or {}
    if not isinstance(any_level_raw, Mapping):
        chk.fail(f"{where}.if_any_level", any_level_raw, "a mapping of level: amount subtracted")
    any_level = {chk.whole(k, f"{where}.if_any_level", 1, levels): -chk.number(v, f"{where}.if_any_level.{k}")
                 for k, v in any_level_raw.items()}
    return ValueSet(
        id=vid,
        name=chk.text(raw, "name", where),
        source=chk.text(raw, "source", where, required=False),
        verified=chk.boolean(raw, "verified", where, False),
        intercept=chk.number(raw.get("intercept", 0.0), f"{where}.intercept"),
        coefficients=coefficients,
        if_not_full_health=-chk.number(raw.get("if_not_full_health", 0.0), f"{where}.if_not_full_health"),
        if_any_level=any_level,
    )


def _scale(chk: _Checker, raw: Any, where: str, inst_id: str, items: dict[str, Item], earlier: dict[str, Scale],
           value_sets: Mapping[str, ValueSet]) -> Scale:
    if not isinstance(raw, Mapping):
        chk.fail(where, raw, "a mapping describing a scale")
    chk.keys(raw, _SCALE_KEYS, where)
    sid = chk.text(raw, "id", where)
    if sid in earlier:
        chk.fail(f"{where}.id", sid, "a scale id not used before in this file")
    if sid in items:
        chk.fail(f"{where}.id", sid, "a scale id that is not also an item id (columns would clash)")
    rule = chk.choice(raw, "rule", where, RULES)
    kw: dict[str, Any] = dict(
        id=sid, column=f"{inst_id}_{sid}", label=chk.text(raw, "label", where), rule=rule,
        verified=chk.boolean(raw, "verified", where, False), note=chk.text(raw, "note", where, required=False),
        rounding=chk.choice(raw, "rounding", where, ROUNDING, "none"),
        item_transform=chk.choice(raw, "item_transform", where, ITEM_TRANSFORMS, "none"),
    )
    # inputs: items, earlier scales, or one earlier scale (`of`)
    if rule in ("lookup", "bands"):
        of = chk.text(raw, "of", where)
        if of not in earlier or earlier[of].rule == "bands":
            chk.fail(f"{where}.of", of, "the id of a numeric scale defined earlier in this file: "
                     + ", ".join(s for s in earlier if earlier[s].rule != "bands"))
        kw["of"] = of
    elif "scales" in raw:
        if rule not in ("sum", "mean"):
            chk.fail(f"{where}.scales", raw["scales"], "items (only sum and mean rules can combine scales)")
        names = raw["scales"]
        if not isinstance(names, list) or not names or any(str(n) not in earlier for n in names):
            chk.fail(f"{where}.scales", names, "a list of scale ids defined earlier in this file: " + ", ".join(earlier))
        kw["scales"] = tuple(str(n) for n in names)
    else:
        names = raw.get("items", _MISSING)
        if names == "all":
            names = [i for i in items if items[i].role == "item"]
        if not isinstance(names, list) or not names or any(str(n) not in items for n in names):
            bad = [n for n in names if str(n) not in items] if isinstance(names, list) else names
            chk.fail(f"{where}.items", bad if bad else names, "'all' or a list of item ids of this instrument: "
                     + ", ".join(items))
        kw["items"] = tuple(str(n) for n in names)
    n_inputs = len(kw.get("items", ())) or len(kw.get("scales", ()))
    if "max_missing" in raw:
        if rule in ("lookup", "bands", "value_set", "sum"):
            chk.fail(f"{where}.max_missing", raw["max_missing"],
                     f"no max_missing for rule {rule} (it uses complete inputs; use prorated_sum or mean to allow gaps)")
        kw["max_missing"] = chk.whole(raw["max_missing"], f"{where}.max_missing", 0, n_inputs - 1)
    if "range" in raw:
        rng = chk.numbers(raw["range"], f"{where}.range")
        if len(rng) != 2 or rng[0] > rng[1]:
            chk.fail(f"{where}.range", raw["range"], "[lowest, highest]")
        kw["range"] = rng
    if rule == "count":
        kw["count_codes"] = chk.numbers(raw.get("count_codes", _MISSING), f"{where}.count_codes")
    if rule == "lookup":
        table = raw.get("table", _MISSING)
        if not isinstance(table, Mapping) or not table:
            chk.fail(f"{where}.table", table, "a mapping of input score: output score")
        keys = [chk.number(k, f"{where}.table", "numeric input scores") for k in table]
        vals = [chk.number(v, f"{where}.table.{k}") for k, v in table.items()]
        kw["table"] = dict(sorted(zip(keys, vals)))
    if rule == "value_set":
        vs = raw.get("value_set", _MISSING)
        if vs is not None and vs not in value_sets:
            chk.fail(f"{where}.value_set", vs, "null (none shipped) or one of this file's value_sets: "
                     + ", ".join(value_sets))
        kw["value_set"] = vs
    if rule == "bands":
        bands_raw = raw.get("bands", _MISSING)
        if not isinstance(bands_raw, list) or len(bands_raw) < 2:
            chk.fail(f"{where}.bands", bands_raw, "a list of at least two {label, max} bands")
        bands, last = [], -math.inf
        for i, b in enumerate(bands_raw):
            bw = f"{where}.bands[{i}]"
            if not isinstance(b, Mapping):
                chk.fail(bw, b, "a mapping {label, max}")
            chk.keys(b, {"label", "max"}, bw)
            is_last = i == len(bands_raw) - 1
            if is_last and "max" not in b:
                upper = None
            else:
                upper = chk.number(b.get("max", _MISSING), f"{bw}.max",
                                   "an inclusive upper limit (only the last band may have none)")
                if upper <= last:
                    chk.fail(f"{bw}.max", b["max"], f"a limit above the previous band's ({_fmt(last)})")
                last = upper
            bands.append(Band(label=chk.text(b, "label", bw), max=upper))
        kw["bands"] = tuple(bands)
    return Scale(**kw)


def load_instrument(path: str | Path) -> Instrument:
    """Read and validate one instrument definition."""
    path = Path(path)
    chk = _Checker(str(path))
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CpevalError(f"{path}: cannot read instrument definition ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise CpevalError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, Mapping):
        chk.fail("(top level)", raw, "a mapping with id, name, items, scales")
    chk.keys(raw, _TOP_KEYS, "")
    inst_id = chk.text(raw, "id", "")
    if not inst_id.isidentifier() or inst_id != inst_id.lower():
        chk.fail("id", inst_id, "a lower-case identifier (letters, digits, _), used as the column prefix")

    verification = raw.get("verification", []) or []
    if not isinstance(verification, list):
        chk.fail("verification", verification, "a list of {fact, status, source}")
    for i, v in enumerate(verification):
        if not isinstance(v, Mapping) or "fact" not in v or v.get("status") not in STATUSES:
            chk.fail(f"verification[{i}]", v, "{fact, status: verified|unverified|seed, source}")

    top_response = _response(chk, raw["response"], "response", None) if raw.get("response") else None
    missing_codes = chk.numbers(raw.get("missing_codes", []) or [], "missing_codes")

    items_raw = raw.get("items", _MISSING)
    if not isinstance(items_raw, list) or not items_raw:
        chk.fail("items", items_raw, "a non-empty list of items")
    items: dict[str, Item] = {}
    for i, it in enumerate(items_raw):
        where = f"items[{i}]"
        if not isinstance(it, Mapping):
            chk.fail(where, it, "a mapping {id, label}")
        chk.keys(it, _ITEM_KEYS, where)
        item_id = chk.text(it, "id", where)
        if item_id in items:
            chk.fail(f"{where}.id", item_id, "an item id not used before in this file")
        response = _response(chk, it.get("response"), f"{where}.response", top_response)
        if set(response.labels) & set(missing_codes):
            chk.fail(f"{where}.response.labels", sorted(set(response.labels) & set(missing_codes)),
                     "labels for answers only (these codes are declared missing_codes)")
        source_column = it.get("from")
        if source_column is not None and not isinstance(source_column, str):
            chk.fail(f"{where}.from", source_column, "the column name of another instrument's item, e.g. wemwbs_6")
        items[item_id] = Item(
            id=item_id, column=f"{inst_id}_{item_id}", label=chk.text(it, "label", where), response=response,
            reverse=chk.boolean(it, "reverse", where, False), role=chk.text(it, "role", where, False, "item"),
            source_column=source_column,
        )

    value_sets: dict[str, ValueSet] = {}
    vs_raw = raw.get("value_sets", {}) or {}
    if not isinstance(vs_raw, Mapping):
        chk.fail("value_sets", vs_raw, "a mapping of value set id: definition")
    scales_raw = raw.get("scales", _MISSING)
    if not isinstance(scales_raw, list) or not scales_raw:
        chk.fail("scales", scales_raw, "a non-empty list of scales")
    # value sets are checked against the dimensions of the scales that use them
    for vid, vdef in vs_raw.items():
        users = [s for s in scales_raw if isinstance(s, Mapping) and s.get("value_set") == vid]
        if not users or not isinstance(users[0].get("items"), list):
            chk.fail(f"value_sets.{vid}", vid, "a value set used by a value_set scale with an items list")
        dims = [str(d) for d in users[0]["items"]]
        if any(d not in items for d in dims):
            continue  # the scale's own check reports the bad item
        levels = int(items[dims[0]].response.highest)
        value_sets[str(vid)] = _value_set(chk, str(vid), vdef, f"value_sets.{vid}", dims, levels)

    scales: dict[str, Scale] = {}
    for i, sc in enumerate(scales_raw):
        scale = _scale(chk, sc, f"scales[{i}]", inst_id, items, scales, value_sets)
        if scale.rule == "value_set":
            dims = [items[d] for d in scale.items]
            if any(d.response.codes is not None or d.response.min != 1 for d in dims) or \
                    len({d.response.max for d in dims}) != 1:
                chk.fail(f"scales[{i}].items", list(scale.items), "dimensions with the same levels 1..L")
        if scale.rule == "lookup":
            src = scales[scale.of]
            if src.range is not None:
                needed = np.arange(math.ceil(src.range[0]), math.floor(src.range[1]) + 1)
                absent = [int(x) for x in needed if float(x) not in scale.table]
                if absent:
                    chk.fail(f"scales[{i}].table", absent, f"an entry for every whole score of {src.column}")
        scales[scale.id] = scale

    return Instrument(
        id=inst_id, name=chk.text(raw, "name", ""), version=chk.text(raw, "version", "", False, "1"),
        source=chk.text(raw, "source", ""), verification=tuple(dict(v) for v in verification),
        items=tuple(items.values()), scales=tuple(scales.values()), missing_codes=missing_codes,
        value_sets=value_sets, path=str(path),
    )


def load_instruments(extra_dir: str | Path | None = None) -> dict[str, Instrument]:
    """Every shipped instrument, then the study's own definitions (which replace shipped ones of the same id)."""
    registry: dict[str, Instrument] = {}
    for folder in [instruments_dir()] + ([Path(extra_dir)] if extra_dir is not None else []):
        folder = Path(folder)
        if not folder.is_dir():
            raise CpevalError(f"{folder}: instruments folder not found")
        seen: dict[str, str] = {}
        for path in sorted(folder.glob("*.y*ml")):
            inst = load_instrument(path)
            if inst.id in seen:
                raise CpevalError(f"{path}: instrument id '{inst.id}' is also defined in {seen[inst.id]}")
            seen[inst.id] = str(path)
            registry[inst.id] = inst
    return dict(sorted(registry.items()))


# ----------------------------------------------------------------------------------------------------------------
# Value sets supplied as CSV
# ----------------------------------------------------------------------------------------------------------------


def load_value_set_csv(path: str | Path, instrument: Instrument, scale_id: str | None = None) -> ValueSet:
    """A value set from a CSV table, for the instrument's value_set scale.

    Two layouts are accepted:
    - ``state,value``: one row per health state (e.g. 21345), as in a crosswalk or national value set table;
    - ``dimension,level,value`` (``attribute`` is accepted for ``dimension``): additive terms, index = sum of the
      values of each dimension's level, plus an optional row with dimension ``intercept`` (e.g. an ICECAP-A tariff).
    """
    path = Path(path)
    scale = next((s for s in instrument.scales if s.rule == "value_set" and (scale_id in (None, s.id))), None)
    if scale is None:
        raise CpevalError(f"{path}: instrument {instrument.id} has no value_set scale to use this table with")
    dims = list(scale.items)
    levels = int(instrument.item(dims[0]).response.highest)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise CpevalError(f"{path}: value set file not found") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CpevalError(f"{path}: cannot read value set CSV ({exc})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    if "attribute" in table.columns and "dimension" not in table.columns:
        table = table.rename(columns={"attribute": "dimension"})
    name = f"{path.name} (user-supplied)"

    def num(col: str, row: int, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise CpevalError(f"{path}: row {row + 2}, column '{col}' is {text!r}; expected a number")
        return value

    if {"state", "value"} <= set(table.columns):
        states: dict[int, float] = {}
        pattern = f"{len(dims)} digits, each 1-{levels}"
        for r, (state, value) in enumerate(zip(table["state"], table["value"])):
            s = state.strip()
            if len(s) != len(dims) or not s.isdigit() or any(not 1 <= int(c) <= levels for c in s):
                raise CpevalError(f"{path}: row {r + 2}, column 'state' is {state!r}; expected {pattern}")
            if int(s) in states:
                raise CpevalError(f"{path}: row {r + 2}, state {s} appears twice; expected each state once")
            states[int(s)] = num("value", r, value)
        return ValueSet(id=path.stem, name=name, source=str(path), states=states)
    if {"dimension", "level", "value"} <= set(table.columns):
        coef = {d: [math.nan] * levels for d in dims}
        intercept = 0.0
        for r, (dim, level, value) in enumerate(zip(table["dimension"], table["level"], table["value"])):
            dim = dim.strip().lower()
            if dim == "intercept":
                intercept = num("value", r, value)
                continue
            if dim not in coef:
                raise CpevalError(f"{path}: row {r + 2}, column 'dimension' is {dim!r}; expected one of "
                                  f"{', '.join(dims)} or intercept")
            lvl = num("level", r, level)
            if not lvl.is_integer() or not 1 <= lvl <= levels:
                raise CpevalError(f"{path}: row {r + 2}, column 'level' is {level!r}; expected 1 to {levels}")
            coef[dim][int(lvl) - 1] = num("value", r, value)
        absent = [f"{d} level {i + 1}" for d in dims for i in range(levels) if math.isnan(coef[d][i])]
        if absent:
            raise CpevalError(f"{path}: no value for {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}; "
                              f"expected one row per dimension and level")
        return ValueSet(id=path.stem, name=name, source=str(path), intercept=intercept,
                        coefficients={d: tuple(v) for d, v in coef.items()})
    raise CpevalError(f"{path}: columns are {', '.join(table.columns)}; expected state,value or "
                      "dimension,level,value")


# ----------------------------------------------------------------------------------------------------------------
# Labels for writing scored data back to SPSS
# ----------------------------------------------------------------------------------------------------------------


def labels_for(instruments: list[Instrument]) -> tuple[dict[str, str], dict[str, dict[float, str]]]:
    """Variable labels (items and scores) and value labels (items) for the given instruments."""
    variable_labels: dict[str, str] = {}
    value_labels: dict[str, dict[float, str]] = {}
    for inst in instruments:
        for item in inst.items:
            variable_labels[item.column] = f"{inst.name.split(' (')[0]} {item.id}: {item.label}"[:120]
            if item.response.labels:
                value_labels[item.column] = dict(item.response.labels)
        for scale in inst.scales:
            variable_labels[scale.column] = scale.label[:120]
    return variable_labels, value_labels
