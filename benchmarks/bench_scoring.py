"""Scoring speed: 1,000,000 respondents on WEMWBS + SWEMWBS + EQ-5D-5L, validation included.

Run on demand:  python benchmarks/bench_scoring.py [N]
Goal (issue 2): under 0.25 s on the 2-core machine. For scale, the script also times a bare NumPy row sum of the
14 WEMWBS items and the pandas equivalent. Not part of the test suite: timings are never asserted in tests.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pandas as pd

from cpeval.instruments import load_instruments
from cpeval.scoring import score


def make_data(n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cols = {f"wemwbs_{i}": rng.integers(1, 6, n).astype(float) for i in range(1, 15)}
    cols.update({f"eq5d5l_{d}": rng.integers(1, 6, n).astype(float) for d in ("mo", "sc", "ua", "pd", "ad")})
    cols["eq5d5l_vas"] = rng.integers(0, 101, n).astype(float)
    df = pd.DataFrame(cols)
    # realistic dirt: 1% missing items, a few out-of-range values and missing codes
    for c in list(cols)[:6]:
        df.loc[rng.choice(n, n // 100, replace=False), c] = np.nan
    df.loc[rng.choice(n, 50, replace=False), "wemwbs_4"] = 7
    df.loc[rng.choice(n, 50, replace=False), "eq5d5l_mo"] = -9
    return df


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    registry = load_instruments()
    instruments = [registry["wemwbs"], registry["swemwbs"], registry["eq5d5l"]]
    df = make_data(n)
    items = df[[f"wemwbs_{i}" for i in range(1, 15)]]
    arr = items.to_numpy()
    t_numpy = best_of(lambda: arr.sum(axis=1))
    t_pandas = best_of(lambda: items.sum(axis=1))
    t_score = best_of(lambda: score(df, instruments, source="bench"))
    result = score(df, instruments, source="bench")
    print(f"rows: {n:,}")
    print(f"numpy row-sum of 14 WEMWBS items : {t_numpy * 1000:8.1f} ms")
    print(f"pandas row-sum of 14 WEMWBS items: {t_pandas * 1000:8.1f} ms")
    print(f"cpeval score WEMWBS+SWEMWBS+EQ-5D-5L (validation, QA, {len(result.qa)} QA records): "
          f"{t_score * 1000:8.1f} ms  (goal < 250 ms at 1,000,000 rows)")
    print(f"cpeval / numpy row-sum: {t_score / t_numpy:.1f}x (the issue's reference machine: numpy ~5 ms, goal 250 ms)")


if __name__ == "__main__":
    main()
