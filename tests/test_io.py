"""Tests for cpeval.io: reading .sav/.csv through a variable map, QA records, writing back, error messages."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpeval.errors import CpevalError
from cpeval.io import ImportResult, VariableMap, load_variable_map, read_data, write_data
from cpeval.qa import QA_COLUMNS

DATA = Path(__file__).parent / "data"

# -------------------------------------------------------------------------------------------------------------
# A wide SPSS export written here with pyreadstat: 4 people, baseline (T1_) and follow-up (T2_).
# -------------------------------------------------------------------------------------------------------------

WIDE = pd.DataFrame(
    {
        "ID": [101.0, 102.0, 103.0, 104.0],
        "ARM": [1.0, 2.0, 1.0, 2.0],
        "SEX": [1.0, 2.0, 2.0, 1.0],  # 2 has no value label
        "AGE": [34.0, 999.0, 51.0, 28.0],  # 999: the map's missing code for AGE
        "T1_WEMWBS1": [3.0, -9.0, 5.0, 2.0],  # -9: user-missing declared in the file
        "T2_WEMWBS1": [4.0, 4.0, -8.0, 1.0],  # -8: user-missing declared in the file
        "T1_WEMWBS2": [2.0, 3.0, 4.0, 5.0],
        "T2_WEMWBS2": [-7.0, 3.0, 3.0, np.nan],  # -7: the map's `all` code (not declared in the file)
        "FU_VAS": [70.0, 55.0, -9.0, 80.0],  # irregular name: follow-up only
        "NOTE": ["lives alone", "", "café", "n/a"],  # unmapped, no affix: kept as a fixed variable
        "T2_EXTRA": [1.0, 0.0, 1.0, 0.0],  # unmapped with an affix: kept as EXTRA at follow_up
    }
)
ITEM_LABELS = {1: "None of the time", 5: "All of the time", -9: "Not answered", -8: "Not applicable"}
WIDE_VALUE_LABELS = {
    "ARM": {1: "Implementation", 2: "Control"},
    "SEX": {1: "Male"},
    "T1_WEMWBS1": ITEM_LABELS,
    "T2_WEMWBS1": ITEM_LABELS,
    "T1_WEMWBS2": ITEM_LABELS,
    "T2_WEMWBS2": ITEM_LABELS,
}
WIDE_VARIABLE_LABELS = {
    "ID": "Participant",
    "ARM": "Trial arm",
    "T1_WEMWBS1": "Optimistic (baseline)",
    "T2_WEMWBS1": "Optimistic (follow-up)",
    "FU_VAS": "EQ VAS at follow-up",
    "NOTE": "Notes",
}
WIDE_MISSING = {c: [-9, -8] for c in ("T1_WEMWBS1", "T2_WEMWBS1", "T1_WEMWBS2", "T2_WEMWBS2")} | {"FU_VAS": [-9]}

WIDE_MAP = """\
format: wide
timepoints:
  baseline: {prefix: T1_}
  follow_up: {prefix: T2_}
fixed:
  ID: participant_id
  ARM: arm
  SEX: gender
  AGE: age
repeated:
  WEMWBS1: wemwbs_1
  WEMWBS2: wemwbs_2
variables:
  FU_VAS: {name: eq5d5l_vas, timepoint: follow_up}
value_labels_as_text: [arm, gender]
missing_codes:
  all: [-7]
  AGE: [999]
"""


def write_map(folder: Path, text: str, name: str = "map.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def wide_sav(tmp_path: Path) -> Path:
    path = tmp_path / "study.sav"
    pyreadstat.write_sav(
        WIDE,
        str(path),
        column_labels=WIDE_VARIABLE_LABELS,
        variable_value_labels=WIDE_VALUE_LABELS,
        missing_ranges=WIDE_MISSING,
    )
    return path


@pytest.fixture
def wide_result(wide_sav: Path, tmp_path: Path) -> ImportResult:
    return read_data(wide_sav, variable_map=load_variable_map(write_map(tmp_path, WIDE_MAP)))


def cell(result: ImportResult, pid: int, timepoint: str, column: str):
    data = result.data
    rows = data[(data["participant_id"] == pid) & (data["timepoint"] == timepoint)]
    assert len(rows) == 1
    return rows[column].iloc[0]


def isnan(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


# -- reshape ----------------------------------------------------------------------------------------------------


def test_wide_reshape_shape_and_column_order(wide_result: ImportResult):
    data = wide_result.data
    assert len(data) == len(WIDE) * 2  # rows out = rows in x time points
    assert list(data.columns) == [
        "participant_id", "timepoint", "arm", "gender", "age", "wemwbs_1", "wemwbs_2", "eq5d5l_vas",
        "NOTE", "EXTRA", "source_row",
    ]
    assert data["participant_id"].tolist() == [101, 101, 102, 102, 103, 103, 104, 104]
    assert data["participant_id"].dtype == np.int64  # SPSS doubles 101.0 become ids 101
    assert data["timepoint"].tolist() == ["baseline", "follow_up"] * 4
    assert data["source_row"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert wide_result.timepoints == ["baseline", "follow_up"]
    assert wide_result.source == "study.sav"


def test_wide_values_per_person_and_timepoint(wide_result: ImportResult):
    assert cell(wide_result, 101, "baseline", "wemwbs_1") == 3
    assert cell(wide_result, 101, "follow_up", "wemwbs_1") == 4
    assert cell(wide_result, 104, "baseline", "wemwbs_2") == 5
    assert isnan(cell(wide_result, 104, "follow_up", "wemwbs_2"))  # system-missing stays missing
    # fixed variables repeat on each of the person's rows
    assert cell(wide_result, 103, "baseline", "age") == 51
    assert cell(wide_result, 103, "follow_up", "age") == 51
    # an irregular name fills its time point only; the other is a row with a missing value
    assert cell(wide_result, 102, "follow_up", "eq5d5l_vas") == 55
    assert isnan(cell(wide_result, 102, "baseline", "eq5d5l_vas"))
    # unmapped affixed column under its stem, at its time point only
    assert wide_result.data["EXTRA"].tolist()[1::2] == [1, 0, 1, 0]
    assert wide_result.data["EXTRA"].iloc[0::2].isna().all()


def test_user_missing_codes_become_nan_with_qa_records(wide_result: ImportResult):
    assert isnan(cell(wide_result, 102, "baseline", "wemwbs_1"))  # -9
    assert isnan(cell(wide_result, 103, "follow_up", "wemwbs_1"))  # -8
    assert isnan(cell(wide_result, 103, "follow_up", "eq5d5l_vas"))  # -9
    qa = wide_result.qa
    assert list(qa.columns) == QA_COLUMNS
    user = qa[qa["reason"] == "user_missing"]
    assert user[["source", "row", "participant_id", "timepoint", "variable", "value"]].values.tolist() == [
        ["study.sav", 2, 102, "baseline", "wemwbs_1", "-9"],
        ["study.sav", 3, 103, "follow_up", "wemwbs_1", "-8"],
        ["study.sav", 3, 103, "follow_up", "eq5d5l_vas", "-9"],
    ]
    assert user["action"].tolist() == [
        "treated as missing: -9 (value label 'Not answered') is a user-missing code of T1_WEMWBS1 in the .sav",
        "treated as missing: -8 (value label 'Not applicable') is a user-missing code of T2_WEMWBS1 in the .sav",
        "treated as missing: -9 is a user-missing code of FU_VAS in the .sav",
    ]
    assert set(user["expected"]) == {"a valid answer, not an SPSS user-missing code"}


def test_missing_codes_from_the_map(wide_result: ImportResult):
    assert isnan(cell(wide_result, 102, "baseline", "age"))  # AGE: [999]
    assert isnan(cell(wide_result, 101, "follow_up", "wemwbs_2"))  # all: [-7]
    qa = wide_result.qa
    coded = qa[qa["reason"] == "missing_code"]
    assert coded[["row", "participant_id", "timepoint", "variable", "value", "action"]].values.tolist() == [
        [1, 101, "follow_up", "wemwbs_2", "-7", "treated as missing: -7 is a missing code for T2_WEMWBS2 in the variable map"],
        [2, 102, None, "age", "999", "treated as missing: 999 is a missing code for AGE in the variable map"],
    ]
    # the map's `all` codes do not touch the participant id, and nothing else was flagged
    assert len(qa[qa["reason"].isin(["user_missing", "missing_code"])]) == 5


def test_value_labels_as_text(wide_result: ImportResult):
    data = wide_result.data
    assert data["arm"].tolist() == ["Implementation"] * 2 + ["Control"] * 2 + ["Implementation"] * 2 + ["Control"] * 2
    assert pd.api.types.is_string_dtype(data["arm"].dtype)
    # a code without a label stays as its code text, with one QA record per file cell (not per long row)
    assert data["gender"].tolist()[::2] == ["Male", "2", "2", "Male"]
    unlabelled = wide_result.qa[wide_result.qa["reason"] == "no_value_label"]
    assert unlabelled[["row", "participant_id", "timepoint", "variable", "value", "expected", "action"]].values.tolist() == [
        [2, 102, None, "gender", "2", "a code with a value label (1 = Male)", "kept as the text '2'"],
        [3, 103, None, "gender", "2", "a code with a value label (1 = Male)", "kept as the text '2'"],
    ]
    # item columns not listed stay numeric
    assert pd.api.types.is_float_dtype(data["wemwbs_1"].dtype)


def test_unmapped_columns_kept_and_logged(wide_result: ImportResult):
    assert "unmapped column kept: NOTE -> NOTE (measured once)" in wide_result.log
    assert "unmapped column kept: T2_EXTRA -> EXTRA at follow_up" in wide_result.log
    unmapped = wide_result.qa[wide_result.qa["reason"] == "unmapped"]
    assert unmapped[["variable", "timepoint", "action"]].values.tolist() == [
        ["NOTE", None, "kept as 'NOTE' (measured once)"],
        ["T2_EXTRA", "follow_up", "kept as 'EXTRA' at follow_up"],
    ]
    # the empty string of an SPSS text variable is read as missing
    notes = wide_result.data["NOTE"].iloc[::2]
    assert notes.isna().tolist() == [False, True, False, False]
    assert notes.dropna().tolist() == ["lives alone", "café", "n/a"]
    assert "empty strings in text variables read as missing: 1" in wide_result.log


def test_log_lines(wide_result: ImportResult, wide_sav: Path):
    log = wide_result.log
    assert log[0] == f"read {wide_sav} (SPSS .sav, encoding UTF-8)"
    assert log[1] == "rows in: 4; columns in: 11"
    assert "reshaped wide to long: 4 rows x 2 time points (baseline, follow_up) = 8 rows" in log
    assert "SPSS user-missing codes set to missing: 3 values (declared for 5 variables)" in log
    assert "variable-map missing codes set to missing: 2 values" in log
    assert log[-1] == "rows out: 8; columns out: 11; QA records: 9"


def test_labels_by_cpeval_name(wide_result: ImportResult):
    assert wide_result.variable_labels == {
        "participant_id": "Participant",
        "arm": "Trial arm",
        "wemwbs_1": "Optimistic (baseline)",  # earliest time point's label
        "eq5d5l_vas": "EQ VAS at follow-up",
        "NOTE": "Notes",
    }
    assert wide_result.value_labels["arm"] == {1: "Implementation", 2: "Control"}
    assert wide_result.value_labels["wemwbs_2"] == ITEM_LABELS


def test_without_a_map_the_file_is_kept_as_it_is(wide_sav: Path):
    result = read_data(wide_sav)
    assert list(result.data.columns) == list(WIDE.columns) + ["source_row"]
    assert len(result.data) == 4
    assert result.data["source_row"].tolist() == [1, 2, 3, 4]
    assert result.timepoints == []
    # user-missing codes are still missing values with QA records, by SPSS name
    assert np.isnan(result.data.loc[1, "T1_WEMWBS1"])
    assert result.data.loc[0, "T2_WEMWBS2"] == -7  # not declared in the file, no map: kept
    qa = result.qa
    assert qa[["row", "variable", "value", "reason"]].values.tolist() == [
        [2, "T1_WEMWBS1", "-9", "user_missing"],
        [3, "T2_WEMWBS1", "-8", "user_missing"],
        [3, "FU_VAS", "-9", "user_missing"],
    ]
    assert result.value_labels["ARM"] == {1: "Implementation", 2: "Control"}


def test_suffixes_irregular_override_and_stem_missing_codes(tmp_path: Path):
    # suffix affixes; VAS is regular at baseline (VAS_A) but called FU_VAS at follow-up; missing_codes keyed by a
    # stem applies at every time point; in a text column a cell whose text is the code is a missing code too
    path = tmp_path / "suffix.csv"
    path.write_text("ID,W1_A,W1_B,VAS_A,FU_VAS,COMMENT\n1,2,99,50,60,-9\n2,99,3,70,80,fine\n", encoding="utf-8")
    vmap = write_map(tmp_path, """\
format: wide
timepoints:
  baseline: {suffix: _A}
  follow_up: {suffix: _B}
fixed: {ID: participant_id, COMMENT: comment}
repeated: {W1: wemwbs_1, VAS: eq5d5l_vas}
variables:
  FU_VAS: {name: eq5d5l_vas, timepoint: follow_up}
missing_codes: {W1: [99], all: [-9]}
""")
    result = read_data(path, variable_map=vmap)
    data = result.data
    assert data["eq5d5l_vas"].tolist() == [50, 60, 70, 80]
    assert data["wemwbs_1"].isna().tolist() == [False, True, True, False]
    assert data["comment"].isna().tolist() == [True, True, False, False]
    assert result.qa[["row", "timepoint", "variable", "value", "reason"]].values.tolist() == [
        [1, None, "comment", "-9", "missing_code"],
        [1, "follow_up", "wemwbs_1", "99", "missing_code"],
        [2, "baseline", "wemwbs_1", "99", "missing_code"],
    ]
    assert result.value_labels == {} and result.variable_labels == {}
    assert "value labels" not in " ".join(result.log)


def test_long_map_with_one_timepoint(tmp_path: Path):
    path = tmp_path / "workers.csv"
    path.write_text("WORKER,R1\n7,3\n8,-9\n", encoding="utf-8")
    vmap = write_map(tmp_path, "format: long\ntimepoint: follow_up\nfixed: {WORKER: worker_id, R1: rating_1}\n"
                               "missing_codes: {all: [-9]}\nvalue_labels_as_text: [worker_id]\n")
    result = read_data(path, variable_map=vmap)
    assert list(result.data.columns) == ["timepoint", "worker_id", "rating_1", "source_row"]
    assert result.data["timepoint"].tolist() == ["follow_up", "follow_up"]
    assert result.timepoints == ["follow_up"]
    assert result.qa[["row", "timepoint", "variable", "value"]].values.tolist() == [[2, "follow_up", "rating_1", "-9"]]
    assert "value_labels_as_text: worker_id has no value labels in the file; kept as is" in result.log


# -- long format ------------------------------------------------------------------------------------------------


def test_long_map_with_time_column(tmp_path: Path):
    csv = tmp_path / "long.csv"
    csv.write_text("PID,TIME,W1,W2\n007,1,3,4\n007,2,-9,5\n012,1,2,x\n", encoding="utf-8")
    vmap = write_map(tmp_path, """\
format: long
fixed: {PID: participant_id, W1: wemwbs_1}
timepoint_column: TIME
timepoint_values: {1: baseline, 2: follow_up}
missing_codes: {all: [-9]}
""")
    result = read_data(csv, variable_map=vmap)
    assert list(result.data.columns) == ["participant_id", "timepoint", "wemwbs_1", "W2", "source_row"]
    assert result.data["participant_id"].tolist() == ["007", "007", "012"]  # ids keep their zeros
    assert result.data["timepoint"].tolist() == ["baseline", "follow_up", "baseline"]
    assert result.timepoints == ["baseline", "follow_up"]
    assert result.data["wemwbs_1"].tolist()[::2] == [3, 2] and np.isnan(result.data["wemwbs_1"][1])
    assert result.qa[["row", "participant_id", "timepoint", "variable", "value", "reason"]].values.tolist() == [
        [None, None, None, "W2", None, "unmapped"],
        [2, "007", "follow_up", "wemwbs_1", "-9", "missing_code"],
    ]
    # stray text is kept, not coerced: the scoring engine reports it
    assert result.data["W2"].tolist() == ["4", "5", "x"]


def test_long_map_unknown_time_code(tmp_path: Path):
    csv = tmp_path / "long.csv"
    csv.write_text("PID,TIME\n1,1\n2,3\n3,3\n", encoding="utf-8")
    vmap = write_map(tmp_path, "format: long\nfixed: {PID: participant_id}\ntimepoint_column: TIME\n"
                               "timepoint_values: {1: baseline, 2: follow_up}\n")
    with pytest.raises(CpevalError) as error:
        read_data(csv, variable_map=vmap)
    assert str(error.value) == (
        f"long.csv: time point column TIME has codes that timepoint_values in {vmap} does not list: "
        "'3' (rows 2, 3); expected one of 1, 2"
    )


# -- CSV --------------------------------------------------------------------------------------------------------


def test_csv_types_are_kept(tmp_path: Path):
    path = tmp_path / "items.csv"
    path.write_text("ID,A,B,C\n1,1,2.5,x\n2,2,,3\n", encoding="utf-8")
    data = read_data(path).data
    assert pd.api.types.is_integer_dtype(data["A"].dtype)
    assert pd.api.types.is_float_dtype(data["B"].dtype)
    assert data["C"].tolist() == ["x", "3"]  # stray text: left as text, not lost


def test_csv_round_trip(tmp_path: Path):
    frame = pd.DataFrame({"participant_id": [1, 2, 3], "timepoint": ["baseline", "baseline", "follow_up"],
                          "score": [1.5, np.nan, 3.0], "arm": ["Implementation", "Control", None]})
    path = tmp_path / "out.csv"
    write_data(frame, path)
    back = read_data(path).data
    pd.testing.assert_frame_equal(back.drop(columns="source_row"), frame, check_dtype=False)
    assert back["source_row"].tolist() == [1, 2, 3]


def test_csv_encoding_error_tells_the_user_what_to_pass(tmp_path: Path):
    path = tmp_path / "legacy.csv"
    path.write_bytes("ID,NAME\n1,Zoë\n".encode("cp1252"))
    with pytest.raises(CpevalError) as error:
        read_data(path)
    assert str(error.value) == (
        f"{path}: the text could not be decoded as utf-8-sig (byte 0xeb: invalid continuation byte); retry "
        "passing the file's encoding with --encoding (encoding= in Python), e.g. --encoding cp1252 for older "
        "Windows exports or --encoding latin1"
    )
    assert read_data(path, encoding="cp1252").data["NAME"].tolist() == ["Zoë"]


# -- round trip through .sav --------------------------------------------------------------------------------------


def test_sav_round_trip_keeps_values_and_labels(wide_result: ImportResult, tmp_path: Path):
    out = tmp_path / "scored.sav"
    write_data(wide_result.data, out, variable_labels=wide_result.variable_labels,
               value_labels=wide_result.value_labels)
    back = read_data(out)
    pd.testing.assert_frame_equal(back.data, wide_result.data, check_dtype=False)
    assert back.data["participant_id"].dtype == np.int64
    assert back.variable_labels == wide_result.variable_labels
    # arm and gender are text now: their numeric labels are left out, the numeric columns keep theirs
    expected_values = {k: v for k, v in wide_result.value_labels.items() if k not in ("arm", "gender")}
    assert back.value_labels == expected_values
    assert back.qa.empty


def test_write_sav_types_and_labels(tmp_path: Path):
    frame = pd.DataFrame({
        "n": pd.array([1, None, 3], dtype="Int64"),
        "flag": [True, False, True],
        "arm": pd.Categorical(["a", "b", None]),
        "mixed": pd.Series([1, "x", None], dtype=object),
        "when": pd.to_datetime(["2024-01-02", None, "2024-03-04"]),
    })
    out = tmp_path / "types.sav"
    write_data(frame, out, variable_labels={"n": "Count", "unknown": "ignored"},
               value_labels={"n": {1: "one", "1": "not numeric"}, "arm": {"a": "Arm A", 1: "no"}})
    back, meta = pyreadstat.read_sav(str(out))
    assert back["n"].tolist()[0] == 1 and np.isnan(back["n"][1])
    assert back["flag"].tolist() == [1.0, 0.0, 1.0]
    assert back["arm"].tolist()[:2] == ["a", "b"]
    assert back["mixed"].tolist()[:2] == ["1", "x"]
    assert back["when"][0] == pd.Timestamp("2024-01-02")
    assert meta.column_names_to_labels["n"] == "Count"
    assert meta.variable_value_labels == {"n": {1: "one"}, "arm": {"a": "Arm A"}}


# -- R haven ------------------------------------------------------------------------------------------------------

HAVEN_MAP = """\
format: wide
timepoints:
  baseline: {prefix: T1_}
  follow_up: {prefix: T2_}
fixed: {ID: participant_id, ARM: arm}
repeated: {WEMWBS1: wemwbs_1}
variables:
  T1_AGE: {name: age, timepoint: baseline}
value_labels_as_text: [arm]
"""


def test_haven_fixture(tmp_path: Path):
    # tests/data/haven_wide.sav was written by R haven 2.5.1, not by cpeval: `Rscript tests/r/make_haven_fixture.R`.
    # The values below are the ones that script writes.
    result = read_data(DATA / "haven_wide.sav", variable_map=write_map(tmp_path, HAVEN_MAP))
    data = result.data
    assert list(data.columns) == ["participant_id", "timepoint", "arm", "wemwbs_1", "age", "NOTES", "source_row"]
    assert data["participant_id"].tolist() == [101, 101, 102, 102, 103, 103, 104, 104]
    assert data["arm"].tolist() == ["Implementation"] * 2 + ["Control"] * 2 + ["Implementation"] * 2 + ["3"] * 2
    np.testing.assert_array_equal(data["wemwbs_1"], [3, 4, np.nan, 4, 5, np.nan, 2, 1])  # -9, -8 user-missing
    np.testing.assert_array_equal(data["age"], [34, np.nan, 51, np.nan, np.nan, np.nan, 28, np.nan])  # -99 in range
    assert data["NOTES"].tolist()[::2][0] == "lives alone"
    assert data["NOTES"].tolist()[::2][2:] == ["café twice a week", "n/a"]  # UTF-8 text from R
    assert data["NOTES"].isna().tolist()[::2] == [False, True, False, False]  # "" is missing
    qa = result.qa
    assert qa[["row", "participant_id", "timepoint", "variable", "value", "reason"]].values.tolist() == [
        [None, None, None, "NOTES", None, "unmapped"],
        [2, 102, "baseline", "wemwbs_1", "-9", "user_missing"],
        [3, 103, "follow_up", "wemwbs_1", "-8", "user_missing"],
        [3, 103, "baseline", "age", "-99", "user_missing"],
        [4, 104, None, "arm", "3", "no_value_label"],
    ]
    assert "(value label 'Not answered')" in qa["action"][1]
    assert "(value label 'Not applicable')" in qa["action"][2]
    assert result.variable_labels == {
        "participant_id": "Participant ID",
        "arm": "Trial arm",
        "wemwbs_1": "Baseline: I've been feeling optimistic about the future",
        "age": "Age at baseline",
        "NOTES": "Practitioner notes",
    }
    assert result.value_labels["arm"] == {1: "Implementation", 2: "Control"}
    assert result.value_labels["wemwbs_1"][-9] == "Not answered"
    assert result.value_labels["wemwbs_1"][5] == "All of the time"


# -- errors ---------------------------------------------------------------------------------------------------------


def test_error_missing_file(tmp_path: Path):
    path = tmp_path / "nothere.sav"
    with pytest.raises(CpevalError) as error:
        read_data(path)
    assert str(error.value) == f"{path}: file not found; expected an existing .sav or .csv file"


def test_error_bad_suffix(tmp_path: Path):
    path = tmp_path / "study.xlsx"
    path.write_text("x")
    with pytest.raises(CpevalError) as error:
        read_data(path)
    assert str(error.value) == f"{path}: unsupported file type '.xlsx'; expected a .sav or .csv file"
    with pytest.raises(CpevalError) as error:
        write_data(WIDE, path)
    assert str(error.value) == f"{path}: unsupported file type '.xlsx' for writing; expected a .sav or .csv file"


def test_error_unreadable_sav(tmp_path: Path):
    path = tmp_path / "broken.sav"
    path.write_text("this is not an SPSS file\n")
    with pytest.raises(CpevalError) as error:
        read_data(path)
    assert str(error.value) == (
        f"{path}: cannot be read as an SPSS .sav file (pyreadstat: Unable to read from file); expected a .sav data file saved by SPSS, PSPP, R haven or pyreadstat"
    )


def test_error_sav_encoding(wide_sav: Path):
    with pytest.raises(CpevalError) as error:
        read_data(wide_sav, encoding="no-such-encoding")
    assert str(error.value).startswith(f"{wide_sav}: the text could not be decoded as no-such-encoding (pyreadstat: ")
    assert "retry passing the file's encoding with --encoding" in str(error.value)


def test_error_absent_spss_names_are_all_listed(wide_sav: Path, tmp_path: Path):
    text = WIDE_MAP.replace("AGE: age", "age: age\n  TEAM: team_id").replace("WEMWBS2: wemwbs_2", "WEMWBS3: wemwbs_3")
    text = text.replace("AGE: [999]", "AGE: [999]\n  GONE: [1]")
    vmap = write_map(tmp_path, text)
    with pytest.raises(CpevalError) as error:
        read_data(wide_sav, variable_map=vmap)
    assert str(error.value) == (
        f"study.sav: the variable map {vmap} names 5 SPSS variables that the file does not have: "
        "age (the file has 'AGE'), TEAM, T1_WEMWBS3, T2_WEMWBS3, GONE; expected each mapped name to be a column "
        "of the file (names are case-sensitive)"
    )


def test_error_duplicate_participant_id(tmp_path: Path):
    frame = WIDE.copy()
    frame["ID"] = [101.0, 102.0, 101.0, 102.0]
    path = tmp_path / "dup.sav"
    pyreadstat.write_sav(frame, str(path))
    with pytest.raises(CpevalError) as error:
        read_data(path, variable_map=write_map(tmp_path, WIDE_MAP))
    assert str(error.value) == (
        "dup.sav: participant_id (SPSS ID) is duplicated: '101' in rows 1, 3; '102' in rows 2, 4; "
        "expected one row per person in a wide file"
    )


def test_error_missing_participant_id(tmp_path: Path):
    frame = WIDE.copy()
    frame["ID"] = [101.0, np.nan, 103.0, 104.0]
    path = tmp_path / "noid.sav"
    pyreadstat.write_sav(frame, str(path))
    with pytest.raises(CpevalError) as error:
        read_data(path, variable_map=write_map(tmp_path, WIDE_MAP))
    assert str(error.value) == (
        "noid.sav: participant_id (SPSS ID) is missing in row 2; expected every row of a wide file to identify "
        "its person"
    )


def test_error_value_labels_as_text_names_a_missing_column(wide_sav: Path, tmp_path: Path):
    vmap = write_map(tmp_path, WIDE_MAP.replace("[arm, gender]", "[arm, sex]"))
    with pytest.raises(CpevalError) as error:
        read_data(wide_sav, variable_map=vmap)
    assert str(error.value) == (
        f"variable map {vmap}: value_labels_as_text names 'sex', which is not a column of the data read from "
        "study.sav; expected a cpeval name from fixed, repeated or variables, or an unmapped column"
    )


def test_error_unmapped_column_clashes_with_a_mapped_name(tmp_path: Path):
    frame = WIDE.copy()
    frame["T1_arm"] = 1.0  # would be kept as 'arm' at baseline, but 'arm' is ARM's cpeval name
    path = tmp_path / "clash.sav"
    pyreadstat.write_sav(frame, str(path))
    with pytest.raises(CpevalError) as error:
        read_data(path, variable_map=write_map(tmp_path, WIDE_MAP))
    assert str(error.value) == (
        f"clash.sav: unmapped column T1_arm would be kept as 'arm', which is already the name of SPSS ARM; "
        f"expected distinct names (name T1_arm in {tmp_path / 'map.yaml'})"
    )


MAP_ERRORS = [
    ("colums: {}\n", "unknown top-level key 'colums'; expected one of format, timepoints, fixed, repeated, "
     "variables, value_labels_as_text, missing_codes, timepoint_column, timepoint_values, timepoint"),
    ("format: wid\n", "key 'format' is 'wid'; expected 'wide' or 'long'"),
    ("timepoints:\n  baseline: {prefix: T1_}\n  follow_up: {}\n",
     "key 'timepoints.follow_up' is {}; expected a mapping with prefix and/or suffix, e.g. {prefix: T1_} or "
     "{suffix: _T1}"),
    ("timepoints:\n  baseline: {prefix: T1_}\n  follow_up: {prefix: ''}\n",
     "key 'timepoints.follow_up' is {'prefix': ''}; expected a non-empty prefix or suffix, e.g. {prefix: T1_} "
     "or {suffix: _T1}"),
    ("timepoints:\n  baseline: {prefix: T1_}\n  follow_up: {prefx: T2_}\n",
     "key 'timepoints.follow_up.prefx' is 'T2_'; expected only 'prefix' and/or 'suffix', e.g. {prefix: T1_} "
     "or {suffix: _T1}"),
    ("timepoints:\n  baseline: {prefix: T1_}\n  follow_up: {prefix: T1_}\n",
     "key 'timepoints.follow_up' is {'prefix': 'T1_'}; expected an affix different from time point 'baseline'"),
    ("fixed: [ID, ARM]\n",
     "key 'fixed' is ['ID', 'ARM']; expected a mapping of SPSS names to cpeval names, e.g. ID: participant_id"),
    ("fixed: {ID: participant_id, ARM: arm, AGE: arm}\n",
     "key 'fixed.AGE' is 'arm'; expected a cpeval name not already used (it is used by 'fixed.ARM')"),
    ("repeated: {WEMWBS1: age}\n",
     "key 'repeated.WEMWBS1' is 'age'; expected a cpeval name not already used (it is used by 'fixed.AGE')"),
    ("fixed: {ID: participant_id, TIME: timepoint}\n",
     "key 'fixed.TIME' is 'timepoint'; expected a cpeval name other than ['source_row', 'timepoint'] "
     "(the reader makes those)"),
    ("fixed: {ID: participant_id, ON: arm}\n",
     "key 'fixed.True' is True; expected an SPSS variable name (text) (quote names such as 'ON', 'NO', 'YES' in "
     "YAML; an empty value reads as null)"),
    ("fixed: {ARM: arm}\n",
     "key 'fixed' is {'ARM': 'arm'}; expected a fixed entry naming the participant_id column (e.g. ID: "
     "participant_id); a wide file needs it to link a person's time points"),
    ("variables:\n  FU_VAS: {name: eq5d5l_vas, timepoint: month_6}\n",
     "key 'variables.FU_VAS.timepoint' is 'month_6'; expected one of the time points ['baseline', 'follow_up']"),
    ("variables:\n  FU_VAS: {name: age, timepoint: follow_up}\n",
     "key 'variables.FU_VAS.name' is 'age'; expected a cpeval name not already used (it is used by 'fixed.AGE')"),
    ("variables:\n  T2_WEMWBS1: {name: wemwbs_9, timepoint: follow_up}\n",
     "key 'repeated.WEMWBS1' is 'WEMWBS1'; expected a stem whose follow_up name 'T2_WEMWBS1' is not already "
     "named by 'variables.T2_WEMWBS1'"),
    ("value_labels_as_text: arm\n",
     "key 'value_labels_as_text' is 'arm'; expected a list of cpeval names, e.g. [arm, gender]"),
    ("missing_codes: {AGE: 999}\n", "key 'missing_codes.AGE' is 999; expected a list of codes, e.g. [-9, -8]"),
    ("missing_codes: {all: [-9, [1]]}\n", "key 'missing_codes.all[1]' is [1]; expected a number or a text code"),
    ("timepoint_column: TIME\n",
     "key 'timepoint_column' is 'TIME'; expected no 'timepoint_column' in a wide map ('timepoint_column' is "
     "for long maps only)"),
]


@pytest.mark.parametrize(("override", "message"), MAP_ERRORS, ids=[m[:40] for _, m in MAP_ERRORS])
def test_error_variable_map(tmp_path: Path, override: str, message: str):
    # replace the top-level key(s) of the good map by the override, keep everything else
    base = yaml_without(WIDE_MAP, [line.split(":")[0] for line in override.splitlines() if line and line[0] != " "])
    path = write_map(tmp_path, base + override)
    with pytest.raises(CpevalError) as error:
        load_variable_map(path)
    assert str(error.value) == f"variable map {path}: {message}"


def yaml_without(text: str, keys: list[str]) -> str:
    """The map text without the blocks of the given top-level keys."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line[0] != " ":
            skipping = line.split(":")[0] in keys
        if not skipping:
            kept.append(line)
    return "".join(kept)


def test_error_variable_map_long_errors(tmp_path: Path):
    cases = [
        ("format: long\ntimepoints: {baseline: {prefix: T1_}}\n",
         "key 'timepoints' is {'baseline': {'prefix': 'T1_'}}; expected no 'timepoints' in a long map "
         "('timepoints' is for wide maps only)"),
        ("format: long\ntimepoint_values: {1: baseline}\n",
         "key 'timepoint_values' is {1: 'baseline'}; expected a timepoint_column to go with it"),
        ("format: long\ntimepoint_column: TIME\ntimepoint: baseline\n",
         "key 'timepoint' is 'baseline'; expected either timepoint_column (a time point per row) or timepoint "
         "(one for the whole file), not both"),
        ("format: long\ntimepoint_column: TIME\ntimepoint_values: {1: baseline, 2: baseline}\n",
         "key 'timepoint_values.2' is 'baseline'; expected each time point label once"),
    ]
    for text, message in cases:
        path = write_map(tmp_path, text)
        with pytest.raises(CpevalError) as error:
            load_variable_map(path)
        assert str(error.value) == f"variable map {path}: {message}"


def test_error_variable_map_file_problems(tmp_path: Path):
    missing = tmp_path / "none.yaml"
    with pytest.raises(CpevalError) as error:
        load_variable_map(missing)
    assert str(error.value) == f"variable map {missing}: file not found (expected a YAML variable map)"

    dup = write_map(tmp_path, "format: wide\nfixed:\n  ID: participant_id\n  ID: id2\n")
    with pytest.raises(CpevalError) as error:
        load_variable_map(dup)
    assert str(error.value) == (
        f"variable map {dup}: not valid YAML at line 4, column 3 (found duplicate key 'ID' (first at line 3)); "
        "expected a YAML mapping as in docs/variable-map.md"
    )

    bad = write_map(tmp_path, "format: wide\nfixed: {ID: participant_id\n")
    with pytest.raises(CpevalError) as error:
        load_variable_map(bad)
    assert str(error.value).startswith(f"variable map {bad}: not valid YAML at line 3, column 1 (")

    listing = write_map(tmp_path, "- format\n- wide\n")
    with pytest.raises(CpevalError) as error:
        load_variable_map(listing)
    assert str(error.value).startswith(f"variable map {listing}: the document is ['format', 'wide']; expected a mapping")


def test_error_write_sav_invalid_names(tmp_path: Path):
    frame = pd.DataFrame({"ok": [1], "1st": [2], "has space": [3], "AND": [4], "x" * 65: [5], "OK": [6]})
    path = tmp_path / "bad.sav"
    with pytest.raises(CpevalError) as error:
        write_data(frame, path)
    assert str(error.value) == (
        f"{path}: 5 column names are not valid in SPSS: '1st' (does not start with a letter), 'has space' "
        "(has characters other than letters, digits, _ . @ # $), 'AND' (is an SPSS reserved word), "
        f"'{'x' * 65}' (is longer than 64 bytes), 'OK' (same as 'ok' in SPSS, which ignores case); expected names "
        "that start with a letter, use letters, digits, _ . @ # $, do not end with '.' or '_', have at most 64 "
        "bytes and are not reserved words"
    )
    assert not path.exists()


def test_error_write_to_missing_folder(tmp_path: Path):
    path = tmp_path / "no" / "out.csv"
    with pytest.raises(CpevalError) as error:
        write_data(WIDE, path)
    assert str(error.value) == f"{path}: folder {path.parent} does not exist; expected an existing folder"


def test_variable_map_from_dict_matches_yaml(tmp_path: Path):
    import yaml

    from_yaml = load_variable_map(write_map(tmp_path, WIDE_MAP))
    from_dict = VariableMap.from_dict(yaml.safe_load(WIDE_MAP), source=str(tmp_path / "map.yaml"))
    assert from_yaml == from_dict
    assert from_yaml.participant_column == "ID"
    assert from_yaml.wide_slots()["eq5d5l_vas"] == {"follow_up": "FU_VAS"}


# -- property: nothing is lost ---------------------------------------------------------------------------------------

CODES = st.sampled_from([1.0, 2.0, 3.0, 4.0, 5.0, -9.0, -8.0, 2.5, np.nan])


@st.composite
def wide_data(draw):
    n = draw(st.integers(min_value=1, max_value=12))
    n_tp = draw(st.integers(min_value=1, max_value=3))
    n_items = draw(st.integers(min_value=1, max_value=3))
    columns = {"ID": np.arange(1, n + 1, dtype=float) * 10}
    for item in range(1, n_items + 1):
        for tp in range(1, n_tp + 1):
            columns[f"T{tp}_ITEM{item}"] = draw(st.lists(CODES, min_size=n, max_size=n))
    return pd.DataFrame(columns), n_tp, n_items


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wide_data())
def test_property_rows_and_values_are_kept(case):
    frame, n_tp, n_items = case
    tps = [f"t{k}" for k in range(1, n_tp + 1)]
    vmap = VariableMap.from_dict({
        "format": "wide",
        "timepoints": {tp: {"prefix": f"T{k}_"} for k, tp in enumerate(tps, start=1)},
        "fixed": {"ID": "participant_id"},
        "repeated": {f"ITEM{i}": f"item_{i}" for i in range(1, n_items + 1)},
        "missing_codes": {"all": [-8]},
    })
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "wide.sav"
        # -9 is declared user-missing in the file; -8 is a map code
        pyreadstat.write_sav(frame, str(path), missing_ranges={c: [-9] for c in frame.columns if c != "ID"})
        result = read_data(path, variable_map=vmap)
    data, qa = result.data, result.qa
    assert len(data) == len(frame) * n_tp
    assert data["source_row"].tolist() == list(np.repeat(np.arange(1, len(frame) + 1), n_tp))
    flagged = {(r, v, t, val) for r, v, t, val in qa[["row", "variable", "timepoint", "value"]].itertuples(index=False)}
    for k, tp in enumerate(tps, start=1):
        at_tp = data[data["timepoint"] == tp].reset_index(drop=True)
        for i in range(1, n_items + 1):
            column = frame[f"T{k}_ITEM{i}"]
            for row, value in enumerate(column):
                if np.isnan(value):
                    assert np.isnan(at_tp.loc[row, f"item_{i}"])
                    continue
                out = at_tp.loc[row, f"item_{i}"]
                text = str(int(value)) if value.is_integer() else str(value)
                # every non-missing input value is in the output or in the QA table, never both, never lost
                assert (out == value) != ((row + 1, f"item_{i}", tp, text) in flagged)
                assert (value in (-9.0, -8.0)) == np.isnan(out)
    assert set(qa["reason"]) <= {"user_missing", "missing_code"}


def test_other_id_columns_become_whole_numbers_when_all_are(tmp_path):
    path = tmp_path / "ids.csv"
    path.write_text("participant_id,worker_id,team_id,score_id\n1,111.0,7,1.5\n2,112.0,8,2.0\n")
    data = read_data(path).data
    assert data["worker_id"].dtype == "int64" and list(data["worker_id"]) == [111, 112]
    assert list(data["score_id"]) == [1.5, 2.0]  # a fraction: left as it is


def test_big_sav_parsed_in_two_processes_reads_the_same(tmp_path, monkeypatch):
    import cpeval.io as io_module

    rng = np.random.default_rng(9)
    n = 3000
    frame = pd.DataFrame({"ID": np.arange(1, n + 1, dtype=float),
                          **{f"T1_Q{i}": rng.integers(1, 6, n).astype(float) for i in range(1, 9)}})
    frame.loc[rng.choice(n, 40, replace=False), "T1_Q3"] = -9.0
    path = tmp_path / "big.sav"
    pyreadstat.write_sav(frame, str(path), missing_ranges={f"T1_Q{i}": [-9] for i in range(1, 9)},
                         variable_value_labels={"T1_Q1": {1.0: "low", 5.0: "high"}})
    single = read_data(path)
    monkeypatch.setattr(io_module, "PARALLEL_SAV_BYTES", 1)
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the two-process reader is not used")
    double = read_data(path)
    pd.testing.assert_frame_equal(single.data, double.data)
    pd.testing.assert_frame_equal(single.qa, double.qa)
    assert len(double.qa) == 40 and double.value_labels == single.value_labels
