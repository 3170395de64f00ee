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
_LATER_KEYS = {"report"}
_DESIGN_KEYS = {"study", "participant", "cluster", "site", "arm", "timepoint"}
_ANALYSIS_KEYS = {"outcomes", "covariates", "missing_data", "fidelity", "costs"}
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


_COSTS_KEYS = {"perspective", "price_year", "unit_costs", "price_index", "recall_months", "services", "service_use",
               "service_use_map",
               "exclude_unpriced", "implementation_costs", "utility", "effect", "horizon_months", "discount_rate",
               "bootstrap", "thresholds", "inb_thresholds"}
SERVICE_MEASURES = ("contacts", "minutes_per_contact", "minutes", "hours", "days")
_BOOTSTRAP_KEYS = {"replicates", "seed", "conf_level"}
_THRESHOLD_KEYS = {"from", "to", "step"}


@dataclass(frozen=True)
class ServiceColumns:
    """Which (long-format) columns record one service's use; see docs/costs.md."""

    service: str
    contacts: str | None = None
    minutes_per_contact: str | None = None
    minutes: str | None = None
    hours: str | None = None
    days: str | None = None

    @property
    def columns(self) -> dict[str, str]:
        """{measure: column} for the measures given."""
        return {m: getattr(self, m) for m in SERVICE_MEASURES if getattr(self, m)}


@dataclass(frozen=True)
class CostSettings:
    """The costs analysis (cpeval.costs; keys documented in docs/costs.md). File names are as written in the plan;
    ``base_dir`` is the plan file's folder, against which they are resolved."""

    unit_costs: str
    price_year: str
    perspective: str = "NHS and personal social services"
    price_index: str | None = None
    recall_months: float = 6.0
    services: tuple[ServiceColumns, ...] = ()
    service_use: str | None = None
    service_use_map: str | None = None  # a (long) variable map for the service_use file
    exclude_unpriced: bool = False
    implementation_costs: str | tuple[dict, ...] | None = None
    utility: str | None = None
    effect: str | None = None  # default: the plan's primary outcome
    horizon_months: float = 6.0
    discount_rate: float = 0.0
    replicates: int = 2000
    seed: int = 2024
    conf_level: float = 0.95
    thresholds: tuple[float, float, float] = (0.0, 50000.0, 1000.0)
    inb_thresholds: tuple[float, ...] = (20000.0, 30000.0)
    base_dir: str = "."


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def parse_cost_settings(raw: Any, name: str) -> CostSettings:
    """Validate a plan's ``costs`` mapping (file existence is checked when the analysis runs)."""
    _expect(isinstance(raw, dict), name, "costs", raw, "a mapping (see docs/costs.md)")
    unknown = sorted(set(raw) - _COSTS_KEYS)
    _expect(not unknown, name, f"costs.{unknown[0] if unknown else ''}", None, "only " + ", ".join(sorted(_COSTS_KEYS)))
    out: dict[str, Any] = {"base_dir": str(Path(name).parent)}
    for key in ("unit_costs", "price_year"):
        _expect(key in raw, name, f"costs.{key}", None, "a value (it is required)")
    for key in ("unit_costs", "price_year", "perspective", "price_index", "service_use", "service_use_map", "utility",
                "effect"):
        if raw.get(key) is not None:
            value = raw[key]
            _expect(isinstance(value, (str, int)) and str(value).strip() != "", name, f"costs.{key}", value,
                    "a non-empty text")
            out[key] = str(value)
    for key, low, high in (("recall_months", 0, 120), ("horizon_months", 0, 600)):
        if key in raw:
            value = raw[key]
            _expect(_number(value) and low < value <= high, name, f"costs.{key}", value,
                    f"a number above {low:g} and at most {high:g}")
            out[key] = float(value)
    if "discount_rate" in raw:
        value = raw["discount_rate"]
        _expect(_number(value) and 0 <= value < 1, name, "costs.discount_rate", value,
                "an annual rate from 0 to below 1, e.g. 0.035")
        out["discount_rate"] = float(value)
    if "exclude_unpriced" in raw:
        _expect(isinstance(raw["exclude_unpriced"], bool), name, "costs.exclude_unpriced", raw["exclude_unpriced"],
                "true or false")
        out["exclude_unpriced"] = raw["exclude_unpriced"]
    services = raw.get("services")
    if services is not None:
        _expect(isinstance(services, dict) and services, name, "costs.services", services,
                "a mapping of service (as in the unit-cost table) to {contacts: COLUMN, ...}")
        parsed = []
        for service, cols in services.items():
            key = f"costs.services.{service}"
            _expect(isinstance(cols, dict) and cols, name, key, cols,
                    "a mapping of measure to column, measures: " + ", ".join(SERVICE_MEASURES))
            bad = sorted(set(cols) - set(SERVICE_MEASURES))
            _expect(not bad, name, f"{key}.{bad[0] if bad else ''}", None, "one of " + ", ".join(SERVICE_MEASURES))
            for measure, column in cols.items():
                _expect(isinstance(column, str) and column.strip(), name, f"{key}.{measure}", column, "a column name")
            _expect(("minutes_per_contact" not in cols) or ("contacts" in cols), name, key, cols,
                    "contacts together with minutes_per_contact")
            main = [m for m in ("contacts", "minutes", "hours", "days") if m in cols]
            _expect(len(main) == 1, name, key, cols, "exactly one of contacts, minutes, hours, days")
            parsed.append(ServiceColumns(service=str(service), **cols))
        out["services"] = tuple(parsed)
    _expect(bool(out.get("services")) != bool(out.get("service_use")), name, "costs.services", services,
            "either services (wide columns) or service_use (a long file), not both and not neither")
    _expect(not out.get("service_use_map") or out.get("service_use"), name, "costs.service_use_map",
            out.get("service_use_map"), "a map only together with service_use (the long file it maps)")
    impl = raw.get("implementation_costs")
    if impl is not None:
        if isinstance(impl, list):
            _expect(all(isinstance(r, dict) and "team" in r for r in impl) and impl, name,
                    "costs.implementation_costs", impl, "a file name or a list of {team, <component>: cost}")
            out["implementation_costs"] = tuple(impl)
        else:
            _expect(isinstance(impl, str) and impl.strip(), name, "costs.implementation_costs", impl,
                    "a file name or a list of {team, <component>: cost}")
            out["implementation_costs"] = impl
    boot = raw.get("bootstrap")
    if boot is not None:
        _expect(isinstance(boot, dict), name, "costs.bootstrap", boot, "a mapping with replicates, seed, conf_level")
        bad = sorted(set(boot) - _BOOTSTRAP_KEYS)
        _expect(not bad, name, f"costs.bootstrap.{bad[0] if bad else ''}", None, "only replicates, seed, conf_level")
        reps = boot.get("replicates", 2000)
        _expect(isinstance(reps, int) and not isinstance(reps, bool) and 99 <= reps <= 1_000_000, name,
                "costs.bootstrap.replicates", reps, "a whole number from 99 to 1000000")
        seed = boot.get("seed", 2024)
        _expect(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, name, "costs.bootstrap.seed",
                seed, "a whole number of 0 or more")
        conf = boot.get("conf_level", 0.95)
        _expect(_number(conf) and 0.5 <= conf < 1, name, "costs.bootstrap.conf_level", conf,
                "a number from 0.5 to below 1, e.g. 0.95")
        out.update(replicates=reps, seed=seed, conf_level=float(conf))
    th = raw.get("thresholds")
    if th is not None:
        _expect(isinstance(th, dict) and set(th) == _THRESHOLD_KEYS and all(_number(th[k]) for k in th), name,
                "costs.thresholds", th, "{from: 0, to: 50000, step: 1000} (numbers, £ per QALY)")
        _expect(0 <= th["from"] < th["to"] and 0 < th["step"] <= th["to"] - th["from"]
                and (th["to"] - th["from"]) / th["step"] <= 10_000, name, "costs.thresholds", th,
                "0 <= from < to, a positive step, at most 10000 steps")
        out["thresholds"] = (float(th["from"]), float(th["to"]), float(th["step"]))
    inb = raw.get("inb_thresholds")
    if inb is not None:
        _expect(isinstance(inb, list) and inb and all(_number(v) and v >= 0 for v in inb), name,
                "costs.inb_thresholds", inb, "a list of thresholds in £ per QALY, e.g. [20000, 30000]")
        out["inb_thresholds"] = tuple(float(v) for v in inb)
    return CostSettings(**out)


@dataclass(frozen=True)
class Plan:
    design: Design
    source: str = "(default plan)"
    primary: str | None = None  # the primary outcome's score column
    secondary: tuple[str, ...] = ()
    covariates: tuple[str, ...] = ()
    missing_data: MissingData = field(default_factory=MissingData)
    fidelity: FidelitySettings = field(default_factory=FidelitySettings)
    costs: CostSettings | None = None  # the plan's costs section (cpeval.costs); None when it has none
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
    if "costs" in raw:
        out["costs"] = parse_cost_settings(raw["costs"], name)
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
