"""Benchmark: cpeval.io.read_data on a large wide .sav, against R haven::read_sav on the same file.

Run on demand (not part of the test suite)::

    python benchmarks/bench_read_sav.py                 # 200,000 rows x 120 item columns, best of 3
    python benchmarks/bench_read_sav.py --rows 20000    # quicker

It writes a realistic wide SPSS export to a temporary folder (an id, four fixed design variables and
``--items`` numeric item columns, half at baseline T1_ and half at follow-up T2_, each with value labels and
-9/-8 declared user-missing, ~4% of answers user-missing, ~1% system-missing; bytecode ("row") compressed as SPSS
saves by default), then times each reader in ``--repeat`` interleaved rounds (ours and R's one after the
other in each round, so that a busy machine slows them alike) and shows the best elapsed and CPU time of each:

- ``pyreadstat.read_sav(user_missing=True)``: the parse alone, the floor for our reader;
- ``cpeval.io.read_data(path)``: no map (user-missing codes -> NaN plus QA records);
- ``cpeval.io.read_data(path, variable_map=...)``: the same plus the wide-to-long reshape;
- if ``Rscript`` with haven is on the PATH, ``haven::read_sav`` timed inside R with ``system.time``:
  default ``user_na = FALSE`` (user-missing -> NA, the same job as ours) and ``user_na = TRUE``
  (codes kept, no conversion).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat

from cpeval.io import VariableMap, read_data

ITEM_LABELS = {1: "None of the time", 2: "Rarely", 3: "Some of the time", 4: "Often", 5: "All of the time",
               -9: "Not answered", -8: "Not applicable"}


def make_wide_sav(path: Path, rows: int, items: int, seed: int = 1, compress: bool = True) -> VariableMap:
    """Write the benchmark file and return the variable map that reshapes it."""
    rng = np.random.default_rng(seed)
    stems = [f"ITEM{i:03d}" for i in range(1, items // 2 + 1)]
    columns: dict[str, np.ndarray] = {
        "ID": np.arange(100001, 100001 + rows, dtype=float),
        "TEAM": rng.integers(1, 11, rows).astype(float),
        "ARM": rng.integers(1, 3, rows).astype(float),
        "SEX": rng.integers(1, 3, rows).astype(float),
        "AGE": rng.integers(18, 90, rows).astype(float),
    }
    for prefix in ("T1_", "T2_"):
        for stem in stems:
            values = rng.integers(1, 6, rows).astype(float)
            u = rng.random(rows)
            values[u < 0.03] = -9.0
            values[(u >= 0.03) & (u < 0.04)] = -8.0
            values[(u >= 0.04) & (u < 0.05)] = np.nan
            columns[prefix + stem] = values
    frame = pd.DataFrame(columns)
    item_columns = [c for c in frame.columns if c[:3] in ("T1_", "T2_")]
    pyreadstat.write_sav(
        frame,
        str(path),
        row_compress=compress,
        column_labels={c: f"Item {c}" for c in frame.columns},
        variable_value_labels={**{c: ITEM_LABELS for c in item_columns}, "ARM": {1: "Implementation", 2: "Control"},
                               "SEX": {1: "Male", 2: "Female"}},
        missing_ranges={c: [-9, -8] for c in item_columns},
    )
    return VariableMap.from_dict({
        "format": "wide",
        "timepoints": {"baseline": {"prefix": "T1_"}, "follow_up": {"prefix": "T2_"}},
        "fixed": {"ID": "participant_id", "TEAM": "team_id", "ARM": "arm", "SEX": "gender", "AGE": "age"},
        "repeated": {stem: stem.lower() for stem in stems},
        "value_labels_as_text": ["arm", "gender"],
    }, source="<benchmark map>")


def timed(func) -> tuple[float, float, object]:
    """Elapsed and CPU seconds of one call (CPU time is less disturbed by other work on a busy machine)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    result = func()
    return time.perf_counter() - start, time.process_time() - start_cpu, result


R_SCRIPT = r"""
suppressPackageStartupMessages(library(haven))
args <- commandArgs(trailingOnly = TRUE)
path <- args[[1]]
# one timed run of each (the Python side interleaves these runs with its own, so that both see the same
# machine load); elapsed and CPU (user + system) seconds, as the Python side reports them
timed <- function(expr_fun) {
  gc()
  t <- system.time(expr_fun())
  c(t[["elapsed"]], t[["user.self"]] + t[["sys.self"]])
}
t_default <- timed(function() read_sav(path))
t_user_na <- timed(function() read_sav(path, user_na = TRUE))
d <- read_sav(path)
cat(sprintf("haven_default %.3f\nhaven_default_cpu %.3f\nhaven_user_na %.3f\nhaven_user_na_cpu %.3f\n",
            t_default[1], t_default[2], t_user_na[1], t_user_na[2]))
cat(sprintf("haven_rows %d\nhaven_cols %d\nhaven_version %s\n", nrow(d), ncol(d),
            as.character(packageVersion("haven"))))
"""


def time_haven(path: Path) -> dict[str, str] | None:
    """One timed haven::read_sav run of each kind, in a fresh Rscript; None without R/haven."""
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as handle:
        handle.write(R_SCRIPT)
        script = handle.name
    try:
        done = subprocess.run([rscript, script, str(path)], capture_output=True, text=True, check=False)
    finally:
        Path(script).unlink(missing_ok=True)
    if done.returncode != 0:
        print(f"Rscript failed (haven installed?):\n{done.stderr.strip()}")
        return None
    return dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--items", type=int, default=120, help="item columns (half per time point)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; the best of each is shown")
    parser.add_argument("--uncompressed", action="store_true", help="write an uncompressed .sav")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench_wide.sav"
        start = time.perf_counter()
        vmap = make_wide_sav(path, args.rows, args.items, compress=not args.uncompressed)
        print(f"wrote {path.name}: {args.rows:,} rows x {args.items + 5} columns, "
              f"{path.stat().st_size / 1e6:.1f} MB, {'uncompressed' if args.uncompressed else 'bytecode-compressed'} "
              f"({time.perf_counter() - start:.1f} s)")

        # Rounds interleave every reader (ours and R's), so that a busy machine slows them alike; best of rounds.
        best: dict[str, list[float]] = {}
        info: dict[str, str] = {}
        have_r = shutil.which("Rscript") is not None

        def keep(key: str, elapsed: float, cpu: float) -> None:
            old = best.get(key, [float("inf"), float("inf")])
            best[key] = [min(old[0], elapsed), min(old[1], cpu)]

        for round_no in range(args.repeat):
            t, c, _ = timed(lambda: pyreadstat.read_sav(str(path), user_missing=True))
            keep("parse", t, c)
            t, c, plain = timed(lambda: read_data(path))
            keep("plain", t, c)
            info["plain"] = f"{len(plain.data):,} rows, {len(plain.qa):,} QA records"
            del plain
            t, c, mapped = timed(lambda: read_data(path, variable_map=vmap))
            keep("mapped", t, c)
            info["mapped"] = f"{len(mapped.data):,} rows x {mapped.data.shape[1]} columns, {len(mapped.qa):,} QA records"
            del mapped
            if have_r:
                haven = time_haven(path)
                if haven is None:
                    have_r = False
                else:
                    keep("haven", float(haven["haven_default"]), float(haven["haven_default_cpu"]))
                    keep("haven_user_na", float(haven["haven_user_na"]), float(haven["haven_user_na_cpu"]))
                    info["haven"] = (f"haven {haven['haven_version']}, {int(haven['haven_rows']):,} x "
                                     f"{haven['haven_cols']}")
            print(f"  round {round_no + 1}/{args.repeat} done", flush=True)

        print(f"{'':46s} {'elapsed':>8s} {'CPU':>8s}   (best of {args.repeat} interleaved rounds)")
        row = "{:46s} {:7.2f}s {:7.2f}s   {}"
        print(row.format("pyreadstat.read_sav(user_missing=True)", *best["parse"], "parse only: our floor"))
        print(row.format("cpeval read_data, no map", *best["plain"], info["plain"]))
        print(row.format("cpeval read_data, wide map -> long", *best["mapped"], info["mapped"]))
        if "haven" not in best:
            print("R haven: Rscript with haven not found, skipped")
            return
        print(row.format("haven::read_sav(user_na = FALSE)", *best["haven"],
                         f"{info['haven']}; user-missing -> NA (the same job)"))
        print(row.format("haven::read_sav(user_na = TRUE)", *best["haven_user_na"], "codes kept, no conversion"))
        for label, k in (("elapsed", 0), ("CPU", 1)):
            ratio = best["plain"][k] / best["haven"][k]
            print(f"cpeval read_data (no map) / haven read_sav, {label}: {ratio:.2f} "
                  f"({'not slower' if ratio <= 1 else 'slower'} than haven)")


if __name__ == "__main__":
    main()
