"""QA records: every odd value in the input, and what cpeval did with it.

A QA record is one row of a DataFrame with the columns in ``QA_COLUMNS``:

source          the file (or data set name) the value came from
row             1-based row number in that file (for a wide SPSS export: the person's row)
participant_id  the participant, when known
timepoint       the time point, when known
variable        the cpeval variable name (e.g. ``wemwbs_3``), or the SPSS name before mapping
value           the offending value, as text
reason          a short code: user_missing, missing_code, out_of_range, not_allowed, not_integer,
                not_numeric, column_absent, unmapped, ...
expected        what was expected, in words (e.g. "an integer from 1 to 5")
action          what cpeval did (e.g. "treated as missing")

Nothing is ever silently dropped: a value that is not used is listed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

QA_COLUMNS = [
    "source",
    "row",
    "participant_id",
    "timepoint",
    "variable",
    "value",
    "reason",
    "expected",
    "action",
]


def empty_qa() -> pd.DataFrame:
    """A QA table with no records and the fixed columns."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in QA_COLUMNS})


def qa_frame(records: Iterable[Mapping[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Build a QA table from records, filling absent columns with missing values."""
    frame = records if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    if frame.empty:
        return empty_qa()
    for column in QA_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[QA_COLUMNS].astype("object")
    frame["value"] = frame["value"].map(lambda v: None if v is None else str(v))
    return frame.reset_index(drop=True)


def concat_qa(*tables: pd.DataFrame) -> pd.DataFrame:
    """Concatenate QA tables, keeping the fixed column order."""
    tables = [t for t in tables if t is not None and not t.empty]
    if not tables:
        return empty_qa()
    return pd.concat([qa_frame(t) for t in tables], ignore_index=True)
