"""The main job, as plain functions: import -> score (-> report), so the CLI and notebooks share one path.

``run_scoring`` reads a file (through a variable map when given), scores the instruments whose items are present,
and returns everything a report or a summary needs, with one QA table covering import and scoring.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cpeval.errors import CpevalError
from cpeval.instruments import Instrument, ValueSet, labels_for, load_instruments, load_value_set_csv
from cpeval.io import ImportResult, load_variable_map, read_data, write_data
from cpeval.qa import concat_qa, empty_qa
from cpeval.scoring import SCALE_SUMMARY_COLUMNS, ScoringResult, score, select_instruments


@dataclass
class PipelineResult:
    imported: ImportResult
    scoring: ScoringResult
    instruments: list[Instrument]
    qa: pd.DataFrame  # import QA and scoring QA together
    notes: list[str] = field(default_factory=list)  # warnings for the terminal and the report's import log

    @property
    def data(self) -> pd.DataFrame:
        return self.scoring.data


def parse_value_set_options(specs: Iterable[str], registry: Mapping[str, Instrument]) -> dict[str, ValueSet]:
    """``--value-set ID=FILE.csv`` options -> {instrument id: value set}."""
    value_sets: dict[str, ValueSet] = {}
    for spec in specs:
        inst_id, sep, path = spec.partition("=")
        if not sep or not inst_id or not path:
            raise CpevalError(f"--value-set {spec!r}: expected INSTRUMENT=FILE.csv, e.g. eq5d5l=crosswalk.csv")
        if inst_id not in registry:
            raise CpevalError(f"--value-set {spec!r}: unknown instrument '{inst_id}'; expected one of "
                              f"{', '.join(registry)}")
        value_sets[inst_id] = load_value_set_csv(Path(path), registry[inst_id])
    return value_sets


def run_scoring(
    input_path: str | Path,
    *,
    map_path: str | Path | None = None,
    instruments_dir: str | Path | None = None,
    instrument_ids: Iterable[str] | None = None,
    value_set_specs: Iterable[str] = (),
    encoding: str | None = None,
    require_items: bool = True,
) -> PipelineResult:
    """Import a data file and score every instrument found in it (or the ones named).

    With ``require_items=False`` a file that holds scores but no items (already scored elsewhere) passes through
    unscored instead of being an error.
    """
    registry = load_instruments(instruments_dir)
    value_sets = parse_value_set_options(value_set_specs, registry)
    variable_map = load_variable_map(map_path) if map_path is not None else None
    imported = read_data(input_path, variable_map=variable_map, encoding=encoding)
    requested = list(instrument_ids or [])
    instruments = select_instruments(imported.data.columns, registry, requested or None)
    notes = []
    if not requested:
        # An instrument with no shipped value set (ICECAP-A) cannot be scored without the user's table. Named with
        # --instrument, that is an error (raised by the scorer); found among other instruments' items, it is left
        # out with a warning rather than blocking the rest of the scoring.
        for inst in [i for i in instruments if _needs_value_set(i) and i.id not in value_sets]:
            notes.append(f"{inst.id}: items present but not scored: its index needs a tariff table "
                         f"(--value-set {inst.id}=FILE.csv); none is shipped")
        instruments = [i for i in instruments if not _needs_value_set(i) or i.id in value_sets]
    if not instruments and not require_items:
        empty = pd.DataFrame(columns=SCALE_SUMMARY_COLUMNS)
        scoring = ScoringResult(data=imported.data, qa=empty_qa(), scales=empty, items={})
        notes.append("no instrument items found: the data's existing score columns are used as they are")
        return PipelineResult(imported=imported, scoring=scoring, instruments=[], qa=imported.qa, notes=notes)
    if not instruments:
        raise CpevalError(
            f"{imported.source}: no instrument items found; expected columns named <instrument>_<item> "
            f"(e.g. wemwbs_1, eq5d5l_mo) — pass --map MAP.yaml to rename SPSS variables"
        )
    scoring = score(imported.data, instruments, source=imported.source, value_sets=value_sets)
    return PipelineResult(imported=imported, scoring=scoring, instruments=instruments,
                          qa=concat_qa(imported.qa, scoring.qa), notes=notes)


def _needs_value_set(inst: Instrument) -> bool:
    return any(s.rule == "value_set" and s.value_set is None for s in inst.scales)


def write_scored(result: PipelineResult, path: str | Path) -> None:
    """Write the scored data (.csv or .sav) with variable and value labels from the file and the definitions."""
    variable_labels = dict(result.imported.variable_labels)
    value_labels = dict(result.imported.value_labels)
    inst_variable_labels, inst_value_labels = labels_for(result.instruments)
    variable_labels.update(inst_variable_labels)
    for column, labels in inst_value_labels.items():
        value_labels.setdefault(column, labels)
    data = result.data
    columns = set(data.columns)
    write_data(
        data,
        path,
        variable_labels={k: v for k, v in variable_labels.items() if k in columns},
        value_labels={k: v for k, v in value_labels.items() if k in columns},
    )


def write_qa(qa: pd.DataFrame, path: str | Path) -> None:
    """The QA list as CSV (one row per odd value; see cpeval.qa)."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise CpevalError(f"{path}: the QA list is written as CSV; expected a file name ending in .csv")
    qa.to_csv(path, index=False)


def summary_lines(result: PipelineResult) -> list[str]:
    """A short summary for the terminal: rows in/out, scores computed, values flagged by reason."""
    imported, scoring = result.imported, result.scoring
    lines = [f"read {imported.source}: {len(imported.data)} rows after import"
             + (f" ({len(imported.timepoints)} time points: {', '.join(imported.timepoints)})"
                if imported.timepoints else ""),
             f"rows out: {len(scoring.data)} (no row dropped)",
             f"instruments scored: {', '.join(i.id for i in result.instruments) or 'none'}"]
    for row in scoring.scales.itertuples():
        # "prorated" only where the rule prorates; a count or mean over answered items just had gaps
        gaps = "prorated" if row.rule in ("prorated_sum", "lookup", "bands") else "scored with missing items"
        extra = f", {row.n_prorated} {gaps}" if row.n_prorated else ""
        vs = f" [{row.value_set}]" if row.value_set else ""
        lines.append(f"  {row.column:<26} {row.n_scored:>7} of {row.n_rows} scored{extra}{vs}")
    lines += [f"warning: {note}" for note in result.notes]
    qa = result.qa
    if qa.empty:
        lines.append("values flagged: none")
    else:
        counts = qa["reason"].value_counts().sort_index()
        lines.append("values flagged: " + ", ".join(f"{reason} {n}" for reason, n in counts.items()))
        absent = qa.loc[qa["reason"] == "column_absent", "variable"].tolist()
        if absent:
            lines.append(f"warning: {len(absent)} item column(s) absent, treated as missing: "
                         + ", ".join(absent[:8]) + (" ..." if len(absent) > 8 else ""))
    return lines
