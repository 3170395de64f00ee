"""Analysis plans (analysis/*.yaml): the study design, validated on load.

Issue 2 needs only the design part of a plan (which columns hold the participant, team, trust, arm and time
point, and which values mean treatment/control and baseline/follow-up); later analyses add their own keys
(outcomes, covariates, costs, fidelity). Unknown top-level keys are allowed only from that list, so a typo is an
error rather than a silently ignored setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cpeval.errors import CpevalError

# Keys that later analyses read; accepted (and kept in Plan.extra) so one plan file serves every command.
_LATER_KEYS = {"costs", "report"}
_DESIGN_KEYS = {"study", "participant", "cluster", "site", "arm", "timepoint"}
_ANALYSIS_KEYS = {"outcomes", "covariates", "missing_data", "fidelity"}
_FIDELITY_KEYS = {"bands", "bands_note", "outcomes", "measured_in_control", "arm"}
_MISSING_DATA_KEYS = {"imputations", "seed", "enabled"}


@dataclass(frozen=True)
class Design:
    """Which columns describe the study design, and which values mean what."""

    study: str = "Study"
    participant: str = "participant_id"
    cluster: str = "team_id"
    site: str | None = "trust_id"
    arm: str = "arm"
    treatment: str = "implementation"
    control: str = "control"
    timepoint: str = "timepoint"
    baseline: str = "baseline"
    follow_up: str = "follow_up"

    @property
    def arms(self) -> list[str]:
        """Arm values in display order: treatment first, then control."""
        return [self.treatment, self.control]

    @property
    def timepoints(self) -> list[str]:
        """Time point values in time order."""
        return [self.baseline, self.follow_up]


@dataclass(frozen=True)
class MissingData:
    """The multiple-imputation sensitivity analysis for missing follow-up (see cpeval.outcomes)."""

    enabled: bool = True
    imputations: int = 20
    seed: int = 2024


@dataclass(frozen=True)
class FidelitySettings:
    """The fidelity analysis (see cpeval.fidelity). Bands are the plan's own assumption: no CPIFS cut-off has been
    published, so there are none unless the plan states them (validated by cpeval.fidelity.parse_bands)."""

    bands: tuple[dict, ...] | None = None
    bands_note: str = ""
    outcomes: tuple[str, ...] = ()  # default: the plan's outcomes
    measured_in_control: bool = False  # if true, arms are compared on fidelity too
    arm: str | None = None  # the arm whose fidelity-outcome link is modelled; default the treatment arm


@dataclass(frozen=True)
class Plan:
    design: Design
    source: str = "(default plan)"
    primary: str | None = None  # the primary outcome's score column
    secondary: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    missing_data: MissingData = field(default_factory=MissingData)
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outcomes(self) -> list[str]:
        """Primary first, then the secondary outcomes."""
        return ([self.primary] if self.primary else []) + list(self.secondary)


def default_plan(study: str = "Study") -> Plan:
    """The plan used when none is given: cpeval's standard column names."""
    return Plan(design=Design(study=study))


def _expect(cond: bool, path: str, key: str, value: Any, expected: str) -> None:
    if not cond:
        raise CpevalError(f"{path}: key '{key}' is {value!r}; expected {expected}")


def _pair(raw: dict, path: str, key: str, names: tuple[str, str, str]) -> dict:
    value = raw[key]
    _expect(isinstance(value, dict), path, key, value, f"a mapping with keys {', '.join(names)}")
    unknown = set(value) - set(names)
    _expect(not unknown, path, f"{key}.{sorted(unknown)[0] if unknown else ''}", None, f"only {', '.join(names)}")
    for name in names:
        _expect(name in value, path, f"{key}.{name}", None, "a value (it is required)")
        _expect(isinstance(value[name], (str, int)) and str(value[name]).strip() != "", path, f"{key}.{name}",
                value[name], "a non-empty name")
    _expect(str(value[names[1]]) != str(value[names[2]]), path, key, value,
            f"two different values for {names[1]} and {names[2]}")
    return {n: str(value[n]) for n in names}


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan YAML file; a bad plan raises CpevalError naming the file, key and value."""
    path = Path(path)
    name = str(path)
    if not path.is_file():
        raise CpevalError(f"{name}: plan file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CpevalError(f"{name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    _expect(isinstance(raw, dict), name, "(top level)", type(raw).__name__, "a mapping of plan keys")
    allowed = _DESIGN_KEYS | _ANALYSIS_KEYS | _LATER_KEYS
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CpevalError(f"{name}: unknown key '{unknown[0]}'; expected one of {', '.join(sorted(allowed))}")
    kwargs: dict[str, Any] = {}
    for key in ("study", "participant", "cluster"):
        if key in raw:
            _expect(isinstance(raw[key], str) and raw[key].strip() != "", name, key, raw[key], "a non-empty text")
            kwargs[key] = raw[key]
    if "site" in raw:
        _expect(raw["site"] is None or (isinstance(raw["site"], str) and raw["site"].strip()), name, "site",
                raw["site"], "a column name or null")
        kwargs["site"] = raw["site"]
    if "arm" in raw:
        arm = _pair(raw, name, "arm", ("column", "treatment", "control"))
        kwargs.update(arm=arm["column"], treatment=arm["treatment"], control=arm["control"])
    if "timepoint" in raw:
        tp = _pair(raw, name, "timepoint", ("column", "baseline", "follow_up"))
        kwargs.update(timepoint=tp["column"], baseline=tp["baseline"], follow_up=tp["follow_up"])
    analysis = _analysis_keys(raw, name)
    extra = {k: v for k, v in raw.items() if k in _LATER_KEYS}
    return Plan(design=Design(**kwargs), source=name, extra=extra, **analysis)


def _names(value: Any, path: str, key: str) -> tuple[str, ...]:
    _expect(isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value), path, key, value,
            "a list of column names")
    _expect(len(set(value)) == len(value), path, key, value, "each name once")
    return tuple(value)


def _analysis_keys(raw: dict, name: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "outcomes" in raw:
        outcomes = raw["outcomes"]
        _expect(isinstance(outcomes, dict) and "primary" in outcomes, name, "outcomes", outcomes,
                "a mapping with primary (one score column) and optionally secondary (a list)")
        unknown = sorted(set(outcomes) - {"primary", "secondary"})
        _expect(not unknown, name, f"outcomes.{unknown[0] if unknown else ''}", None, "only primary and secondary")
        _expect(isinstance(outcomes["primary"], str) and outcomes["primary"].strip(), name, "outcomes.primary",
                outcomes["primary"], "one score column name, e.g. rguk_total")
        out["primary"] = outcomes["primary"]
        secondary = _names(outcomes.get("secondary") or [], name, "outcomes.secondary")
        _expect(out["primary"] not in secondary, name, "outcomes.secondary", list(secondary),
                f"outcomes other than the primary ({out['primary']})")
        out["secondary"] = secondary
    if "covariates" in raw:
        out["covariates"] = _names(raw["covariates"] or [], name, "covariates")
    if "missing_data" in raw:
        md = raw["missing_data"]
        _expect(isinstance(md, dict), name, "missing_data", md, "a mapping with imputations, seed, enabled")
        unknown = sorted(set(md) - _MISSING_DATA_KEYS)
        _expect(not unknown, name, f"missing_data.{unknown[0] if unknown else ''}", None,
                "only " + ", ".join(sorted(_MISSING_DATA_KEYS)))
        m = MissingData()
        imputations = md.get("imputations", m.imputations)
        _expect(isinstance(imputations, int) and not isinstance(imputations, bool) and 2 <= imputations <= 1000,
                name, "missing_data.imputations", imputations, "a whole number from 2 to 1000")
        seed = md.get("seed", m.seed)
        _expect(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, name, "missing_data.seed", seed,
                "a whole number of 0 or more")
        enabled = md.get("enabled", m.enabled)
        _expect(isinstance(enabled, bool), name, "missing_data.enabled", enabled, "true or false")
        out["missing_data"] = MissingData(enabled=enabled, imputations=imputations, seed=seed)
    if "fidelity" in raw:
        fid = raw["fidelity"]
        _expect(isinstance(fid, dict), name, "fidelity", fid,
                "a mapping with bands, bands_note, outcomes, measured_in_control, arm")
        unknown = sorted(set(fid) - _FIDELITY_KEYS)
        _expect(not unknown, name, f"fidelity.{unknown[0] if unknown else ''}", None,
                "only " + ", ".join(sorted(_FIDELITY_KEYS)))
        bands = fid.get("bands")
        _expect(bands is None or (isinstance(bands, list) and all(isinstance(b, dict) for b in bands)), name,
                "fidelity.bands", bands, "a list of {label, max} (inclusive upper limits; the last without max)")
        note = fid.get("bands_note", "")
        _expect(isinstance(note, str), name, "fidelity.bands_note", note, "a text")
        _expect(not bands or note.strip() != "", name, "fidelity.bands_note", note,
                "a sentence saying where the bands come from (no CPIFS cut-off is published)")
        measured = fid.get("measured_in_control", False)
        _expect(isinstance(measured, bool), name, "fidelity.measured_in_control", measured, "true or false")
        arm = fid.get("arm")
        _expect(arm is None or (isinstance(arm, str) and arm.strip() != ""), name, "fidelity.arm", arm,
                "an arm value, e.g. implementation")
        out["fidelity"] = FidelitySettings(
            bands=tuple(bands) if bands else None, bands_note=note,
            outcomes=_names(fid.get("outcomes") or [], name, "fidelity.outcomes"),
            measured_in_control=measured, arm=arm)
    return out
