"""Synthetic demo data imitating the Connecting People Implementation Study.

The study (Webber et al. 2020, Br J Soc Work bcaa159): 5 NHS mental health trusts, each with one implementation and
one comparison (control) community mental health team; 159 service users recruited, 151 interviewed at baseline,
127 at six months. cpeval's demo writes what such a study team would export from SPSS:

- ``demo_study.sav``: WIDE, one row per service user, baseline variables prefixed ``T1_`` and six-month variables
  ``T2_``; CPIFS-SU (service users rate their worker's practice) exists at six months only; CSRI service use
  (Client Service Receipt Inventory) at both time points, for the recall period before that interview (``T1_``:
  the 6 months before the baseline interview; ``T2_``: since the baseline interview): ``CSRI_GP`` GP surgery,
  ``CSRI_GPTEL`` GP telephone and ``CSRI_GPHOME`` GP home-visit consultations, ``CSRI_PN`` practice nurse
  appointments, ``CSRI_CMHT`` community mental health team face-to-face contacts, ``CSRI_CSN`` community
  specialist nurse contacts (all counts) and ``CSRI_CSNMIN`` average minutes per nurse contact (0 when there were
  no contacts; -9 "not asked" when the contacts item was refused or not known; system missing when it is);
- ``demo_workers.sav``: one row per worker (care co-ordinator), CPIFS-W self-ratings plus researchers' consensus
  ratings of one practice example per domain, collected once, at six months;
- ``demo_consensus.csv``: three researchers' ratings of each practice example;
- ``demo_implementation_costs.csv``: the cost of implementing Connecting People in each implementation team
  (team, caseload, price_year 2013/14, training, supervision, worker_time in pounds), as the plan's ``costs``
  section reads it (docs/costs.md).

Both files carry variable labels, value labels and the user-missing codes -9 ("Refused / not asked") and
-8 ("Don't know") on every item; AGE declares 999 ("Not recorded"). The variable maps
``analysis/demo_study_map.yaml`` and ``analysis/demo_workers_map.yaml`` name every SPSS variable written here.

How the numbers are made (all from ``numpy.random.default_rng(seed)``, split into one child stream per part of
the model, so a seed fixes every value and a change to one part leaves the others as they were):

- Three correlated person latents, wellbeing W, access to social capital S and health H
  (corr W-S 0.4, W-H 0.5, S-H 0.25), plus trust (SD 0.15) and team (SD 0.20) random effects, scaled to exactly
  those SDs, so the team-level share of the variance is about 0.06 (estimated ICCs with 10 teams scatter widely
  around it: about 0.05 +/- 0.05 over seeds).
- Items are a person factor plus item noise, then rounded and clipped: WEMWBS loading 0.62 (Cronbach's alpha
  about 0.85-0.9, baseline total about 41, SD about 10); RG-UK items thresholded latents (about 12 of 27);
  SCOPE from W and S; EQ-5D-5L levels from H (and W for anxiety / depression), England-2018 index about 0.6.
- Fidelity: each team has a latent level (implementation 6.4, control 4.6 on the 1-9 CPIFS scale, team SD 0.5
  around its arm mean), each worker varies around it (SD 1.0; social workers +0.4), and each service user
  experiences their worker's practice with their own variation (SD 1.0). CPIFS-W (self-rated, running 0.3 high)
  and CPIFS-SU items are noisy ratings of those levels; practice examples are consensus ratings of the worker's.
- Six months: latent = 0.7-0.75 x baseline + new variation + a small improvement for everyone (both arms improved
  in the real study) + a fidelity effect counted from control-team practice: about +0.85 RG-UK resources and
  +0.5 WEMWBS points per fidelity point. That gives an arm difference of about +1.5 resources on RG-UK and about
  +1 point on WEMWBS, and a within-arm correlation of about 0.2 between CPIFS-SU and six-month RG-UK (the pilot
  found partial eta-squared 0.05 for high vs low fidelity).
- Flow: 155-165 recruited (team sizes 10-22), 5-11 never interviewed (every item missing), 120-134 interviewed
  at six months; lower baseline wellbeing makes dropout more likely.
- Item non-response: about 2 % system-missing and 0.5 % each of -9 and -8 (3 % "don't know" on CPIFS-SU),
  concentrated in some people; 2-4 people have AGE 999; and 13 deliberate data-entry errors, listed in
  :attr:`DemoStudy.planted_errors` (e.g. a WEMWBS item 6, 0 or 2.5, an EQ-5D level 7, an RG-UK 2 or 11, a GP
  surgery count of -2 at six months).
- Service use (drawn last, from a stream of its own, ``default_rng([seed, 8])``, so adding it changed no other
  value): gamma-Poisson (negative binomial) counts whose rate is a service mean times
  exp(-b_H H - b_W W + person frailty), scaled so the mean over people is that service mean, the frailty
  (SD 0.35) shared by every service and both periods, so
  worse health and wellbeing mean more use and heavy users stay heavy. Means over 6 months about: GP surgery 2.5,
  GP telephone 1, GP home visit 0.1, practice nurse 1, CMHT contacts 8 with a long tail (shape 1.2); GP use
  follows health, CMHT use wellbeing. Community specialist nurse: about 15 % users (more with worse health), each
  with 1 + NB(mean 3) contacts of 30-60 minutes. At six months implementation teams have 10 % more CMHT contacts
  and 10 % fewer GP contacts (surgery, telephone, home visit), so the arms' costs differ only modestly.
  Missing where the person was not interviewed, plus the item non-response above (2 %, 0.5 %, 0.5 %).
- Implementation costs (same stream), per implementation team: training 2,000-3,000, supervision 1,500-2,500 and
  worker time 2,500-4,000 pounds (uniform, whole pounds), spread over a caseload of 150-300 service users, so
  about 25-50 pounds per service user.

The fidelity effect is deliberately present so analyses have something to find; the real study found no
difference in outcomes between arms. This is synthetic data, not a re-creation of the study's results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cpeval.errors import CpevalError

__all__ = [
    "DemoStudy",
    "generate_demo_study",
    "write_demo_files",
    "demo_map_paths",
    "valid_ranges",
    "STUDY_FILE",
    "WORKERS_FILE",
    "IMPLEMENTATION_COSTS_FILE",
    "MISSING_CODES",
]

STUDY_FILE = "demo_study.sav"
WORKERS_FILE = "demo_workers.sav"
IMPLEMENTATION_COSTS_FILE = "demo_implementation_costs.csv"
STUDY_MAP = "demo_study_map.yaml"
WORKERS_MAP = "demo_workers_map.yaml"

MISSING_CODES = {-9: "Refused / not asked", -8: "Don't know"}
AGE_NOT_RECORDED = 999

TRUST_LETTERS = "ABCDE"
N_TRUSTS = 5
N_TEAMS = 2 * N_TRUSTS
ARM_LABELS = {1: "implementation", 2: "control"}
GENDER_LABELS = {1: "male", 2: "female", 3: "other / prefer not to say"}
PROFESSION_LABELS = {
    1: "social worker",
    2: "community psychiatric nurse",
    3: "occupational therapist",
    4: "support worker",
    5: "other",
}

TIMEPOINTS = {"T1_": ("baseline", "Baseline"), "T2_": ("follow_up", "6 months")}

WEMWBS_SHORT = (
    "optimistic", "useful", "relaxed", "interested in other people", "energy to spare",
    "dealing with problems well", "thinking clearly", "feeling good about myself", "feeling close to others",
    "confident", "able to make up my own mind", "feeling loved", "interested in new things", "cheerful",
)
WEMWBS_LABELS = {1: "None of the time", 2: "Rarely", 3: "Some of the time", 4: "Often", 5: "All of the time"}
RGUK_LABELS = {0: "No", 1: "Yes"}
SCOPE_DOMAINS = {
    "leisure": "leisure and participation",
    "housing": "housing",
    "safety": "safety",
    "work": "work",
    "finances": "finances",
    "education": "education",
    "family": "family and friends",
    "health": "health",
}
# Satisfaction: the Delighted-Terrible scale (1 best). Perceived-opportunity labels are a cpeval assumption (5 best).
SCOPE_SAT_LABELS = {1: "Delighted", 2: "Pleased", 3: "Mostly satisfied", 4: "Mixed", 5: "Mostly dissatisfied",
                    6: "Unhappy", 7: "Terrible"}
SCOPE_OPP_LABELS = {1: "Very poor", 2: "Poor", 3: "Neither good nor poor", 4: "Good", 5: "Very good"}
EQ5D_DIMS = {"mo": "mobility", "sc": "self-care", "ua": "usual activities", "pd": "pain / discomfort",
             "ad": "anxiety / depression"}
EQ5D_LABELS = {1: "No problems", 2: "Slight problems", 3: "Moderate problems", 4: "Severe problems",
               5: "Extreme problems / unable"}
CPIFS_DOMAINS = {
    "com": ("engagement with service users' community", 4),
    "ass": ("assessment", 3),
    "pla": ("planning", 3),
    "par": ("equal partnership", 3),
    "rel": ("relationships", 4),
}
CPIFS_ITEMS = tuple(f"{d}{k}" for d, (_, n) in CPIFS_DOMAINS.items() for k in range(1, n + 1))
CPIFS_LABELS = {1: "Not at all", 9: "Completely"}


@dataclass(frozen=True)
class _Item:
    """One questionnaire item as written to SPSS."""

    stem: str            # SPSS name without the time-point prefix (participants) / full name (workers)
    name: str            # cpeval name
    label: str           # variable label without the time point
    lo: float
    hi: float
    labels: dict         # value labels (missing-code labels are added on write)
    measure: str         # SPSS measurement level
    timepoints: tuple = ("T1_", "T2_")


# CSRI service use in the recall period before each interview (T1_: the 6 months before the baseline interview,
# T2_: since the baseline interview): counts of contacts, and minutes per community specialist nurse contact.
# Counts have no upper limit (hi = inf); the labels add the recall period for each time point (_csri_label).
CSRI_RECALL = {"T1_": "in the 6 months before the baseline interview", "T2_": "since the baseline interview"}
CSRI_ITEMS = (
    _Item("CSRI_GP", "csri_gp_surgery", "CSRI GP surgery consultations (contacts)", 0, np.inf, {}, "scale"),
    _Item("CSRI_GPTEL", "csri_gp_telephone", "CSRI GP telephone consultations (contacts)", 0, np.inf, {},
          "scale"),
    _Item("CSRI_GPHOME", "csri_gp_home_visit", "CSRI GP home visits (contacts)", 0, np.inf, {}, "scale"),
    _Item("CSRI_PN", "csri_practice_nurse", "CSRI practice nurse appointments (contacts)", 0, np.inf, {},
          "scale"),
    _Item("CSRI_CMHT", "csri_cmht_contacts", "CSRI community mental health team face-to-face contacts", 0,
          np.inf, {}, "scale"),
    _Item("CSRI_CSN", "csri_csn_contacts", "CSRI community specialist nurse contacts", 0, np.inf, {}, "scale"),
    _Item("CSRI_CSNMIN", "csri_csn_minutes",
          "CSRI community specialist nurse, average minutes per contact (0 if no contacts)", 0, np.inf, {},
          "scale"),
)


def _participant_items() -> list[_Item]:
    items = [
        _Item(f"WEMWBS{k}", f"wemwbs_{k}", f"WEMWBS {k}: {WEMWBS_SHORT[k - 1]}", 1, 5, WEMWBS_LABELS, "ordinal")
        for k in range(1, 15)
    ]
    items += [
        _Item(f"RGUK{k}", f"rguk_{k}", f"RG-UK {k}: knows someone who can ... (resource {k})", 0, 1, RGUK_LABELS,
              "nominal")
        for k in range(1, 28)
    ]
    items += [
        _Item(f"SCOPE_SAT_{d.upper()}", f"scope_sat_{d}",
              f"SCOPE satisfaction with {label} (1 delighted - 7 terrible)", 1, 7, SCOPE_SAT_LABELS, "ordinal")
        for d, label in SCOPE_DOMAINS.items()
    ]
    items += [
        _Item(f"SCOPE_OPP_{d.upper()}", f"scope_opp_{d}",
              f"SCOPE perceived opportunities: {label} (1 worst - 5 best)", 1, 5, SCOPE_OPP_LABELS, "ordinal")
        for d, label in SCOPE_DOMAINS.items()
    ]
    items += [
        _Item(f"EQ5D_{d.upper()}", f"eq5d5l_{d}", f"EQ-5D-5L {label}", 1, 5, EQ5D_LABELS, "ordinal")
        for d, label in EQ5D_DIMS.items()
    ]
    items.append(_Item("EQ5D_VAS", "eq5d5l_vas", "EQ VAS (0 worst - 100 best imaginable health)", 0, 100, {},
                       "scale"))
    items += list(CSRI_ITEMS)
    items += [
        _Item(f"CPIFS_{i.upper()}", f"cpifs_su_{i}",
              f"CPIFS-SU {CPIFS_DOMAINS[i[:3]][0]} {i[3:]} (1-9, rated by the service user)", 1, 9, CPIFS_LABELS,
              "ordinal", ("T2_",))
        for i in CPIFS_ITEMS
    ]
    return items


def _worker_items() -> list[_Item]:
    items = [
        _Item(f"CPIFSW_{i.upper()}", f"cpifs_w_{i}",
              f"CPIFS-W {CPIFS_DOMAINS[i[:3]][0]} {i[3:]} (1-9, self-rated)", 1, 9, CPIFS_LABELS, "ordinal", ())
        for i in CPIFS_ITEMS
    ]
    items += [
        _Item(f"CPIFSW_EX_{d.upper()}", f"cpifs_w_ex_{d}",
              f"CPIFS-W practice example: {label} (1-9, consensus rating)", 1, 9, CPIFS_LABELS, "ordinal", ())
        for d, (label, _) in CPIFS_DOMAINS.items()
    ]
    return items


PARTICIPANT_ITEMS = _participant_items()
WORKER_ITEMS = _worker_items()


def valid_ranges(dataset: str = "participants") -> dict[str, tuple[float, float]]:
    """The valid (integer) range of every coded or item variable in one demo file, by SPSS name.

    ``dataset`` is ``"participants"`` or ``"workers"``. -9 and -8 (user-missing) and 999 for AGE are missing
    codes, not valid values; everything else outside these ranges in the generated data is a planted error.
    CSRI service-use counts and minutes have no upper limit (``hi`` is ``inf``).
    """
    common = {"TRUST": (1, N_TRUSTS), "TEAM": (1, N_TEAMS), "ARM": (1, 2)}
    if dataset == "participants":
        out = {**common, "SEX": (1, 3), "AGE": (18, 65)}
        for item in PARTICIPANT_ITEMS:
            for prefix in item.timepoints:
                out[prefix + item.stem] = (item.lo, item.hi)
        return out
    if dataset == "workers":
        out = {**common, "PROF": (1, len(PROFESSION_LABELS))}
        out.update({item.stem: (item.lo, item.hi) for item in WORKER_ITEMS})
        return out
    raise CpevalError(f"demo data set {dataset!r}: expected 'participants' or 'workers'")


@dataclass
class DemoStudy:
    """A synthetic study as a study team would export it from SPSS.

    participants      wide, one row per recruited service user, SPSS variable names
    workers           one row per worker, SPSS variable names
    participant_meta  keyword arguments for ``pyreadstat.write_sav`` (file_label, note, column_labels,
                      variable_value_labels, missing_ranges, variable_measure, variable_format)
    worker_meta       the same for the workers file
    planted_errors    the deliberate data-entry errors: dataset, row (1-based row in the file), id (ID or WORKER),
                      variable (SPSS name), cpeval_variable, timepoint, value, expected
    seed              the seed that made it
    consensus_ratings three researchers' ratings of each practice example: worker_id, rater, domain, rating
    implementation_costs  one row per implementation team: team (TEAM's value label), caseload, price_year,
                      training, supervision, worker_time (pounds, price year 2013/14)
    """

    participants: pd.DataFrame
    workers: pd.DataFrame
    participant_meta: dict
    worker_meta: dict
    planted_errors: pd.DataFrame = field(default_factory=pd.DataFrame)
    seed: int | None = None
    consensus_ratings: pd.DataFrame = field(default_factory=pd.DataFrame)  # worker_id, rater, domain, rating
    implementation_costs: pd.DataFrame = field(default_factory=pd.DataFrame)  # team, caseload, price_year, ...


# ---------------------------------------------------------------------------------------------------------------
# generation helpers (all vectorised over people x items)

def _team_sizes(rng: np.random.Generator) -> np.ndarray:
    """10 team sizes from 10 to 22 adding up to 155-165."""
    total = int(rng.integers(155, 166))
    sizes = 10 + rng.multinomial(total - 10 * N_TEAMS, rng.dirichlet(np.full(N_TEAMS, 4.0)))
    while sizes.max() > 22:  # move any excess to the smallest team; a few steps at most
        big, small = int(sizes.argmax()), int(sizes.argmin())
        sizes[big] -= 1
        sizes[small] += 1
    return sizes


def _exact_sd(draws: np.ndarray, sd: float) -> np.ndarray:
    """Centre each column of a few cluster-level draws and scale it to exactly ``sd``.

    With 5 trusts and 10 teams, raw draws give realised cluster variances anywhere from a third to twice the
    target; fixing them keeps the demo's ICC and arm contrast near the stated values for every seed.
    """
    centred = draws - draws.mean(axis=0)
    return centred / centred.std(axis=0, ddof=1) * sd


def _likert(rng, latent, loading, means, sd, lo, hi):
    """Items = round(mean + sd * (loading * latent + unique noise)), clipped to lo..hi; shape (n, k)."""
    means = np.asarray(means, dtype=float)
    z = loading * latent[:, None] + np.sqrt(1 - loading**2) * rng.standard_normal((latent.size, means.size))
    return np.clip(np.rint(means + sd * z), lo, hi)


def _binary(rng, latent, loading, thresholds):
    z = loading * latent[:, None] + np.sqrt(1 - loading**2) * rng.standard_normal((latent.size, len(thresholds)))
    return (z > np.asarray(thresholds)).astype(float)


# fixed item parameters (do not depend on the seed)
_WEMWBS_MEANS = [2.85, 3.15, 2.65, 3.25, 2.45, 2.95, 3.05, 2.75, 2.95, 2.75, 3.35, 3.15, 3.05, 2.85]
_RGUK_THRESHOLDS = np.array([   # item difficulty on the latent scale: about 12 of 27 resources on average
    -1.07, 0.23, -0.47, 0.93, -0.17, 0.53, -0.77, 1.13, 0.03, -0.27, 0.73, 0.33, -0.57, 0.83,
    0.13, -0.37, 0.63, -0.07, 1.03, -0.67, 0.43, 0.08, -0.22, 0.78, 0.28, -0.87, 0.38,
])
_SCOPE_SAT_MEANS = [3.8, 3.2, 3.0, 4.2, 4.4, 3.6, 3.3, 4.0]       # order of SCOPE_DOMAINS, 1 = delighted
_SCOPE_OPP_MEANS = [3.1, 2.8, 3.3, 2.3, 2.4, 2.9, 3.3, 3.1]       # 5 = best
_EQ5D_MEANS = [2.0, 1.6, 2.5, 2.4, 3.0]                             # mo sc ua pd ad
_CPIFS_DOMAIN_OFFSET = {"com": -0.5, "ass": 0.4, "pla": 0.0, "par": 0.3, "rel": -0.1}
_FIDELITY_IMPLEMENTATION = 6.4                 # team latent fidelity means (CPIFS 1-9 scale)
_FIDELITY_CONTROL = 4.6
_FIDELITY_CENTRE = _FIDELITY_CONTROL           # the fidelity effect is counted from usual (control) practice
_IMPROVEMENT = np.array([0.10, 0.05, 0.03])    # general six-month change in W, S, H (latent SD units)
_FIDELITY_EFFECT = np.array([0.05, 0.17, 0.02])  # six-month change in W, S, H per fidelity point


def _cpifs_items(rng, level, rater_sd, item_sd):
    """CPIFS ratings (n, 17): level + rater bias + rater-by-domain effect + item noise, rounded to 1-9."""
    n = level.size
    rater = level + rng.normal(0, rater_sd, n)
    domains = list(CPIFS_DOMAINS)
    dom_eff = rng.normal(0, 0.4, (n, len(domains)))
    cols = []
    for j, d in enumerate(domains):
        k = CPIFS_DOMAINS[d][1]
        cols.append(rater[:, None] + _CPIFS_DOMAIN_OFFSET[d] + dom_eff[:, [j]] + rng.normal(0, item_sd, (n, k)))
    return np.clip(np.rint(np.hstack(cols)), 1, 9)


def _punch_missing(rng, block, p_sysmis, p_refused, p_dontknow, propensity=None):
    """Item non-response on a (n, k) block: NaN (system missing), -9 and -8.

    ``propensity`` (n,), mean about 1, scales each person's rates: some people skip many items, most none.
    """
    u = rng.random(block.shape)
    if propensity is not None:
        u = u / propensity[:, None]
    out = block.copy()
    out[u < p_sysmis] = np.nan
    out[(u >= p_sysmis) & (u < p_sysmis + p_refused)] = -9
    out[(u >= p_sysmis + p_refused) & (u < p_sysmis + p_refused + p_dontknow)] = -8
    return out


def generate_demo_study(seed: int = 2024) -> DemoStudy:
    """Generate the synthetic Connecting People implementation study (pure: same seed, same data).

    Parameters
    ----------
    seed : int
        Seed for ``numpy.random.default_rng``; the only source of randomness.

    Returns
    -------
    DemoStudy
        Wide participants frame and workers frame with SPSS names, their SPSS metadata and the list of
        planted data-entry errors. See the module docstring for the data-generating model.

    Examples
    --------
    >>> study = generate_demo_study(2024)
    >>> sorted(study.participants["ARM"].unique().tolist())
    [1, 2]
    """
    # One root generator; each part of the model draws from its own child stream, so changing how (say) item
    # missingness is drawn does not change who was recruited or what they answered.
    streams = dict(zip(
        ("design", "fidelity", "latent", "covariates", "flow", "items", "missing", "workers", "errors"),
        np.random.default_rng(seed).spawn(9),
        strict=True,
    ))

    # --- design: team j (0..9) is in trust j // 2; even j implementation (ARM 1), odd j control (ARM 2)
    rng = streams["design"]
    team_idx = np.arange(N_TEAMS)
    team_trust = team_idx // 2 + 1
    team_arm = np.where(team_idx % 2 == 0, 1, 2)
    sizes = _team_sizes(rng)
    p_team = np.repeat(team_idx, sizes)
    n = p_team.size
    p_trust = team_trust[p_team]
    p_arm = team_arm[p_team]
    p_seq = np.concatenate([np.arange(1, s + 1) for s in sizes])
    p_id = p_trust * 1000 + p_arm * 100 + p_seq
    n_workers = rng.integers(4, 9, size=N_TEAMS)
    w_team = np.repeat(team_idx, n_workers)
    w_seq = np.concatenate([np.arange(1, k + 1) for k in n_workers])
    w_id = team_trust[w_team] * 100 + team_arm[w_team] * 10 + w_seq
    w_prof = rng.choice(np.arange(1, 6), size=w_team.size, p=[0.3, 0.35, 0.15, 0.15, 0.05])
    # each service user is on one worker's caseload in their team (unequal caseloads)
    first_worker = np.concatenate([[0], np.cumsum(n_workers)[:-1]])
    p_worker_pos = np.empty(n, dtype=int)
    for j in team_idx:
        members = p_team == j
        caseload = rng.dirichlet(np.full(n_workers[j], 2.0))
        p_worker_pos[members] = first_worker[j] + rng.choice(n_workers[j], size=members.sum(), p=caseload)
    p_worker = w_id[p_worker_pos]

    # --- fidelity: team level, worker level, and the practice each service user experienced
    rng = streams["fidelity"]
    team_dev = np.empty(N_TEAMS)
    for arm in (1, 2):                                   # centred within arm: the arm means are exactly as set
        team_dev[team_arm == arm] = _exact_sd(rng.standard_normal((N_TEAMS // 2, 1)), 0.5)[:, 0]
    team_fid = np.where(team_arm == 1, _FIDELITY_IMPLEMENTATION, _FIDELITY_CONTROL) + team_dev
    w_fid = team_fid[w_team] + rng.normal(0, 1.0, w_team.size) + 0.4 * (w_prof == 1)
    p_fid = w_fid[p_worker_pos] + rng.normal(0, 1.0, n)
    fid_c = p_fid - _FIDELITY_CENTRE

    # --- person latents: wellbeing W, social capital S, health H, with trust and team effects
    rng = streams["latent"]
    corr = np.array([[1.0, 0.4, 0.5], [0.4, 1.0, 0.25], [0.5, 0.25, 1.0]])
    chol = np.linalg.cholesky(corr)
    trust_eff = _exact_sd(rng.standard_normal((N_TRUSTS, 3)), 0.15)
    team_eff = _exact_sd(rng.standard_normal((N_TEAMS, 3)), 0.20)
    lat1 = rng.standard_normal((n, 3)) @ chol.T + trust_eff[p_trust - 1] + team_eff[p_team]
    team_eff2 = _exact_sd(rng.standard_normal((N_TEAMS, 3)), 0.08)
    innov = rng.standard_normal((n, 3)) @ chol.T
    stab = np.array([0.70, 0.75, 0.70])
    lat2 = (stab * lat1 + np.sqrt(1 - stab**2) * innov + team_eff2[p_team]
            + _IMPROVEMENT                                           # everyone improves a little
            + np.outer(fid_c, _FIDELITY_EFFECT))                    # per fidelity point

    # --- covariates
    rng = streams["covariates"]
    age = np.clip(np.rint(rng.normal(42, 12, n)), 18, 65)
    age[rng.choice(n, size=int(rng.integers(2, 5)), replace=False)] = AGE_NOT_RECORDED
    sex = rng.choice([1, 2, 3], size=n, p=[0.47, 0.50, 0.03])

    # --- flow: never interviewed, interviewed at baseline, interviewed at six months
    rng = streams["flow"]
    n_never = int(rng.integers(5, 12))
    never = np.zeros(n, dtype=bool)
    never[rng.choice(n, size=n_never, replace=False)] = True
    baseline_idx = np.flatnonzero(~never)
    n_fu = int(rng.integers(120, 135))
    w_drop = np.exp(-0.7 * lat1[baseline_idx, 0])                  # lower wellbeing, more dropout
    dropped = rng.choice(baseline_idx, size=baseline_idx.size - n_fu, replace=False, p=w_drop / w_drop.sum())
    at_t1 = ~never
    at_t2 = at_t1.copy()
    at_t2[dropped] = False

    # --- items per time point
    rng, rmiss = streams["items"], streams["missing"]
    columns: dict[str, np.ndarray] = {
        "ID": p_id, "TRUST": p_trust, "TEAM": p_team + 1, "ARM": p_arm, "WORKER": p_worker,
        "SEX": sex, "AGE": age,
    }
    for prefix, lat, present in (("T1_", lat1, at_t1), ("T2_", lat2, at_t2)):
        W, S, H = lat[:, 0], lat[:, 1], lat[:, 2]
        blocks = {
            "wemwbs": _likert(rng, W, 0.62, _WEMWBS_MEANS, 1.13, 1, 5),
            "rguk": _binary(rng, S, 0.55, _RGUK_THRESHOLDS),
            "scope_sat": _likert(rng, -(0.75 * W + 0.35 * S), 0.55, _SCOPE_SAT_MEANS, 1.3, 1, 7),
            "scope_opp": _likert(rng, 0.5 * W + 0.6 * S, 0.5, _SCOPE_OPP_MEANS, 1.0, 1, 5),
        }
        eq_latent = np.column_stack([H, H, 0.7 * H + 0.3 * W, H, 0.3 * H + 0.75 * W])
        eq = np.clip(np.rint(_EQ5D_MEANS - 0.65 * eq_latent + 0.76 * rng.standard_normal((n, 5))), 1, 5)
        vas = np.clip(62 + 18 * (0.6 * H + 0.2 * W + 0.75 * rng.standard_normal(n)), 0, 100)
        vas = np.where(rng.random(n) < 0.5, np.rint(vas / 5) * 5, np.rint(vas))   # many people round to 5
        blocks["eq5d"] = np.column_stack([eq, vas])
        if prefix == "T2_":
            blocks["cpifs"] = _cpifs_items(rng, p_fid, 0.6, 0.9)
        skipper = rmiss.gamma(0.5, 2.0, n)                         # person-level item non-response propensity
        for key, block in blocks.items():
            p_dk = 0.03 if key == "cpifs" else 0.005                # service users often cannot say
            block = _punch_missing(rmiss, block, 0.02, 0.005, p_dk, skipper)
            if key == "eq5d":
                block[rmiss.random(n) < 0.03, -1] = np.nan           # the VAS is skipped more often
            block[~present] = np.nan
            names = [i for i in PARTICIPANT_ITEMS if prefix in i.timepoints and _block_of(i) == key]
            for item, col in zip(names, block.T, strict=True):
                columns[prefix + item.stem] = col
    participants = pd.DataFrame(columns)
    for col in ("ID", "TRUST", "TEAM", "ARM", "WORKER", "SEX"):
        participants[col] = participants[col].astype("int64")

    # --- workers file: self-rated CPIFS-W (running a little high) and consensus-rated practice examples
    rng = streams["workers"]
    w_items = _cpifs_items(rng, w_fid + 0.3, 0.5, 0.8)
    w_items = _punch_missing(rng, w_items, 0.015, 0.005, 0.0)
    examples = np.clip(np.rint(w_fid[:, None] + np.array(list(_CPIFS_DOMAIN_OFFSET.values()))
                               + rng.normal(0, 1.0, (w_fid.size, 5))), 1, 9)
    examples[rng.random(examples.shape) < 0.08] = np.nan                  # no example given
    wcols: dict[str, np.ndarray] = {
        "WORKER": w_id, "TRUST": team_trust[w_team], "TEAM": w_team + 1, "ARM": team_arm[w_team], "PROF": w_prof,
    }
    for item, col in zip(WORKER_ITEMS, np.hstack([w_items, examples]).T, strict=True):
        wcols[item.stem] = col
    workers = pd.DataFrame(wcols)
    for col in ("WORKER", "TRUST", "TEAM", "ARM", "PROF"):
        workers[col] = workers[col].astype("int64")

    planted = _plant_errors(streams["errors"], participants, workers)
    # three researchers rate each practice example (a stream of its own: the files above are unchanged by it);
    # examples with no example given have no ratings, and a few single ratings are missing
    rr = np.random.default_rng([seed, 7])
    rater_bias = np.array([0.0, 0.4, -0.3])
    quality = w_fid[:, None] + np.array(list(_CPIFS_DOMAIN_OFFSET.values()))
    rows = []
    for r, bias in enumerate(rater_bias):
        rating = np.clip(np.rint(quality + bias + rr.normal(0, 0.7, quality.shape)), 1, 9)
        rating[np.isnan(examples) | (rr.random(quality.shape) < 0.03)] = np.nan
        for j, d in enumerate(_CPIFS_DOMAIN_OFFSET):
            rows.append(pd.DataFrame({"worker_id": w_id, "rater": f"R{r + 1}", "domain": d, "rating": rating[:, j]}))
    consensus = pd.concat(rows, ignore_index=True).dropna(subset=["rating"]).reset_index(drop=True)
    # CSRI service use and implementation costs: a stream of their own, drawn last, so every value above is the
    # same as without them (they were added later)
    rs = np.random.default_rng([seed, 8])
    csri = _service_use(rs, (lat1, lat2), (at_t1, at_t2), p_arm)
    participants = pd.concat([participants, pd.DataFrame(csri, index=participants.index)], axis=1)
    planted = _plant_csri_error(rs, participants, planted)
    implementation = _implementation_costs(rs, team_idx[team_arm == 1] + 1)
    return DemoStudy(
        participants=participants,
        workers=workers,
        participant_meta=_participant_meta(),
        worker_meta=_worker_meta(),
        planted_errors=planted,
        seed=seed,
        consensus_ratings=consensus,
        implementation_costs=implementation,
    )


# CSRI counts: (SPSS stem, mean contacts in 6 months at average health and wellbeing, negative-binomial shape k
# (smaller k: longer tail), log-rate change per SD worse health H, per SD worse wellbeing W, rate ratio for
# implementation teams at six months)
_CSRI_COUNTS = (
    ("CSRI_GP", 2.5, 1.5, 0.35, 0.15, 0.90),
    ("CSRI_GPTEL", 1.0, 0.8, 0.30, 0.15, 0.90),
    ("CSRI_GPHOME", 0.1, 0.3, 0.60, 0.10, 0.90),
    ("CSRI_PN", 1.0, 1.0, 0.35, 0.05, 1.00),
    ("CSRI_CMHT", 8.0, 1.2, 0.10, 0.35, 1.10),
)
_CSRI_FRAILTY_SD = 0.35          # person-level propensity to use services, shared by services and time points
_CSN_USERS = 0.15                # share of people seeing a community specialist nurse in a 6-month period
_CSN_MINUTES = np.array([30, 40, 45, 50, 60])


def _service_use(rng, latents, present, p_arm) -> dict[str, np.ndarray]:
    """CSRI columns (T1_ then T2_), counts from a gamma-Poisson (negative binomial) model.

    rate = mean x exp(-b_H H - b_W W + person frailty - c) x gamma(k, 1/k) noise, with c (half the variance of
    the exponent) making the population mean rate the stated mean when the latents are standard normal; worse
    health and wellbeing mean more use. Community specialist nurse: a
    hurdle (about 15 % users, more with worse health), then 1 + NB(mean 3) contacts of 30-60 minutes each;
    minutes are 0 when there were no contacts.
    """
    n = p_arm.size
    frailty = rng.normal(0, _CSRI_FRAILTY_SD, n)
    skipper = rng.gamma(0.5, 2.0, n)                     # person-level item non-response propensity
    out: dict[str, np.ndarray] = {}
    for (prefix, _), lat, at in zip(TIMEPOINTS.items(), latents, present, strict=True):
        W, H = lat[:, 0], lat[:, 2]
        cols = []
        for _stem, mean, k, b_h, b_w, arm_ratio in _CSRI_COUNTS:
            var = b_h**2 + b_w**2 + 2 * 0.5 * b_h * b_w + _CSRI_FRAILTY_SD**2   # corr(W, H) = 0.5
            rate = mean * np.exp(-b_h * H - b_w * W + frailty - var / 2)
            if prefix == "T2_":
                rate = np.where(p_arm == 1, rate * arm_ratio, rate)
            cols.append(rng.poisson(rate * rng.gamma(k, 1 / k, n)).astype(float))
        user = rng.random(n) < 1 / (1 + np.exp(-(np.log(_CSN_USERS / (1 - _CSN_USERS)) - 0.5 * H - 0.2 * W)))
        csn = np.where(user, 1 + rng.poisson(3.0 * rng.gamma(1.0, 1.0, n)), 0).astype(float)
        minutes = np.where(user, rng.choice(_CSN_MINUTES, n), 0).astype(float)
        block = _punch_missing(rng, np.column_stack([*cols, csn, minutes]), 0.02, 0.005, 0.005, skipper)
        contacts = block[:, -2]
        # routing: no contacts, minutes recorded as 0; contacts refused / not known, minutes not asked (-9)
        block[:, -1] = np.where(contacts == 0, 0.0, block[:, -1])
        block[:, -1] = np.where(np.isin(contacts, (-9, -8)), -9.0, block[:, -1])
        block[:, -1] = np.where(np.isnan(contacts), np.nan, block[:, -1])
        block[~at] = np.nan
        for item, col in zip(CSRI_ITEMS, block.T, strict=True):
            out[prefix + item.stem] = col
    return out


def _plant_csri_error(rng, participants: pd.DataFrame, planted: pd.DataFrame) -> pd.DataFrame:
    """One more data-entry error: a negative GP surgery count at six months, on a row with no other error."""
    col = "T2_CSRI_GP"
    x = participants[col].to_numpy(dtype=float)
    ok = (x >= 0) & ~np.isnan(x)
    ok[planted.loc[planted["dataset"] == "participants", "row"].to_numpy() - 1] = False
    row = int(rng.choice(np.flatnonzero(ok)))
    value = -2.0
    participants.loc[row, col] = value
    name, timepoint = _cpeval_name("participants", col)
    record = {"dataset": "participants", "row": row + 1, "id": int(participants.loc[row, "ID"]), "variable": col,
              "cpeval_variable": name, "timepoint": timepoint, "value": value,
              "expected": "a count of 0 or more"}
    return pd.concat([planted, pd.DataFrame([record])], ignore_index=True)


def _implementation_costs(rng, teams: np.ndarray) -> pd.DataFrame:
    """Connecting People implementation costs per implementation team (pounds, 2013/14 prices).

    ``team`` holds the team as the analysis sees it: the demo map reads TEAM's value labels as text, so the team
    column after the map is e.g. "Trust A implementation team" (docs/costs.md: values of the plan's cluster column).
    """
    k = teams.size
    return pd.DataFrame({
        "team": [_team_label(int(t)) for t in teams],
        "caseload": rng.integers(150, 301, k).astype("int64"),     # service users supported over follow-up
        "price_year": "2013/14",
        "training": np.rint(rng.uniform(2000, 3000, k)).astype("int64"),      # training days for the team
        "supervision": np.rint(rng.uniform(1500, 2500, k)).astype("int64"),   # supervision and coaching
        "worker_time": np.rint(rng.uniform(2500, 4000, k)).astype("int64"),   # workers' time on implementation
    })


def _block_of(item: _Item) -> str:
    name = item.name
    if name.startswith("eq5d5l"):
        return "eq5d"
    if name.startswith("cpifs_su"):
        return "cpifs"
    return name.rsplit("_", 1)[0] if name.startswith("scope") else name.split("_", 1)[0]


# (dataset, SPSS names it may go in, value, expected) -- each lands on a valid, answered cell
_ERRORS = [
    ("participants", [f"T1_WEMWBS{k}" for k in range(1, 15)], 6.0, "an integer from 1 to 5"),
    ("participants", [f"T2_WEMWBS{k}" for k in range(1, 15)], 0.0, "an integer from 1 to 5"),
    ("participants", [f"T1_WEMWBS{k}" for k in range(1, 15)], 2.5, "an integer from 1 to 5"),
    ("participants", [f"T1_EQ5D_{d.upper()}" for d in EQ5D_DIMS], 7.0, "an integer from 1 to 5"),
    ("participants", ["T2_EQ5D_VAS"], 150.0, "an integer from 0 to 100"),
    ("participants", [f"T1_RGUK{k}" for k in range(1, 28)], 2.0, "0 (no) or 1 (yes)"),
    ("participants", [f"T2_RGUK{k}" for k in range(1, 28)], 11.0, "0 (no) or 1 (yes)"),
    ("participants", [f"T1_SCOPE_SAT_{d.upper()}" for d in SCOPE_DOMAINS], 8.0, "an integer from 1 to 7"),
    ("participants", [f"T2_SCOPE_OPP_{d.upper()}" for d in SCOPE_DOMAINS], 0.0, "an integer from 1 to 5"),
    ("participants", [f"T2_CPIFS_{i.upper()}" for i in CPIFS_ITEMS], 10.0, "an integer from 1 to 9"),
    ("participants", ["AGE"], 4.0, "an age from 18 to 65"),
    ("workers", [f"CPIFSW_{i.upper()}" for i in CPIFS_ITEMS], 0.0, "an integer from 1 to 9"),
]


def _cpeval_name(dataset: str, spss: str) -> tuple[str, str | None]:
    if dataset == "workers":
        return next(i.name for i in WORKER_ITEMS if i.stem == spss), "follow_up"
    if spss == "AGE":
        return "age", None
    prefix, stem = spss[:3], spss[3:]
    return next(i.name for i in PARTICIPANT_ITEMS if i.stem == stem), TIMEPOINTS[prefix][0]


def _plant_errors(rng, participants: pd.DataFrame, workers: pd.DataFrame) -> pd.DataFrame:
    frames = {"participants": participants, "workers": workers}
    ranges = {k: valid_ranges(k) for k in frames}
    used: set[tuple[str, int]] = set()          # at most one planted error per row, so they are easy to find
    records = []
    for dataset, candidates, value, expected in _ERRORS:
        frame = frames[dataset]
        sub = frame[candidates].to_numpy(dtype=float)
        lo, hi = ranges[dataset][candidates[0]]
        ok = (sub >= lo) & (sub <= hi) & ~np.isnan(sub)
        for row in {r for d, r in used if d == dataset}:
            ok[row] = False
        rows, cols = np.nonzero(ok)
        pick = int(rng.integers(rows.size))
        row, col = int(rows[pick]), candidates[cols[pick]]
        frame.loc[row, col] = value
        used.add((dataset, row))
        name, timepoint = _cpeval_name(dataset, col)
        records.append({
            "dataset": dataset,
            "row": row + 1,
            "id": int(frame.iloc[row, 0]),
            "variable": col,
            "cpeval_variable": name,
            "timepoint": timepoint,
            "value": value,
            "expected": expected,
        })
    return pd.DataFrame(records)


# ---------------------------------------------------------------------------------------------------------------
# SPSS metadata

def _with_codes(labels: dict) -> dict:
    return {**{float(k): v for k, v in labels.items()}, **{float(k): v for k, v in MISSING_CODES.items()}}


def _team_label(team: int) -> str:
    """TEAM's value label (teams are numbered 1..10; odd numbers are implementation teams)."""
    j = team - 1
    return f"Trust {TRUST_LETTERS[j // 2]} {ARM_LABELS[1 + j % 2]} team"


def _design_meta(value_labels: dict, labels: dict, measure: dict) -> None:
    labels.update({
        "TRUST": "NHS mental health trust",
        "TEAM": "Community mental health team",
        "ARM": "Study arm (team allocation)",
    })
    value_labels.update({
        "TRUST": {t: f"Trust {TRUST_LETTERS[t - 1]}" for t in range(1, N_TRUSTS + 1)},
        "TEAM": {j + 1: _team_label(j + 1) for j in range(N_TEAMS)},
        "ARM": dict(ARM_LABELS),
    })
    measure.update({"TRUST": "nominal", "TEAM": "nominal", "ARM": "nominal"})


def _participant_meta() -> dict:
    labels = {"ID": "Service user study ID"}
    value_labels: dict = {}
    measure = {"ID": "nominal", "WORKER": "nominal", "SEX": "nominal", "AGE": "scale"}
    _design_meta(value_labels, labels, measure)
    labels.update({
        "WORKER": "Care co-ordinator (worker ID; see demo_workers.sav)",
        "SEX": "Gender",
        "AGE": "Age at recruitment (years)",
    })
    value_labels["SEX"] = dict(GENDER_LABELS)
    value_labels["AGE"] = {AGE_NOT_RECORDED: "Not recorded"}
    missing = {"AGE": [AGE_NOT_RECORDED]}
    fmt = {c: "F8.0" for c in ("ID", "TRUST", "TEAM", "ARM", "WORKER", "SEX", "AGE")}
    for item in PARTICIPANT_ITEMS:
        for prefix in item.timepoints:
            name = prefix + item.stem
            csri = item in CSRI_ITEMS
            recall = f" {CSRI_RECALL[prefix]}" if csri else ""
            labels[name] = f"{TIMEPOINTS[prefix][1]}: {item.label}{recall}"
            value_labels[name] = _with_codes(item.labels)
            missing[name] = sorted(MISSING_CODES)
            measure[name] = item.measure
            fmt[name] = "F8.0" if csri else "F8.1"
    return {
        "file_label": "cpeval demo study: synthetic service users (not real data)",
        "note": ["Synthetic data made by cpeval.demo.generate_demo_study (not real people).",
                 "Wide: T1_ = baseline, T2_ = six months. -9 refused / not asked, -8 don't know."],
        "column_labels": labels,
        "variable_value_labels": value_labels,
        "missing_ranges": missing,
        "variable_measure": measure,
        "variable_format": fmt,
    }


def _worker_meta() -> dict:
    labels = {"WORKER": "Worker ID", "PROF": "Profession"}
    value_labels: dict = {"PROF": dict(PROFESSION_LABELS)}
    measure = {"WORKER": "nominal", "PROF": "nominal"}
    _design_meta(value_labels, labels, measure)
    missing = {}
    fmt = {c: "F8.0" for c in ("WORKER", "TRUST", "TEAM", "ARM", "PROF")}
    for item in WORKER_ITEMS:
        labels[item.stem] = f"6 months: {item.label}"
        value_labels[item.stem] = _with_codes(item.labels)
        missing[item.stem] = sorted(MISSING_CODES)
        measure[item.stem] = item.measure
        fmt[item.stem] = "F8.1"
    return {
        "file_label": "cpeval demo study: synthetic workers (not real data)",
        "note": ["Synthetic data made by cpeval.demo.generate_demo_study (not real people).",
                 "One row per worker, rated at six months. -9 refused / not asked, -8 don't know."],
        "column_labels": labels,
        "variable_value_labels": value_labels,
        "missing_ranges": missing,
        "variable_measure": measure,
        "variable_format": fmt,
    }


# ---------------------------------------------------------------------------------------------------------------
# files

def write_demo_files(study: DemoStudy, folder) -> dict[str, Path]:
    """Write ``demo_study.sav`` and ``demo_workers.sav`` (labels, value labels, user-missing codes) into ``folder``.

    Also ``demo_consensus.csv``: three researchers' ratings of each worker's practice examples (long: worker_id,
    rater, domain, rating), and ``demo_implementation_costs.csv``: one row per implementation team (team, caseload,
    price_year, training, supervision, worker_time), the file the demo plan's ``costs`` section names. The folder
    is created if needed. Returns ``{"participants", "workers", "consensus", "implementation_costs"}`` paths.
    """
    import pyreadstat

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CpevalError(f"demo output folder {str(folder)!r}: cannot create it ({exc.strerror}); "
                          "expected a writable folder") from exc
    paths = {"participants": folder / STUDY_FILE, "workers": folder / WORKERS_FILE,
             "consensus": folder / "demo_consensus.csv",
             "implementation_costs": folder / IMPLEMENTATION_COSTS_FILE}
    for key, frame, meta in (("participants", study.participants, study.participant_meta),
                             ("workers", study.workers, study.worker_meta)):
        try:
            pyreadstat.write_sav(frame, paths[key], **meta)
        except OSError as exc:
            raise CpevalError(f"demo file {str(paths[key])!r}: cannot write it ({exc}); "
                              "expected a writable folder") from exc
    study.consensus_ratings.to_csv(paths["consensus"], index=False)
    study.implementation_costs.to_csv(paths["implementation_costs"], index=False)
    return paths


def demo_map_paths() -> dict[str, Path]:
    """The shipped variable maps for the demo files: ``{"participants": ..., "workers": ...}``."""
    from cpeval.resources import analysis_dir

    base = analysis_dir()
    return {"participants": base / STUDY_MAP, "workers": base / WORKERS_MAP}
