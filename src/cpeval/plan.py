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
_LATER_KEYS = {"outcomes", "covariates", "models", "costs", "fidelity", "reliability", "missing_data", "report"}
_DESIGN_KEYS = {"study", "participant", "cluster", "site", "arm", "timepoint"}


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
class Plan:
    design: Design
    source: str = "(default plan)"
    extra: dict[str, Any] = field(default_factory=dict)


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
    unknown = sorted(set(raw) - _DESIGN_KEYS - _LATER_KEYS)
    if unknown:
        raise CpevalError(
            f"{name}: unknown key '{unknown[0]}'; expected one of {', '.join(sorted(_DESIGN_KEYS | _LATER_KEYS))}"
        )
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
    extra = {k: v for k, v in raw.items() if k in _LATER_KEYS}
    return Plan(design=Design(**kwargs), source=name, extra=extra)
