"""Instrument definitions: the shipped files, and every way a definition can be wrong."""

from __future__ import annotations

import copy

import pytest
import yaml

from cpeval.errors import CpevalError
from cpeval.instruments import labels_for, load_instrument, load_instruments, load_value_set_csv

REG = load_instruments()

MINIMAL = {
    "id": "mini",
    "name": "Mini scale",
    "source": "made up for tests",
    "response": {"min": 1, "max": 4, "labels": {1: "never", 4: "always"}},
    "missing_codes": [-9],
    "items": [{"id": "a", "label": "first"}, {"id": "b", "label": "second"}, {"id": "c", "label": "third"}],
    "scales": [{"id": "total", "label": "Total", "rule": "prorated_sum", "items": "all", "max_missing": 1,
                "range": [3, 12], "verified": True}],
}


def write(tmp_path, definition, name="mini.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(definition, sort_keys=False))
    return path


def changed(**edits):
    d = copy.deepcopy(MINIMAL)
    for dotted, value in edits.items():
        target, keys = d, dotted.split("__")
        for k in keys[:-1]:
            target = target[int(k)] if k.isdigit() else target[k]
        last = keys[-1]
        if value is KeyError:
            del target[last]
        elif last.isdigit():
            target[int(last)] = value
        else:
            target[last] = value
    return d


def test_shipped_instruments_load_with_expected_structure():
    assert list(REG) == ["cpifs_su", "cpifs_w", "eq5d3l", "eq5d5l", "icecap_a", "rguk", "scope", "swemwbs", "wemwbs"]
    w = REG["wemwbs"]
    assert [i.column for i in w.items] == [f"wemwbs_{i}" for i in range(1, 15)]
    assert {(i.response.min, i.response.max) for i in w.items} == {(1, 5)}
    assert [i.source_column for i in REG["swemwbs"].items] == [f"wemwbs_{i}" for i in (1, 2, 3, 6, 7, 9, 11)]
    assert len(REG["rguk"].items) == 27
    assert [s.id for s in REG["rguk"].scales] == ["total", "domestic", "expert", "skills", "problem"]
    for cpifs in ("cpifs_w", "cpifs_su"):
        domains = [s for s in REG[cpifs].scales if s.id in ("com", "ass", "pla", "par", "rel")]
        assert len(domains) == 5 and all(3 <= len(s.items) <= 4 for s in domains)
        assert {i.response.max for i in REG[cpifs].items} == {9}
    assert len([i for i in REG["cpifs_w"].items if i.role == "practice_example"]) == 5
    # unverified parts are declared, so `instruments show` can print them
    assert any("subscale" in f for f in REG["rguk"].unverified)
    assert any("prorating" in f for f in REG["wemwbs"].unverified)
    assert REG["eq5d5l"].scale("index").verified


def test_minimal_definition_loads(tmp_path):
    inst = load_instrument(write(tmp_path, MINIMAL))
    assert inst.id == "mini" and inst.scales[0].column == "mini_total" and inst.scales[0].max_missing == 1


@pytest.mark.parametrize("edits, message", [
    ({"colour": "red"}, "unknown key 'colour'; expected one of id, items, missing_codes, name, response, scales, "
                        "source, value_sets, verification, version"),
    ({"id": KeyError}, "key 'id' is missing; expected a non-empty text"),
    ({"id": "Mini-Scale"}, "key 'id' is 'Mini-Scale'; expected a lower-case identifier (letters, digits, _), used as "
                           "the column prefix"),
    ({"items": []}, "key 'items' is []; expected a non-empty list of items"),
    ({"items__1__id": "a"}, "key 'items[1].id' is 'a'; expected an item id not used before in this file"),
    ({"items__0__size": 3}, "unknown key 'items[0].size'; expected one of from, id, label, response, reverse, role"),
    ({"response__max": 0}, "key 'response.max' is 0; expected a whole number greater than min (1)"),
    ({"response__min": "one"}, "key 'response.min' is 'one'; expected a number"),
    ({"scales__0__rule": "median"}, "key 'scales[0].rule' is 'median'; expected one of sum, mean, prorated_sum, "
                                    "count, lookup, value_set, bands"),
    ({"scales__0__items": ["a", "z"]}, "key 'scales[0].items' is ['z']; expected 'all' or a list of item ids of "
                                       "this instrument: a, b, c"),
    ({"scales__0__max_missing": 3}, "key 'scales[0].max_missing' is 3; expected a whole number from 0 to 2"),
    ({"scales__0__max_missing": "one"}, "key 'scales[0].max_missing' is 'one'; expected a whole number from 0 to 2"),
    ({"scales__0__range": [12, 3]}, "key 'scales[0].range' is [12, 3]; expected [lowest, highest]"),
    ({"scales__0__verified": "yes"}, "key 'scales[0].verified' is 'yes'; expected true or false"),
    ({"missing_codes": [-9, "x"]}, "key 'missing_codes[1]' is 'x'; expected a number"),
    ({"response__labels": {-9: "refused"}}, "key 'items[0].response.labels' is [-9.0]; expected labels for answers "
                                            "only (these codes are declared missing_codes)"),
])
def test_bad_definition_names_file_key_value_and_expectation(tmp_path, edits, message):
    path = write(tmp_path, changed(**edits))
    with pytest.raises(CpevalError) as err:
        load_instrument(path)
    assert str(err.value) == f"{path}: {message}"


def test_bad_scale_references_and_tables(tmp_path):
    d = copy.deepcopy(MINIMAL)
    d["scales"].append({"id": "conv", "label": "converted", "rule": "lookup", "of": "totl", "table": {3: 0}})
    path = write(tmp_path, d)
    with pytest.raises(CpevalError, match=r"key 'scales\[1\]\.of' is 'totl'; expected the id of a numeric scale "
                                          r"defined earlier in this file: total"):
        load_instrument(path)
    d["scales"][1]["of"] = "total"
    path = write(tmp_path, d)
    with pytest.raises(CpevalError, match=r"key 'scales\[1\]\.table' is \[4, 5, 6, 7, 8, 9, 10, 11, 12\]; expected "
                                          r"an entry for every whole score of mini_total"):
        load_instrument(path)
    d["scales"][1] = {"id": "band", "label": "band", "rule": "bands", "of": "total",
                      "bands": [{"label": "low", "max": 6}, {"label": "mid", "max": 5}, {"label": "high"}]}
    path = write(tmp_path, d)
    with pytest.raises(CpevalError, match=r"key 'scales\[1\]\.bands\[1\]\.max' is 5; expected a limit above the "
                                          r"previous band's \(6\)"):
        load_instrument(path)


def test_value_set_must_cover_each_dimension_and_level(tmp_path):
    d = copy.deepcopy(MINIMAL)
    d["scales"] = [{"id": "index", "label": "Index", "rule": "value_set", "items": ["a", "b", "c"], "value_set": "vs"}]
    d["value_sets"] = {"vs": {"name": "test set", "intercept": 1,
                              "decrements": {"a": [0, 0.1, 0.2, 0.3], "b": [0, 0.1, 0.2, 0.3], "c": [0, 0.1]}}}
    path = write(tmp_path, d)
    with pytest.raises(CpevalError) as err:
        load_instrument(path)
    assert str(err.value) == (f"{path}: key 'value_sets.vs.decrements.c' is [0, 0.1]; expected 4 values, one per "
                              "level (level 1 first)")


def test_invalid_yaml_and_duplicate_ids_in_a_folder(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: [unclosed\n")
    with pytest.raises(CpevalError, match=f"{bad}: not valid YAML"):
        load_instrument(bad)
    folder = tmp_path / "defs"
    folder.mkdir()
    write(folder, MINIMAL, "one.yaml")
    write(folder, MINIMAL, "two.yaml")
    with pytest.raises(CpevalError, match=f"{folder / 'two.yaml'}: instrument id 'mini' is also defined in "
                                          f"{folder / 'one.yaml'}"):
        load_instruments(folder)
    with pytest.raises(CpevalError, match="nowhere: instruments folder not found"):
        load_instruments(tmp_path / "nowhere")


def test_study_definition_overrides_shipped_one_of_same_id(tmp_path):
    d = copy.deepcopy(MINIMAL)
    d["id"] = "wemwbs"
    write(tmp_path, d, "my_wemwbs.yaml")
    registry = load_instruments(tmp_path)
    assert len(registry["wemwbs"].items) == 3
    assert registry["wemwbs"].path == str(tmp_path / "my_wemwbs.yaml")
    assert len(registry["eq5d5l"].items) == 6  # others still shipped


@pytest.mark.parametrize("content, message", [
    ("state,value\n1111,1\n", "row 2, column 'state' is '1111'; expected 5 digits, each 1-5"),
    ("state,value\n11111,1\n11111,0.9\n", "row 3, state 11111 appears twice; expected each state once"),
    ("state,value\n11111,high\n", "row 2, column 'value' is 'high'; expected a number"),
    ("dimension,level,value\nmo,1,0\n", "no value for mo level 2, mo level 3, mo level 4, mo level 5, sc level 1 ...; "
                                        "expected one row per dimension and level"),
    ("dimension,level,value\nxx,1,0\n", "row 2, column 'dimension' is 'xx'; expected one of mo, sc, ua, pd, ad or "
                                        "intercept"),
    ("health,utility\n11111,1\n", "columns are health, utility; expected state,value or dimension,level,value"),
])
def test_value_set_csv_errors(tmp_path, content, message):
    path = tmp_path / "vs.csv"
    path.write_text(content)
    with pytest.raises(CpevalError) as err:
        load_value_set_csv(path, REG["eq5d5l"])
    assert str(err.value) == f"{path}: {message}"


def test_labels_for_spss_output():
    variable_labels, value_labels = labels_for([REG["wemwbs"]])
    assert variable_labels["wemwbs_1"] == "Warwick-Edinburgh Mental Wellbeing Scale 1: optimistic"
    assert variable_labels["wemwbs_total"] == "WEMWBS total (14-70)"
    assert value_labels["wemwbs_3"][1] == "None of the time"
