"""Read study data (SPSS .sav or CSV) into one long table, and write data back out.

This is the first stage of cpeval (see DESIGN.md): everything later works on the long table that
:func:`read_data` returns, so this module is where the study's file layout stops mattering.

What :func:`read_data` does, in order:

1. reads the file (.sav with ``pyreadstat.read_sav(user_missing=True)``, .csv with pandas);
2. turns SPSS user-missing codes declared in the file, and the map's ``missing_codes``, into missing values,
   each with a QA record (reasons ``user_missing`` and ``missing_code``);
3. renames and, for a wide export, reshapes to long exactly as ``docs/variable-map.md`` says
   (``rows out = rows in x time points``; nothing is dropped; unmapped columns are kept and logged);
4. replaces codes by their value labels for the map's ``value_labels_as_text`` variables.

Everything is vectorised over rows: the loops in this module run over columns or over the distinct codes
found in a column, never over the rows of the file, so reading a 200,000-row export costs little more than
pyreadstat's own parse (see ``benchmarks/bench_read_sav.py``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyreadstat
import yaml

from cpeval.errors import CpevalError
from cpeval.qa import QA_COLUMNS, empty_qa

__all__ = [
    "ImportResult",
    "IrregularVariable",
    "TimepointAffix",
    "VariableMap",
    "load_variable_map",
    "read_data",
    "write_data",
]

# --------------------------------------------------------------------------------------------------------------
# Variable map
# --------------------------------------------------------------------------------------------------------------

#: Top-level keys of a variable map, in the order docs/variable-map.md lists them.
MAP_KEYS = (
    "format",
    "timepoints",
    "fixed",
    "repeated",
    "variables",
    "value_labels_as_text",
    "missing_codes",
    "timepoint_column",
    "timepoint_values",
    "timepoint",
)
_WIDE_ONLY = ("timepoints", "repeated", "variables")
_LONG_ONLY = ("timepoint_column", "timepoint_values", "timepoint")
_EXAMPLE_AFFIX = "{prefix: T1_} or {suffix: _T1}"


@dataclass(frozen=True)
class TimepointAffix:
    """How the variables of one time point are marked in a wide export.

    The SPSS name of stem ``S`` at this time point is ``prefix + S + suffix``; either part may be empty,
    not both.
    """

    prefix: str = ""
    suffix: str = ""

    def spss_name(self, stem: str) -> str:
        """SPSS name of ``stem`` at this time point."""
        return f"{self.prefix}{stem}{self.suffix}"

    def stem_of(self, name: str) -> str | None:
        """The stem of ``name`` if it carries this affix (and something is left), else None."""
        if not (name.startswith(self.prefix) and name.endswith(self.suffix)):
            return None
        stem = name[len(self.prefix) : len(name) - len(self.suffix)]
        return stem or None

    def describe(self) -> str:
        parts = []
        if self.prefix:
            parts.append(f"prefix {self.prefix!r}")
        if self.suffix:
            parts.append(f"suffix {self.suffix!r}")
        return " and ".join(parts)


@dataclass(frozen=True)
class IrregularVariable:
    """An entry of ``variables``: an SPSS name that is one time point of a cpeval variable."""

    name: str
    timepoint: str


@dataclass(frozen=True)
class VariableMap:
    """A parsed and validated variable map (see ``docs/variable-map.md``).

    Build one with :func:`load_variable_map` (from YAML) or :meth:`VariableMap.from_dict`; both validate.
    The dict attributes are plain dicts for easy inspection and copying: treat them as read-only.

    Attributes
    ----------
    format : {"wide", "long"}
    timepoints : dict of str to TimepointAffix
        Wide only: time point label -> affix, in time order.
    fixed : dict of str to str
        SPSS name -> cpeval name, variables measured once (long format: every column to rename).
    repeated : dict of str to str
        Wide only: SPSS stem -> cpeval name, variables measured at each time point.
    variables : dict of str to IrregularVariable
        Wide only: irregular SPSS name -> (cpeval name, time point). An entry whose cpeval name is also a
        ``repeated`` name replaces that repeated variable's SPSS name at that time point.
    value_labels_as_text : tuple of str
        cpeval names whose codes are replaced by their value labels.
    missing_codes : dict of str to tuple
        ``"all"`` or an SPSS name (or, in a wide map, a stem) -> codes treated as missing.
    timepoint_column, timepoint_values, timepoint
        Long only: where the time point of each row comes from.
    source : str
        The file the map was read from (used in error messages).
    """

    format: str
    timepoints: dict[str, TimepointAffix] = field(default_factory=dict)
    fixed: dict[str, str] = field(default_factory=dict)
    repeated: dict[str, str] = field(default_factory=dict)
    variables: dict[str, IrregularVariable] = field(default_factory=dict)
    value_labels_as_text: tuple[str, ...] = ()
    missing_codes: dict[str, tuple] = field(default_factory=dict)
    timepoint_column: str | None = None
    timepoint_values: dict[Any, str] = field(default_factory=dict)
    timepoint: str | None = None
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<dict>") -> VariableMap:
        """Validate a map given as a dict (as loaded from YAML).

        Raises
        ------
        CpevalError
            Naming ``source``, the key, the bad value and what was expected.
        """
        return _parse_map(raw, source)

    @property
    def participant_column(self) -> str | None:
        """SPSS name mapped to ``participant_id``, if any."""
        for spss, name in self.fixed.items():
            if name == "participant_id":
                return spss
        return None

    def wide_slots(self) -> dict[str, dict[str, str]]:
        """Wide maps: cpeval name -> {time point: SPSS name} for ``repeated`` and ``variables``.

        ``variables`` entries replace the ``repeated`` SPSS name at their time point.
        """
        slots: dict[str, dict[str, str]] = {}
        for stem, name in self.repeated.items():
            slots[name] = {tp: affix.spss_name(stem) for tp, affix in self.timepoints.items()}
        for spss, irregular in self.variables.items():
            slots.setdefault(irregular.name, {})[irregular.timepoint] = spss
        # keep time order inside each variable
        order = list(self.timepoints)
        return {name: dict(sorted(s.items(), key=lambda kv: order.index(kv[0]))) for name, s in slots.items()}


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    loader.flatten_mapping(node)
    seen: dict[Any, Any] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            continue  # SafeConstructor reports unhashable keys itself
        if key in seen:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def load_variable_map(path: str | PathLike) -> VariableMap:
    """Read and validate a variable map (YAML; format in ``docs/variable-map.md``).

    Parameters
    ----------
    path : str or path-like
        The YAML file.

    Returns
    -------
    VariableMap

    Raises
    ------
    CpevalError
        If the file is missing or not YAML, or a key is unknown, has the wrong type or contradicts another
        (a time point with neither prefix nor suffix, a cpeval name used twice, ...). The message names the
        file, the key, the bad value and what was expected.

    Examples
    --------
    >>> vmap = load_variable_map("analysis/example_map.yaml")  # doctest: +SKIP
    >>> list(vmap.timepoints)  # doctest: +SKIP
    ['baseline', 'follow_up']
    """
    path = Path(path)
    if not path.is_file():
        raise CpevalError(f"variable map {path}: file not found (expected a YAML variable map)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CpevalError(f"variable map {path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                          "expected a YAML file saved as UTF-8") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise CpevalError(f"variable map {path}: not valid YAML{where} ({problem}); "
                          "expected a YAML mapping as in docs/variable-map.md") from None
    return _parse_map(raw, str(path))


def _map_error(source: str, key: str, value: Any, expected: str) -> CpevalError:
    return CpevalError(f"variable map {source}: key '{key}' is {value!r}; expected {expected}")


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def _check_name(source: str, key: str, value: Any, what: str) -> str:
    if not _is_name(value):
        hint = ""
        if isinstance(value, bool) or value is None:
            # YAML 1.1 reads unquoted yes/no/on/off/true/false as booleans and an empty value as null
            hint = " (quote names such as 'ON', 'NO', 'YES' in YAML; an empty value reads as null)"
        raise _map_error(source, key, value, what + hint)
    return value


def _check_mapping(source: str, key: str, value: Any, expected: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _map_error(source, key, value, expected)
    return dict(value)


def _parse_map(raw: Any, source: str) -> VariableMap:
    """Validate a loaded YAML document and build the VariableMap. Every check names source and key."""
    if not isinstance(raw, Mapping):
        raise CpevalError(f"variable map {source}: the document is {raw!r}; expected a mapping with the keys "
                          f"{', '.join(MAP_KEYS)}")
    for key in raw:
        if key not in MAP_KEYS:
            raise CpevalError(f"variable map {source}: unknown top-level key {key!r}; expected one of "
                              f"{', '.join(MAP_KEYS)}")

    fmt = raw.get("format")
    if fmt not in ("wide", "long"):
        raise _map_error(source, "format", fmt, "'wide' or 'long'")
    wrong_format = _LONG_ONLY if fmt == "wide" else _WIDE_ONLY
    for key in wrong_format:
        if key in raw:
            other = "long" if fmt == "wide" else "wide"
            raise _map_error(source, key, raw[key], f"no '{key}' in a {fmt} map ('{key}' is for {other} maps only)")

    # -- timepoints (wide)
    timepoints: dict[str, TimepointAffix] = {}
    if fmt == "wide":
        tps = raw.get("timepoints")
        if not isinstance(tps, Mapping) or not tps:
            raise _map_error(source, "timepoints", tps,
                             "a mapping of time point labels to affixes in time order, "
                             f"e.g. baseline: {_EXAMPLE_AFFIX}")
        seen_affix: dict[tuple[str, str], str] = {}
        for label, spec in tps.items():
            key = f"timepoints.{label}"
            _check_name(source, key, label, "a time point label (text)")
            if not isinstance(spec, Mapping) or not spec:
                raise _map_error(source, key, spec, f"a mapping with prefix and/or suffix, e.g. {_EXAMPLE_AFFIX}")
            for sub in spec:
                if sub not in ("prefix", "suffix"):
                    raise _map_error(source, f"{key}.{sub}", spec[sub],
                                     f"only 'prefix' and/or 'suffix', e.g. {_EXAMPLE_AFFIX}")
            prefix, suffix = spec.get("prefix", ""), spec.get("suffix", "")
            for sub, value in (("prefix", prefix), ("suffix", suffix)):
                if not isinstance(value, str):
                    raise _map_error(source, f"{key}.{sub}", value, f"text, e.g. {_EXAMPLE_AFFIX}")
            if not prefix and not suffix:
                raise _map_error(source, key, dict(spec), f"a non-empty prefix or suffix, e.g. {_EXAMPLE_AFFIX}")
            if (prefix, suffix) in seen_affix:
                raise _map_error(source, key, dict(spec),
                                 f"an affix different from time point '{seen_affix[(prefix, suffix)]}'")
            seen_affix[(prefix, suffix)] = label
            timepoints[label] = TimepointAffix(prefix, suffix)

    # -- fixed
    fixed_raw = _check_mapping(source, "fixed", raw.get("fixed"),
                               "a mapping of SPSS names to cpeval names, e.g. ID: participant_id")
    fixed: dict[str, str] = {}
    used_names: dict[str, str] = {}  # cpeval name -> key that first used it
    reserved = {"source_row"}
    if fmt == "wide" or raw.get("timepoint_column") is not None or raw.get("timepoint") is not None:
        reserved.add("timepoint")  # made by the reader

    def use_name(name: str, key: str) -> None:
        if name in reserved:
            raise _map_error(source, key, name, f"a cpeval name other than {sorted(reserved)} (the reader makes those)")
        if name in used_names:
            raise _map_error(source, key, name, f"a cpeval name not already used (it is used by '{used_names[name]}')")
        used_names[name] = key

    for spss, name in fixed_raw.items():
        key = f"fixed.{spss}"
        _check_name(source, key, spss, "an SPSS variable name (text)")
        _check_name(source, key, name, "a cpeval name (text)")
        use_name(name, key)
        fixed[spss] = name
    if fmt == "wide" and "participant_id" not in fixed.values():
        raise _map_error(source, "fixed", fixed_raw,
                         "a fixed entry naming the participant_id column (e.g. ID: participant_id); a wide file "
                         "needs it to link a person's time points")

    # -- repeated (wide)
    repeated: dict[str, str] = {}
    for stem, name in _check_mapping(source, "repeated", raw.get("repeated"),
                                     "a mapping of SPSS stems to cpeval names, e.g. WEMWBS1: wemwbs_1").items():
        key = f"repeated.{stem}"
        _check_name(source, key, stem, "an SPSS stem (text)")
        _check_name(source, key, name, "a cpeval name (text)")
        use_name(name, key)
        repeated[stem] = name

    # -- variables (wide)
    variables: dict[str, IrregularVariable] = {}
    irregular_slots: dict[tuple[str, str], str] = {}
    for spss, spec in _check_mapping(source, "variables", raw.get("variables"),
                                     "a mapping of SPSS names to {name: ..., timepoint: ...}").items():
        key = f"variables.{spss}"
        _check_name(source, key, spss, "an SPSS variable name (text)")
        if not isinstance(spec, Mapping):
            raise _map_error(source, key, spec, "a mapping {name: <cpeval name>, timepoint: <time point label>}")
        for sub in spec:
            if sub not in ("name", "timepoint"):
                raise _map_error(source, f"{key}.{sub}", spec[sub], "only 'name' and 'timepoint'")
        name = _check_name(source, f"{key}.name", spec.get("name"), "a cpeval name (text)")
        tp = spec.get("timepoint")
        if tp not in timepoints:
            raise _map_error(source, f"{key}.timepoint", tp, f"one of the time points {list(timepoints)}")
        if name in used_names and name not in repeated.values():
            # sharing a name with a repeated variable is allowed (it replaces that time point); anything else clashes
            raise _map_error(source, f"{key}.name", name,
                             f"a cpeval name not already used (it is used by '{used_names[name]}')")
        if name in reserved:
            raise _map_error(source, f"{key}.name", name, f"a cpeval name other than {sorted(reserved)}")
        if (name, tp) in irregular_slots:
            raise _map_error(source, key, dict(spec),
                             f"a (name, timepoint) pair not already given by 'variables.{irregular_slots[(name, tp)]}'")
        irregular_slots[(name, tp)] = spss
        variables[spss] = IrregularVariable(name, tp)

    # -- value_labels_as_text
    vlat = raw.get("value_labels_as_text")
    if vlat is None:
        vlat = []
    if not isinstance(vlat, list):
        raise _map_error(source, "value_labels_as_text", vlat, "a list of cpeval names, e.g. [arm, gender]")
    for i, name in enumerate(vlat):
        _check_name(source, f"value_labels_as_text[{i}]", name, "a cpeval name (text)")
        if name in vlat[:i]:
            raise _map_error(source, f"value_labels_as_text[{i}]", name, "each name once")

    # -- missing_codes
    missing_codes: dict[str, tuple] = {}
    for var, codes in _check_mapping(source, "missing_codes", raw.get("missing_codes"),
                                     "a mapping such as {all: [-9, -8], AGE: [999]}").items():
        key = f"missing_codes.{var}"
        _check_name(source, key, var, "'all' or an SPSS variable name (text)")
        if not isinstance(codes, list):
            raise _map_error(source, key, codes, "a list of codes, e.g. [-9, -8]")
        for i, code in enumerate(codes):
            if isinstance(code, bool) or not isinstance(code, (int, float, str)):
                raise _map_error(source, f"{key}[{i}]", code, "a number or a text code")
        missing_codes[var] = tuple(codes)

    # -- long-format time point
    tcol = raw.get("timepoint_column")
    if tcol is not None:
        _check_name(source, "timepoint_column", tcol, "the SPSS name of the time point variable (text)")
        if tcol in fixed:
            raise _map_error(source, "timepoint_column", tcol, "a column not also listed under 'fixed'")
    tvalues: dict[Any, str] = {}
    if raw.get("timepoint_values") is not None:
        if tcol is None:
            raise _map_error(source, "timepoint_values", raw["timepoint_values"],
                             "a timepoint_column to go with it")
        tv = _check_mapping(source, "timepoint_values", raw["timepoint_values"],
                            "a mapping of codes to time point labels, e.g. {1: baseline, 2: follow_up}")
        if not tv:
            raise _map_error(source, "timepoint_values", tv, "at least one code -> label")
        for code, label in tv.items():
            key = f"timepoint_values.{code}"
            if isinstance(code, bool) or not isinstance(code, (int, float, str)):
                raise _map_error(source, key, code, "a number or text code")
            _check_name(source, key, label, "a time point label (text)")
            if label in tvalues.values():
                raise _map_error(source, key, label, "each time point label once")
            tvalues[code] = label
    tconst = raw.get("timepoint")
    if tconst is not None:
        _check_name(source, "timepoint", tconst, "a time point label (text)")
        if tcol is not None:
            raise _map_error(source, "timepoint", tconst,
                             "either timepoint_column (a time point per row) or timepoint (one for the whole "
                             "file), not both")

    vmap = VariableMap(
        format=fmt,
        timepoints=timepoints,
        fixed=fixed,
        repeated=repeated,
        variables=variables,
        value_labels_as_text=tuple(vlat),
        missing_codes=missing_codes,
        timepoint_column=tcol,
        timepoint_values=tvalues,
        timepoint=tconst,
        source=source,
    )

    # -- SPSS names: each may be named once (a derived repeated name may not also be fixed or irregular)
    if fmt == "wide":
        named: dict[str, str] = {spss: f"fixed.{spss}" for spss in fixed}
        for spss in variables:
            if spss in named:
                raise _map_error(source, f"variables.{spss}", spss,
                                 f"an SPSS name not already named by '{named[spss]}'")
            named[spss] = f"variables.{spss}"
        for stem, name in repeated.items():
            for tp, affix in timepoints.items():
                if (name, tp) in irregular_slots:
                    continue
                spss = affix.spss_name(stem)
                if spss in named:
                    raise _map_error(source, f"repeated.{stem}", stem,
                                     f"a stem whose {tp} name {spss!r} is not already named by '{named[spss]}'")
                named[spss] = f"repeated.{stem}"
    return vmap


# --------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What :func:`read_data` returns.

    Attributes
    ----------
    data : DataFrame
        Long table: ``participant_id``, ``timepoint`` first (when known), the other columns, then
        ``source_row`` (1-based row of the file the values came from).
    qa : DataFrame
        QA records (columns ``cpeval.qa.QA_COLUMNS``) with reasons ``user_missing``, ``missing_code``,
        ``no_value_label``, ``missing_timepoint`` and ``unmapped``.
    log : list of str
        Human-readable import log.
    variable_labels : dict of str to str
        cpeval name -> SPSS variable label.
    value_labels : dict of str to dict
        cpeval name -> {code: label}, as in the file (so :func:`write_data` can put them back).
    timepoints : list of str
        Time point labels in time order ([] when the data has none).
    source : str
        File name used in QA records.
    """

    data: pd.DataFrame
    qa: pd.DataFrame
    log: list[str]
    variable_labels: dict[str, str]
    value_labels: dict[str, dict]
    timepoints: list[str]
    source: str


@dataclass
class _Raw:
    """A file as read, before mapping: columns by SPSS name (file order) plus the file's metadata."""

    columns: dict[str, pd.Series]
    n_rows: int
    variable_labels: dict[str, str]
    value_labels: dict[str, dict]
    user_missing: dict[str, tuple[list, list]]  # SPSS name -> (discrete codes, [(lo, hi), ...])
    kind: str
    encoding: str


@dataclass
class _Hit:
    """Values of one column set to missing: which rows, which values, why (turned into QA records later)."""

    column: str
    index: np.ndarray  # 0-based rows of the file
    values: np.ndarray  # the original values as text (object), as QA records show them
    reason: str
    expected: str
    action: np.ndarray  # per value (object)


_SPSS_ERRORS = (pyreadstat.ReadstatError, pyreadstat.PyreadstatError)


def read_data(
    path: str | PathLike,
    *,
    variable_map: VariableMap | str | PathLike | None = None,
    encoding: str | None = None,
) -> ImportResult:
    """Read an SPSS .sav or CSV export into a long table with QA records and an import log.

    Parameters
    ----------
    path : str or path-like
        A ``.sav`` or ``.csv`` file (by suffix, case-insensitive).
    variable_map : VariableMap, str or path-like, optional
        How the file is laid out (see ``docs/variable-map.md``); a path is loaded with
        :func:`load_variable_map`. Without a map the file is taken as it is (columns unchanged).
    encoding : str, optional
        Text encoding of the file. .sav files declare their own; pass this only for legacy files whose
        strings do not decode. CSV defaults to UTF-8 (with or without a byte-order mark).

    Returns
    -------
    ImportResult

    Raises
    ------
    CpevalError
        Missing or unreadable file, unsupported suffix, undecodable text (retry with an encoding), map names
        not in the file (all listed), a duplicated or missing participant_id in a wide file, a time point code
        the map does not know.

    Notes
    -----
    Missing values: SPSS user-missing codes (read with ``user_missing=True`` so they can be seen), then the
    map's ``missing_codes`` (``all`` applies to every column except the participant and time point
    identifiers; in a text column a cell matches when its text is the code), become NaN; each one is a QA
    record naming the file, row, participant, time point, variable and code, with the code's value label.
    Empty strings in .sav text variables become missing too (SPSS has no missing value for strings).

    A wide row becomes one row per time point (``rows out = rows in x time points``, person by person in file
    order). CSV columns keep pandas' inferred types: numeric-looking columns are numeric, a column with stray
    text stays text (pandas 3 ``str`` dtype) so that scoring can report the stray values.

    Examples
    --------
    >>> result = read_data("study.sav", variable_map=load_variable_map("study_map.yaml"))  # doctest: +SKIP
    >>> result.data.columns[:2].tolist()  # doctest: +SKIP
    ['participant_id', 'timepoint']
    """
    path = Path(path)
    source = path.name
    if isinstance(variable_map, (str, PathLike)):
        variable_map = load_variable_map(variable_map)
    elif variable_map is not None and not isinstance(variable_map, VariableMap):
        raise TypeError(f"variable_map must be a VariableMap or a path, not {type(variable_map).__name__}")

    suffix = path.suffix.lower()
    if suffix not in (".sav", ".csv"):
        raise CpevalError(f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; "
                          "expected a .sav or .csv file")
    if not path.exists():
        raise CpevalError(f"{path}: file not found; expected an existing .sav or .csv file")
    if not path.is_file():
        raise CpevalError(f"{path}: not a file; expected a .sav or .csv file")

    if suffix == ".sav":
        raw = _read_sav(path, encoding)
    else:
        id_column = variable_map.participant_column if variable_map is not None else None
        raw = _read_csv(path, encoding, id_column)

    log = [
        f"read {path} ({raw.kind}, encoding {raw.encoding})",
        f"rows in: {raw.n_rows}; columns in: {len(raw.columns)}",
    ]
    if variable_map is not None:
        log.append(f"variable map: {variable_map.source} ({variable_map.format})")

    if variable_map is None:
        return _finish_unmapped(raw, source, log)
    if variable_map.format == "wide":
        return _finish_wide(raw, variable_map, source, log)
    return _finish_long(raw, variable_map, source, log)


# -- file readers ----------------------------------------------------------------------------------------------


def _decode_detail(exc: UnicodeDecodeError) -> str:
    # the offending byte rather than its offset: pandas decodes in chunks, so offsets are chunk-relative
    bad = exc.object[exc.start : exc.start + 1]
    return f"byte 0x{bad.hex()}: {exc.reason}" if bad else exc.reason


def _encoding_error(path: Path, encoding: str | None, detail: str) -> CpevalError:
    tried = f" as {encoding}" if encoding else ""
    return CpevalError(
        f"{path}: the text could not be decoded{tried} ({detail}); retry passing the file's encoding with "
        "--encoding (encoding= in Python), e.g. --encoding cp1252 for older Windows exports or --encoding latin1"
    )


# Files from this size on are parsed by two processes (pyreadstat's row chunks): the parse is most of a big
# read's time, and R haven, the speed to beat, is otherwise a little faster than pyreadstat on one core.
PARALLEL_SAV_BYTES = 16 * 1024 * 1024


def _parse_sav(path: Path, encoding: str | None):
    workers = min(2, os.cpu_count() or 1)
    if workers > 1 and path.stat().st_size >= PARALLEL_SAV_BYTES:
        # only when the header states the row count: pyreadstat's chunked reader fails without it (#222, #109)
        n_rows = pyreadstat.read_sav(str(path), metadataonly=True, encoding=encoding)[1].number_rows
        if n_rows and n_rows > 0:
            try:
                return pyreadstat.read_file_multiprocessing(pyreadstat.read_sav, str(path), num_processes=workers,
                                                            num_rows=n_rows, user_missing=True, encoding=encoding)
            except (OSError, RuntimeError):  # e.g. no processes allowed here: the plain read below still works
                pass
    return pyreadstat.read_sav(str(path), user_missing=True, encoding=encoding)


def _read_sav(path: Path, encoding: str | None) -> _Raw:
    try:
        # user_missing=True: without it pyreadstat silently turns user-missing codes into NaN and we could not
        # report them; with it they arrive as their codes and meta.missing_ranges says which they are.
        frame, meta = _parse_sav(path, encoding)
    except _SPSS_ERRORS as exc:
        message = str(exc)
        lowered = message.lower()
        if "encoding" in lowered or "character set" in lowered or "convert string" in lowered or "iconv" in lowered:
            raise _encoding_error(path, encoding, f"pyreadstat: {message}") from None
        raise CpevalError(f"{path}: cannot be read as an SPSS .sav file (pyreadstat: {message}); expected a .sav "
                          "data file saved by SPSS, PSPP, R haven or pyreadstat") from None
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, encoding, _decode_detail(exc)) from None
    except (OverflowError, ValueError) as exc:  # e.g. out-of-range dates (pyreadstat #26)
        raise CpevalError(f"{path}: cannot be read as an SPSS .sav file ({type(exc).__name__}: {exc}); "
                          "expected dates and numbers SPSS can hold") from None
    except OSError as exc:
        raise CpevalError(f"{path}: cannot be opened ({exc.strerror or exc}); expected a readable file") from None

    user_missing: dict[str, tuple[list, list]] = {}
    # SPSS discrete missing values arrive as ranges with lo == hi; keep them as discrete codes (np.isin is
    # cheaper than a range test) and real ranges (e.g. -99 THRU -90) as ranges.
    for var, ranges in (meta.missing_ranges or {}).items():
        codes, spans = user_missing.setdefault(var, ([], []))
        for span in ranges:
            lo, hi = span["lo"], span["hi"]
            if lo == hi:
                codes.append(lo)
            else:
                spans.append((lo, hi))
    for var, values in (meta.missing_user_values or {}).items():  # filled by some writers; accept both
        user_missing.setdefault(var, ([], []))[0].extend(v for v in values if v not in user_missing[var][0])

    columns = {name: frame[name] for name in frame.columns}
    return _Raw(
        columns=columns,
        n_rows=len(frame),
        variable_labels={k: v for k, v in (meta.column_names_to_labels or {}).items() if v},
        value_labels={k: dict(v) for k, v in (meta.variable_value_labels or {}).items() if v},
        user_missing=user_missing,
        kind="SPSS .sav",
        encoding=meta.file_encoding or (encoding or "unknown"),
    )


_INT_TEXT = r"-?(?:0|[1-9][0-9]*)"


def _read_csv(path: Path, encoding: str | None, id_column: str | None) -> _Raw:
    used = encoding or "utf-8-sig"  # utf-8-sig also reads plain UTF-8, and drops Excel's byte-order mark
    # The participant id is read as text so that ids such as '007' keep their zeros; _tidy_id turns plain
    # integers back into numbers. low_memory=False: otherwise pandas infers types per chunk and a column can
    # come back with numbers in one part and text in another.
    try:
        frame = pd.read_csv(path, encoding=used, low_memory=False, dtype={id_column: str} if id_column else None)
    except UnicodeDecodeError as exc:
        raise _encoding_error(path, used, _decode_detail(exc)) from None
    except LookupError:
        raise CpevalError(f"{path}: unknown encoding {used!r}; expected an encoding name such as utf-8, cp1252 "
                          "or latin1") from None
    except pd.errors.EmptyDataError:
        raise CpevalError(f"{path}: the file is empty; expected a header row with the column names") from None
    except pd.errors.ParserError as exc:
        raise CpevalError(f"{path}: cannot be read as CSV ({exc}); expected comma-separated values with one "
                          "header row") from None
    except OSError as exc:
        raise CpevalError(f"{path}: cannot be opened ({exc.strerror or exc}); expected a readable file") from None
    return _Raw(
        columns={str(name): frame[name] for name in frame.columns},
        n_rows=len(frame),
        variable_labels={},
        value_labels={},
        user_missing={},
        kind="CSV",
        encoding=used,
    )


# -- missing values --------------------------------------------------------------------------------------------


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        return None


def _match_codes(series: pd.Series, values: np.ndarray | None, codes: list, spans: list) -> np.ndarray | None:
    """Boolean mask of cells equal to one of ``codes`` or inside one of ``spans``; None when none can match.

    ``values`` is the column as a float array when it is numeric (computed once per column by the caller).
    """
    numbers = [n for n in (_as_number(c) for c in codes) if n is not None and not np.isnan(n)]
    if values is not None:
        mask = np.isin(values, numbers) if numbers else np.zeros(len(values), dtype=bool)
        for lo, hi in spans:
            mask |= (values >= lo) & (values <= hi)
        return mask
    if _is_text(series):
        texts = [str(c) for c in codes]
        mask = np.array(series.isin(texts).to_numpy(dtype=bool, na_value=False))
        if numbers:
            # stray text in an item column ('-9 ' or '-9.0'): compare as numbers too
            as_numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            mask |= np.isin(as_numbers, numbers)
        return mask
    return None  # dates, booleans: codes cannot apply


def _code_text(value: Any) -> str:
    """A code as a person would write it: -9 rather than -9.0."""
    if isinstance(value, (float, np.floating)):
        if np.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, (np.integer,)):
        return str(int(value))
    return str(value)


def _label_lookup(labels: Mapping | None) -> dict:
    """Value labels keyed so that a float code (as pyreadstat gives) finds an int key (as YAML gives)."""
    lookup: dict = {}
    for key, label in (labels or {}).items():
        number = _as_number(key) if not isinstance(key, str) else None
        lookup[number if number is not None else key] = label
    return lookup


def _lookup_label(lookup: dict, value: Any) -> Any:
    if isinstance(value, str):
        return lookup.get(value)
    number = _as_number(value)
    return lookup.get(number) if number is not None else None


def _apply_missing(raw: _Raw, map_codes: Mapping[str, tuple], stem_of: Mapping[str, str], skip_all: set[str],
                   log: list[str]) -> list[_Hit]:
    """Set user-missing codes and map codes to NaN in ``raw.columns``; return where and why.

    ``stem_of`` gives the stem of a wide column, so that ``missing_codes`` keyed by a stem applies to it.
    One pass per column; the work per column is a few numpy comparisons, plus text for each distinct code found.
    """
    hits: list[_Hit] = []
    all_codes = list(map_codes.get("all", ()))
    n_user = n_map = 0
    for name, series in raw.columns.items():
        declared = raw.user_missing.get(name)
        codes = list(map_codes.get(name, ()))
        if name in stem_of:
            codes += map_codes.get(stem_of[name], ())
        if name not in skip_all:
            codes = all_codes + codes
        if not codes and not (declared and (declared[0] or declared[1])):
            continue  # most columns of most files: nothing to do
        values = None
        if series.dtype == np.float64:
            values = series.to_numpy()  # a read-only view: no copy until something is set to missing
        elif _is_numeric(series):
            values = series.to_numpy(dtype=float, na_value=np.nan)
        lookup = _label_lookup(raw.value_labels.get(name))
        mask_total = None
        if declared and (declared[0] or declared[1]):
            mask = _match_codes(series, values, *declared)
            if mask is not None and mask.any():
                hits.append(_make_hit(name, series, mask, "user_missing", lookup,
                                      "a valid answer, not an SPSS user-missing code",
                                      f"a user-missing code of {name} in the .sav"))
                n_user += len(hits[-1].index)
                mask_total = mask
        if codes:
            mask = _match_codes(series, values, codes, [])
            if mask is not None:
                if mask_total is not None:
                    mask &= ~mask_total  # already reported as user-missing
                if mask.any():
                    hits.append(_make_hit(name, series, mask, "missing_code", lookup,
                                          "a valid answer, not a missing code",
                                          f"a missing code for {name} in the variable map"))
                    n_map += len(hits[-1].index)
                    mask_total = mask if mask_total is None else (mask_total | mask)
        if mask_total is not None:
            if values is not None and series.dtype == np.float64:
                # a fresh float array is cheaper than Series.mask (which aligns and checks dtypes)
                cleared = values.copy()
                cleared[mask_total] = np.nan
                raw.columns[name] = pd.Series(cleared, index=series.index, name=series.name)
            else:
                raw.columns[name] = series.mask(mask_total)
    if raw.kind == "SPSS .sav":
        # SPSS has no missing value for strings: an empty string is an unanswered text question.
        n_blank = 0
        for name, series in raw.columns.items():
            if _is_text(series):
                blank = series.astype("str").str.strip().eq("").to_numpy(dtype=bool, na_value=False)
                if blank.any():
                    raw.columns[name] = series.mask(blank)
                    n_blank += int(blank.sum())
        if n_blank:
            log.append(f"empty strings in text variables read as missing: {n_blank}")
    if raw.user_missing:
        log.append(f"SPSS user-missing codes set to missing: {n_user} values "
                   f"(declared for {len(raw.user_missing)} variables)")
    if map_codes:
        log.append(f"variable-map missing codes set to missing: {n_map} values")
    return hits


def _make_hit(name: str, series: pd.Series, mask: np.ndarray, reason: str, lookup: dict, expected: str,
              why: str) -> _Hit:
    index = np.flatnonzero(mask)
    values = series.to_numpy()[index]  # only the flagged cells, in the column's own dtype
    # One text per distinct code (a handful), spread to the flagged rows by position: no loop over rows.
    codes, uniques = pd.factorize(values)
    value_texts, actions = [], []
    for code in uniques:
        label = _lookup_label(lookup, code)
        labelled = f" (value label {label!r})" if label is not None else ""
        value_texts.append(_code_text(code))
        actions.append(f"treated as missing: {value_texts[-1]}{labelled} is {why}")
    return _Hit(name, index, np.asarray(value_texts, dtype=object)[codes], reason, expected,
                np.asarray(actions, dtype=object)[codes])


# -- QA tables -------------------------------------------------------------------------------------------------


def _qa_table(parts: list[dict[str, Any]]) -> pd.DataFrame:
    """Concatenate column-wise QA parts (dicts of equal-length arrays or scalars) into a QA table."""
    if not parts:
        return empty_qa()
    columns: dict[str, list[np.ndarray]] = {c: [] for c in QA_COLUMNS}
    for part in parts:
        n = part["_n"]
        for c in QA_COLUMNS:
            value = part.get(c)
            if isinstance(value, np.ndarray):
                columns[c].append(value.astype(object, copy=False))
            else:
                column = np.empty(n, dtype=object)
                column[:] = value  # a scalar (text, None) for every record of this part
                columns[c].append(column)
    # dtype=object: the QA table is text-like and pandas 3 would otherwise infer its string dtype.
    # copy=False: the arrays are ours; consolidating them into one block would only copy a million pointers.
    return pd.DataFrame({c: np.concatenate(columns[c]) for c in QA_COLUMNS}, dtype=object, copy=False)


def _hit_parts(hits: list[_Hit], source: str, info: Mapping[str, tuple[str, str | None]], pid: np.ndarray | None,
               row_tp: np.ndarray | None) -> list[dict]:
    """QA parts for missing-value hits, sorted by file row then column (as a person would read the file).

    ``info`` maps an SPSS name to (cpeval name, time point or None); ``row_tp`` gives each file row's time
    point in a long file (None in a wide one, where the time point belongs to the column).
    """
    if not hits:
        return []
    order_of = {name: i for i, name in enumerate(info)}
    lengths = [len(h.index) for h in hits]
    # Per-hit facts (variable, reason, ...) are stored once and spread by hit number: the arrays built here
    # are one integer array per QA column, then a single fancy index in the final (row, column) order.
    hit_no = np.repeat(np.arange(len(hits)), lengths)
    index = np.concatenate([h.index for h in hits])
    col_rank = np.asarray([order_of.get(h.column, len(order_of)) for h in hits])[hit_no]
    # one int64 key (row, then column) sorts faster than a two-key lexsort
    order = np.argsort(index.astype(np.int64) * (len(order_of) + 1) + col_rank, kind="stable")
    index, hit_no = index[order], hit_no[order]

    def per_hit(values: list) -> np.ndarray:
        return np.asarray(values + [None], dtype=object)[:-1][hit_no]  # (+ [None]: keep a 1-d object array)

    if row_tp is not None:
        timepoint = row_tp[index]
    else:
        timepoint = per_hit([info.get(h.column, (h.column, None))[1] for h in hits])
    return [{
        "_n": len(index),
        "source": source,
        "row": (index + 1).astype(object),
        "participant_id": pid[index] if pid is not None else None,
        "timepoint": timepoint,
        "variable": per_hit([info.get(h.column, (h.column, None))[0] for h in hits]),
        "value": np.concatenate([h.values for h in hits])[order],
        "reason": per_hit([h.reason for h in hits]),
        "expected": per_hit([h.expected for h in hits]),
        "action": np.concatenate([h.action for h in hits])[order],
    }]


def _unmapped_parts(unmapped: list[tuple[str, str, str | None]], source: str) -> list[dict]:
    if not unmapped:
        return []
    return [{
        "_n": len(unmapped),
        "source": source,
        "row": None,
        "participant_id": None,
        "timepoint": np.asarray([tp for _, _, tp in unmapped], dtype=object),
        "variable": np.asarray([spss for spss, _, _ in unmapped], dtype=object),
        "value": None,
        "reason": "unmapped",
        "expected": "a column named in the variable map",
        "action": np.asarray([f"kept as {name!r}" + (f" at {tp}" if tp else " (measured once)")
                              for _, name, tp in unmapped], dtype=object),
    }]


# -- shared finishing steps ------------------------------------------------------------------------------------


def _tidy_id(series: pd.Series) -> pd.Series:
    """participant_id as integers when every id is one: SPSS stores numbers as doubles, and '101.0' in QA
    records and joins is a nuisance. Ids with missing values, fractions or text stay as they are."""
    if series.isna().any() or len(series) == 0:
        return series
    if _is_numeric(series) and pd.api.types.is_float_dtype(series.dtype):
        values = series.to_numpy()
        if np.all(np.isfinite(values)) and np.all(values == np.round(values)):
            return series.astype("int64")
    elif _is_text(series) and series.astype("str").str.fullmatch(_INT_TEXT).all():
        return pd.to_numeric(series).astype("int64")
    return series


def _values_as_text(data: pd.DataFrame, names: tuple[str, ...], value_labels: Mapping[str, dict], source: str,
                    vmap: VariableMap, log: list[str], file_row: np.ndarray, once: frozenset[str] = frozenset(),
                    n_tp: int = 1) -> list[dict]:
    """Replace codes by value labels in ``data`` (in place); QA parts for codes without a label.

    ``file_row`` is the 1-based row of the file each row of ``data`` comes from (QA records cite it).

    ``once`` names variables measured once in a wide file: they are repeated on each of the person's ``n_tp``
    long rows, but an unlabelled code is one cell of the file, so it gets one QA record (no time point).
    """
    parts: list[dict] = []
    done = []
    for name in names:
        if name not in data.columns:
            raise CpevalError(
                f"variable map {vmap.source}: value_labels_as_text names {name!r}, which is not a column of the "
                f"data read from {source}; expected a cpeval name from fixed, repeated or variables, or an "
                "unmapped column"
            )
        labels = value_labels.get(name)
        if not labels:
            log.append(f"value_labels_as_text: {name} has no value labels in the file; kept as is")
            continue
        lookup = _label_lookup(labels)
        series = data[name]
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        found = [_lookup_label(lookup, u) for u in uniques]
        texts = np.asarray([_code_text(u) if f is None else str(f) for u, f in zip(uniques, found)] + [np.nan],
                           dtype=object)
        data[name] = pd.Series(texts[codes], index=data.index, dtype="str")
        done.append(name)
        unlabelled = np.asarray([f is None for f in found] + [False])[codes]
        if name in once and n_tp > 1:
            unlabelled = unlabelled & (np.arange(len(unlabelled)) % n_tp == 0)
        if unlabelled.any():
            rows = np.flatnonzero(unlabelled)
            listing = ", ".join(f"{_code_text(k)} = {v}" for k, v in labels.items())
            actions = np.asarray([f"kept as the text {t!r}" for t in texts], dtype=object)
            parts.append({
                "_n": len(rows),
                "source": source,
                "row": file_row.astype(object)[rows],
                "participant_id": data["participant_id"].to_numpy(dtype=object)[rows]
                if "participant_id" in data.columns else None,
                "timepoint": data["timepoint"].to_numpy(dtype=object)[rows]
                if "timepoint" in data.columns and name not in once else None,
                "variable": name,
                "value": texts[codes[rows]],
                "reason": "no_value_label",
                "expected": f"a code with a value label ({listing})",
                "action": actions[codes[rows]],
            })
    if done:
        log.append(f"value labels as text: {', '.join(done)}")
    return parts


def _result(data: pd.DataFrame, qa_parts: list[dict], log: list[str], variable_labels: dict, value_labels: dict,
            timepoints: list[str], source: str) -> ImportResult:
    # other identifiers (worker_id, team_id, ...) get the same tidying as participant_id: 111, not 111.0
    for column in [c for c in data.columns if c.endswith("_id") and c != "participant_id"]:
        tidy = _tidy_id(data[column])
        if tidy is not data[column]:
            data[column] = tidy
    qa = _qa_table(qa_parts)
    log.append(f"rows out: {len(data)}; columns out: {len(data.columns)}; QA records: {len(qa)}")
    return ImportResult(data=data, qa=qa, log=log, variable_labels=variable_labels, value_labels=value_labels,
                        timepoints=timepoints, source=source)


def _front(columns: dict[str, Any], first: list[str]) -> list[str]:
    """Column order: ``first`` (those present), the rest in their order, ``source_row`` last."""
    rest = [c for c in columns if c not in first and c != "source_row"]
    return [c for c in first if c in columns] + rest + ["source_row"]


def _source_row(existing: pd.Series | None, n_rows: int, log: list[str]) -> pd.Series:
    """1-based file rows; a file written by cpeval already has them (rows of the original export): keep those."""
    if existing is not None:
        log.append("source_row kept from the file (rows of the original export)")
        return _tidy_id(existing)
    return pd.Series(np.arange(1, n_rows + 1, dtype=np.int64))


def _finish_unmapped(raw: _Raw, source: str, log: list[str]) -> ImportResult:
    skip = {c for c in ("participant_id", "timepoint", "source_row") if c in raw.columns}
    hits = _apply_missing(raw, {}, {}, skip, log)
    columns = {name: series.reset_index(drop=True) for name, series in raw.columns.items()}
    if "participant_id" in columns:
        columns["participant_id"] = _tidy_id(columns["participant_id"])
    columns["source_row"] = _source_row(columns.get("source_row"), raw.n_rows, log)
    # copy=False here and below: the columns are ours (fresh or views of pyreadstat's frame); consolidating
    # them into one block would copy the whole table once more for nothing.
    data = pd.DataFrame({c: columns[c] for c in _front(columns, ["participant_id", "timepoint"])},
                        index=pd.RangeIndex(raw.n_rows), copy=False)
    pid = data["participant_id"].to_numpy(dtype=object) if "participant_id" in data.columns else None
    row_tp = data["timepoint"].to_numpy(dtype=object) if "timepoint" in data.columns else None
    info = {name: (name, None) for name in raw.columns}
    timepoints = [str(t) for t in pd.unique(data["timepoint"].dropna())] if "timepoint" in data.columns else []
    return _result(data, _hit_parts(hits, source, info, pid, row_tp), log, dict(raw.variable_labels),
                   dict(raw.value_labels), timepoints, source)


def _absent_error(path_name: str, vmap: VariableMap, absent: list[str], columns: Mapping[str, Any]) -> CpevalError:
    folded = {re.sub(r"\s+", "", c).lower(): c for c in columns}
    described = []
    for name in absent:
        near = folded.get(re.sub(r"\s+", "", name).lower())
        described.append(f"{name} (the file has {near!r})" if near else name)
    return CpevalError(
        f"{path_name}: the variable map {vmap.source} names {len(absent)} SPSS variable"
        f"{'s' if len(absent) != 1 else ''} that the file does not have: {', '.join(described)}; expected each "
        "mapped name to be a column of the file (names are case-sensitive)"
    )


def _check_missing_code_keys(vmap: VariableMap, columns: Mapping[str, Any], stems: set[str], absent: list[str]) -> None:
    for key in vmap.missing_codes:
        if key != "all" and key not in columns and key not in stems and key not in absent:
            absent.append(key)


# -- wide ------------------------------------------------------------------------------------------------------


def _finish_wide(raw: _Raw, vmap: VariableMap, source: str, log: list[str]) -> ImportResult:
    columns = raw.columns
    timepoints = list(vmap.timepoints)
    n, n_tp = raw.n_rows, len(timepoints)

    # 1. Which file column goes where. Mapped names first; then every other column, by its affix.
    absent: list[str] = []
    fixed: dict[str, str] = {}  # cpeval name -> SPSS name
    for spss, name in vmap.fixed.items():
        if spss in columns:
            fixed[name] = spss
        else:
            absent.append(spss)
    slots = vmap.wide_slots()  # cpeval name -> {tp: SPSS}
    for name, by_tp in slots.items():
        for tp, spss in by_tp.items():
            if spss not in columns and spss not in absent:
                absent.append(spss)
    mapped = set(vmap.fixed) | {spss for by_tp in slots.values() for spss in by_tp.values()}

    unmapped: list[tuple[str, str, str | None]] = []  # (SPSS name, output name, tp or None)
    stem_of: dict[str, str] = {}
    for stem in vmap.repeated:
        for tp, affix in vmap.timepoints.items():
            stem_of[affix.spss_name(stem)] = stem
    extra_fixed: dict[str, str] = {}
    extra_slots: dict[str, dict[str, str]] = {}
    for col in columns:
        if col in mapped:
            continue
        matches = [(tp, affix.stem_of(col)) for tp, affix in vmap.timepoints.items() if affix.stem_of(col)]
        if len(matches) > 1:
            raise CpevalError(
                f"{source}: column {col!r} carries the affixes of several time points "
                f"({', '.join(tp for tp, _ in matches)}); expected at most one, or name it under 'variables' "
                f"in {vmap.source}"
            )
        if matches:
            tp, stem = matches[0]
            extra_slots.setdefault(stem, {})[tp] = col
            stem_of[col] = stem
            unmapped.append((col, stem, tp))
        else:
            extra_fixed[col] = col
            unmapped.append((col, col, None))

    _check_missing_code_keys(vmap, columns, set(stem_of.values()) | set(vmap.repeated), absent)
    if absent:
        raise _absent_error(source, vmap, absent, columns)

    # 2. Output names must be unique: an unmapped column may not land on a name the map already uses.
    taken: dict[str, str] = {}
    for name, spss in fixed.items():
        taken[name] = f"SPSS {spss}"
    for name in slots:
        taken[name] = f"SPSS {', '.join(slots[name].values())}"
    taken.setdefault("timepoint", "the reshape")
    taken.setdefault("source_row", "the reader")
    for name, spss in list(extra_fixed.items()) + [(s, ", ".join(v.values())) for s, v in extra_slots.items()]:
        if name in taken:
            raise CpevalError(
                f"{source}: unmapped column {spss} would be kept as {name!r}, which is already the name of "
                f"{taken[name]}; expected distinct names (name {spss} in {vmap.source})"
            )
        taken[name] = f"SPSS {spss}"

    # 3. Missing values, per SPSS column (user-missing codes are declared per SPSS variable, not per stem).
    id_spss = fixed["participant_id"]
    hits = _apply_missing(raw, vmap.missing_codes, stem_of, {id_spss}, log)

    # 4. One row per person: no missing or duplicated ids.
    pid_series = _tidy_id(raw.columns[id_spss])
    _check_ids(pid_series, id_spss, source)

    # 5. Reshape. Output row j is person j // n_tp at time point j % n_tp: people in file order, each person's
    #    time points in time order. Built column by column with numpy (take / stack), no loop over rows.
    person = np.repeat(np.arange(n), n_tp)
    out: dict[str, pd.Series] = {}
    out["participant_id"] = _take(pid_series, person)
    out["timepoint"] = pd.Series(np.tile(np.asarray(timepoints, dtype=object), n), dtype="str")
    info: dict[str, tuple[str, str | None]] = {id_spss: ("participant_id", None)}
    for name, spss in fixed.items():
        if name != "participant_id":
            out[name] = _take(raw.columns[spss], person)
            info[spss] = (name, None)
    all_slots = {**slots, **extra_slots}
    for name, by_tp in all_slots.items():
        out[name] = _interleave([raw.columns.get(by_tp.get(tp)) if tp in by_tp else None for tp in timepoints], n)
        for tp, spss in by_tp.items():
            info[spss] = (name, tp)
    for name, spss in extra_fixed.items():
        out[name] = _take(raw.columns[spss], person)
        info[spss] = (name, None)
    out["source_row"] = pd.Series(person + 1, dtype="int64")
    # mapped repeated and irregular variables before the unmapped ones, as the map lists them
    order = ["participant_id", "timepoint"] + [x for x in fixed if x != "participant_id"] + list(slots) \
        + list(extra_fixed) + list(extra_slots) + ["source_row"]
    data = pd.DataFrame({c: out[c] for c in order}, copy=False)
    log.append(f"reshaped wide to long: {n} rows x {n_tp} time points ({', '.join(timepoints)}) = {len(data)} rows")
    for spss, name, tp in unmapped:
        log.append(f"unmapped column kept: {spss} -> {name}" + (f" at {tp}" if tp else " (measured once)"))

    # 6. Labels by cpeval name: a repeated variable takes its earliest time point's labels.
    variable_labels, value_labels = _labels_by_name(raw, info, timepoints, log)

    qa_parts = _unmapped_parts(unmapped, source)
    qa_parts += _hit_parts(hits, source, info, pid_series.to_numpy(dtype=object), None)
    once = frozenset(fixed) | frozenset(extra_fixed)
    qa_parts += _values_as_text(data, vmap.value_labels_as_text, value_labels, source, vmap, log, person + 1,
                                once, n_tp)
    return _result(data, qa_parts, log, variable_labels, value_labels, timepoints, source)


def _check_ids(pid: pd.Series, spss: str, source: str) -> None:
    missing = np.flatnonzero(pid.isna().to_numpy())
    if len(missing):
        rows = ", ".join(str(r + 1) for r in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise CpevalError(f"{source}: participant_id (SPSS {spss}) is missing in row{'s' if len(missing) > 1 else ''} "
                          f"{rows}; expected every row of a wide file to identify its person")
    dup = pid.duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.flatnonzero(dup)
        groups = pd.Series(rows + 1).groupby(pid.to_numpy()[rows], sort=False).agg(list)
        shown = [f"{_code_text(k)!r} in rows {', '.join(map(str, v))}" for k, v in groups.head(10).items()]
        more = f"; and {len(groups) - 10} more" if len(groups) > 10 else ""
        raise CpevalError(f"{source}: participant_id (SPSS {spss}) is duplicated: {'; '.join(shown)}{more}; "
                          "expected one row per person in a wide file")


def _take(series: pd.Series, positions: np.ndarray) -> pd.Series:
    # take keeps the dtype (pandas' str, datetime, int) where a numpy round trip would lose it
    return series.take(positions).reset_index(drop=True)


def _interleave(pieces: list[pd.Series | None], n: int) -> pd.Series:
    """One long column from one wide column per time point (None: the variable is not measured then)."""
    present = [p for p in pieces if p is not None]
    dtypes = {p.dtype for p in present}
    if len(present) == len(pieces) and len(dtypes) == 1 and isinstance(present[0].dtype, np.dtype):
        # the common case (all numeric doubles from SPSS): one stack, one copy
        return pd.Series(np.stack([p.to_numpy() for p in present], axis=1).reshape(-1))
    # an absent time point is all-missing of the nearest dtype that can hold missing values
    # (reindexing an empty slice gives float for ints, NaN for str, NaT for datetimes)
    filler = present[0].iloc[:0].reset_index(drop=True).reindex(range(n))
    filled = [p.reset_index(drop=True) if p is not None else filler for p in pieces]
    stacked = pd.concat(filled, ignore_index=True)
    order = (np.arange(n)[:, None] + n * np.arange(len(pieces))[None, :]).reshape(-1)
    return stacked.take(order).reset_index(drop=True)


def _labels_by_name(raw: _Raw, info: Mapping[str, tuple[str, str | None]], timepoints: list[str],
                    log: list[str]) -> tuple[dict, dict]:
    tp_rank = {tp: i for i, tp in enumerate(timepoints)}
    ordered = sorted(info.items(), key=lambda kv: tp_rank.get(kv[1][1], -1))
    variable_labels: dict[str, str] = {}
    value_labels: dict[str, dict] = {}
    conflicts = []
    for spss, (name, _tp) in ordered:
        if spss in raw.variable_labels and name not in variable_labels:
            variable_labels[name] = raw.variable_labels[spss]
        for code, label in raw.value_labels.get(spss, {}).items():
            merged = value_labels.setdefault(name, {})
            if code not in merged:
                merged[code] = label
            elif merged[code] != label and name not in conflicts:
                conflicts.append(name)
    if conflicts:
        log.append("value labels differ between time points (the earliest time point's are kept): "
                   + ", ".join(conflicts))
    return variable_labels, value_labels


# -- long ------------------------------------------------------------------------------------------------------


def _finish_long(raw: _Raw, vmap: VariableMap, source: str, log: list[str]) -> ImportResult:
    columns = raw.columns
    absent = [spss for spss in vmap.fixed if spss not in columns]
    tcol = vmap.timepoint_column
    if tcol is not None and tcol not in columns:
        absent.append(tcol)
    _check_missing_code_keys(vmap, columns, set(), absent)
    if absent:
        raise _absent_error(source, vmap, absent, columns)

    renamed = {spss: vmap.fixed.get(spss, spss) for spss in columns if spss != tcol}
    unmapped = [(spss, spss, None) for spss in columns if spss not in vmap.fixed and spss != tcol]
    reserved = {"timepoint"} if (tcol or vmap.timepoint) else set()
    seen: dict[str, str] = {}
    for spss, name in renamed.items():
        if name in seen or name in reserved:
            clash = f"SPSS {seen[name]}" if name in seen else "the reader"
            raise CpevalError(f"{source}: column {spss} would be named {name!r}, which is already the name of "
                              f"{clash}; expected distinct names (rename it in {vmap.source})")
        seen[name] = spss

    # identifiers are not answers: the map's `all` codes do not apply to them
    skip = {s for s, name in vmap.fixed.items() if name in ("participant_id", "timepoint")}
    if tcol:
        skip.add(tcol)
    hits = _apply_missing(raw, vmap.missing_codes, {}, skip, log)

    out: dict[str, pd.Series] = {}
    info: dict[str, tuple[str, str | None]] = {}
    for spss, name in renamed.items():
        out[name] = raw.columns[spss]
        info[spss] = (name, None)
    if "participant_id" in out:
        out["participant_id"] = _tidy_id(out["participant_id"])

    qa_parts = _unmapped_parts(unmapped, source)
    timepoints: list[str] = []
    if tcol is not None:
        tseries, timepoints, tp_parts = _long_timepoints(raw.columns[tcol], tcol, vmap, raw, source, out)
        out["timepoint"] = tseries
        qa_parts += tp_parts
        info[tcol] = ("timepoint", None)
        log.append(f"time point from {tcol}: {', '.join(timepoints)}")
    elif vmap.timepoint is not None:
        out["timepoint"] = pd.Series([vmap.timepoint] * raw.n_rows, dtype="str")
        timepoints = [vmap.timepoint]
        log.append(f"every row is at time point {vmap.timepoint}")
    elif "timepoint" in out:
        timepoints = [str(t) for t in pd.unique(out["timepoint"].dropna())]
    out = {k: v.reset_index(drop=True) for k, v in out.items()}
    out["source_row"] = _source_row(out.get("source_row"), raw.n_rows, log)
    data = pd.DataFrame({c: out[c] for c in _front(out, ["participant_id", "timepoint"])}, copy=False)
    for spss, _name, _tp in unmapped:
        log.append(f"unmapped column kept: {spss}")
    if "participant_id" in data.columns and "timepoint" in data.columns:
        n_dup = int(data.duplicated(["participant_id", "timepoint"], keep=False).sum())
        if n_dup:
            log.append(f"warning: {n_dup} rows share their participant_id and timepoint with another row")

    variable_labels, value_labels = _labels_by_name(raw, info, [], log)
    pid = data["participant_id"].to_numpy(dtype=object) if "participant_id" in data.columns else None
    row_tp = data["timepoint"].to_numpy(dtype=object) if "timepoint" in data.columns else None
    qa_parts += _hit_parts(hits, source, info, pid, row_tp)
    qa_parts += _values_as_text(data, vmap.value_labels_as_text, value_labels, source, vmap, log,
                                np.arange(1, len(data) + 1))
    return _result(data, qa_parts, log, variable_labels, value_labels, timepoints, source)


def _long_timepoints(series: pd.Series, tcol: str, vmap: VariableMap, raw: _Raw, source: str,
                     out: Mapping[str, pd.Series]) -> tuple[pd.Series, list[str], list[dict]]:
    """Time point labels for a long file's time column; unknown codes are an error, blanks a QA record."""
    if vmap.timepoint_values:
        lookup = _label_lookup(vmap.timepoint_values)
        order = list(vmap.timepoint_values.values())
    else:
        # no codes in the map: the file's own value labels, else the codes themselves, in code order
        lookup = _label_lookup(raw.value_labels.get(tcol))
        order = None
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    labels = [_lookup_label(lookup, u) for u in uniques]
    if vmap.timepoint_values:
        unknown = [i for i, lab in enumerate(labels) if lab is None]
        if unknown:
            shown = []
            for i in unknown[:10]:
                rows = np.flatnonzero(codes == i)[:5] + 1
                shown.append(f"{_code_text(uniques[i])!r} (rows {', '.join(map(str, rows))}"
                             f"{' ...' if (codes == i).sum() > 5 else ''})")
            raise CpevalError(
                f"{source}: time point column {tcol} has codes that timepoint_values in {vmap.source} does not "
                f"list: {', '.join(shown)}; expected one of {', '.join(_code_text(c) for c in vmap.timepoint_values)}"
            )
    else:
        labels = [str(lab) if lab is not None else _code_text(u) for u, lab in zip(uniques, labels)]
        ranked = sorted(range(len(uniques)), key=lambda i: (_as_number(uniques[i]) is None,
                                                            _as_number(uniques[i]) or 0, str(uniques[i])))
        order = [labels[i] for i in ranked]
    texts = np.asarray(list(labels) + [np.nan], dtype=object)
    tseries = pd.Series(texts[codes], dtype="str")
    parts = []
    blank = np.flatnonzero(codes < 0)
    if len(blank):
        pid = out.get("participant_id")
        parts.append({
            "_n": len(blank),
            "source": source,
            "row": (blank + 1).astype(object),
            "participant_id": pid.to_numpy(dtype=object)[blank] if pid is not None else None,
            "timepoint": None,
            "variable": "timepoint",
            "value": None,
            "reason": "missing_timepoint",
            "expected": f"a time point code in {tcol}",
            "action": "row kept with a missing time point",
        })
    return tseries, order, parts


# --------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------

_SPSS_RESERVED = {"ALL", "AND", "BY", "EQ", "GE", "GT", "LE", "LT", "NE", "NOT", "OR", "TO", "WITH"}
_SPSS_NAME_CHARS = re.compile(r"[\w.@#$]*", re.UNICODE)


def _spss_name_problem(name: Any) -> str | None:
    """Why ``name`` is not a valid SPSS variable name, or None if it is (rules of SPSS 'Variable names')."""
    if not isinstance(name, str) or not name:
        return "not a non-empty text"
    if not (name[0].isalpha() or name[0] == "@"):
        return "does not start with a letter"
    if not _SPSS_NAME_CHARS.fullmatch(name):
        return "has characters other than letters, digits, _ . @ # $"
    if name.endswith(".") or name.endswith("_"):
        return "ends with '.' or '_'"
    if len(name.encode("utf-8")) > 64:
        return "is longer than 64 bytes"
    if name.upper() in _SPSS_RESERVED:
        return "is an SPSS reserved word"
    return None


def write_data(
    data: pd.DataFrame,
    path: str | PathLike,
    *,
    variable_labels: Mapping[str, str] | None = None,
    value_labels: Mapping[str, Mapping] | None = None,
) -> None:
    """Write a table to .csv or .sav (by suffix), so that an SPSS user can carry on from cpeval's output.

    Parameters
    ----------
    data : DataFrame
        Any table (the index is not written).
    path : str or path-like
        ``.csv`` (UTF-8, labels not written) or ``.sav``.
    variable_labels : dict of str to str, optional
        Column -> SPSS variable label (.sav only), e.g. ``ImportResult.variable_labels``.
    value_labels : dict of str to dict, optional
        Column -> {code: label} (.sav only), e.g. ``ImportResult.value_labels``. Numeric columns get the
        numeric codes' labels, text columns the text codes' labels; others are left out (SPSS value labels
        must have the variable's type).

    Raises
    ------
    CpevalError
        Unsupported suffix, a column name SPSS does not accept (all listed, with why), a folder that does not
        exist, or a failed write.

    Notes
    -----
    In .sav, numbers (including booleans and nullable integers) are written as SPSS numeric variables with
    missing values as system-missing; text, categorical and mixed columns as SPSS strings (missing as empty
    strings, which :func:`read_data` reads back as missing); datetimes as SPSS datetimes.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".sav"):
        raise CpevalError(f"{path}: unsupported file type {path.suffix or '(no suffix)'!r} for writing; "
                          "expected a .sav or .csv file")
    if not path.parent.is_dir():
        raise CpevalError(f"{path}: folder {path.parent} does not exist; expected an existing folder")
    if suffix == ".csv":
        try:
            data.to_csv(path, index=False, encoding="utf-8")
        except OSError as exc:
            raise CpevalError(f"{path}: cannot be written ({exc.strerror or exc})") from None
        return

    problems = [(name, _spss_name_problem(name)) for name in data.columns]
    bad = [f"{name!r} ({why})" for name, why in problems if why]
    folded: dict[str, str] = {}
    for name in data.columns:
        if isinstance(name, str):
            if name.upper() in folded:
                bad.append(f"{name!r} (same as {folded[name.upper()]!r} in SPSS, which ignores case)")
            folded.setdefault(name.upper(), name)
    if bad:
        raise CpevalError(f"{path}: {len(bad)} column name{'s are' if len(bad) > 1 else ' is'} not valid in SPSS: "
                          f"{', '.join(bad)}; expected names that start with a letter, use letters, digits, "
                          "_ . @ # $, do not end with '.' or '_', have at most 64 bytes and are not reserved words")

    frame = pd.DataFrame(index=range(len(data)))
    kinds: dict[str, str] = {}
    prepared = {}
    for name in data.columns:
        column = data[name].reset_index(drop=True)
        dtype = column.dtype
        if pd.api.types.is_bool_dtype(dtype) or (_is_numeric(column) and not isinstance(dtype, np.dtype)):
            # booleans and nullable Int64/Float64: SPSS has only doubles, with system-missing for NA
            prepared[name] = column.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
            kinds[name] = "number"
        elif _is_numeric(column):
            prepared[name] = column.to_numpy()
            kinds[name] = "number"
        elif pd.api.types.is_datetime64_any_dtype(dtype):
            prepared[name] = column.dt.tz_localize(None) if getattr(dtype, "tz", None) else column
            kinds[name] = "date"
        else:
            # text, categorical, mixed objects: SPSS strings; missing becomes '' (SPSS has no string NA)
            text = column.astype("str")
            prepared[name] = text.where(column.notna(), "").to_numpy(dtype=object)
            kinds[name] = "text"
    frame = pd.DataFrame(prepared, columns=list(data.columns))

    labels = {k: str(v) for k, v in (variable_labels or {}).items() if k in kinds and v is not None and v != ""}
    value_sets: dict[str, dict] = {}
    for name, codes in (value_labels or {}).items():
        if name not in kinds or not codes:
            continue
        if kinds[name] == "number":
            numeric = {}
            for code, label in codes.items():
                number = None if isinstance(code, str) else _as_number(code)
                if number is not None:
                    numeric[int(number) if number.is_integer() else number] = str(label)
            if numeric:
                value_sets[name] = numeric
        elif kinds[name] == "text":
            text_codes = {code: str(label) for code, label in codes.items() if isinstance(code, str)}
            if text_codes:
                value_sets[name] = text_codes
    try:
        pyreadstat.write_sav(frame, str(path), column_labels=labels or None, variable_value_labels=value_sets or None)
    except (*_SPSS_ERRORS, OSError, ValueError, TypeError) as exc:
        raise CpevalError(f"{path}: cannot be written as .sav ({type(exc).__name__}: {exc})") from None
