"""Linear mixed models with random intercepts, fitted by REML, with lmerTest-style small-sample inference.

Model: ``y = X beta + b_outer + b_inner + e`` with one random intercept per group (``(1 | team)``) or two nested
random intercepts (``(1 | team) + (1 | participant)``, every participant in one team), all normal and independent:
``b_outer ~ N(0, tau2_outer)``, ``b_inner ~ N(0, tau2_inner)``, ``e ~ N(0, sigma2)``.

What is computed, and how it relates to R ``lme4`` + ``lmerTest`` (the reference reviewers trust):

- **REML.** The marginal covariance is ``V = sigma2 * H``, ``H = I + lam_outer * J_team + lam_inner * J_participant``
  (``lam = tau2 / sigma2``, lme4's ``theta`` squared). Per team, ``H`` is inverted in closed form
  (Sherman-Morrison twice), so ``[X y]' H^-1 [X y]`` and ``log|H|`` come from per-group sufficient statistics and
  one evaluation costs O(teams x distinct participant sizes x p^2), not O(people). sigma2 is profiled out and the
  criterion is minimised over ``lam >= 0`` by Newton's method on ``log(lam)`` with the analytic gradient and Hessian,
  from the best point of a small grid. The criterion at zero variance (for two components: every face and the
  corner) is always compared with the interior optimum, so a zero variance is found exactly: ``singular = True``,
  as lme4's "boundary (singular) fit" (also when ``tau / sigma < 1e-4``, lme4's ``isSingular`` tolerance).
  ``reml_criterion`` equals lme4's ``REMLcrit()`` (-2 REML log-likelihood) and is never above lme4's value.
- **Fixed effects.** ``cov_fixed = (X' V^-1 X)^-1`` at the REML estimates (lme4's ``vcov``; not statsmodels' ``bse``).
- **Satterthwaite df** for a contrast ``L``: ``df = 2 (L C L')^2 / (g' A g)``, with ``C = cov_fixed``, ``g`` the
  gradient of ``L C L'`` with respect to the variance parameters and ``A = 2 H^-1`` (``H`` the Hessian of the
  REML deviance) - lmerTest's formula. Derivatives here are analytic, in the parameters ``(lam_outer, [lam_inner],
  sigma2)``; at an interior optimum the result does not depend on the parametrisation, so it equals lmerTest's
  (which differentiates numerically in ``(theta, sigma)``).
- **Singular fits.** At ``theta = 0`` the derivative of ``cov(beta)`` with respect to that ``theta`` is zero, so
  lmerTest's Satterthwaite df treat the zero variance as *known*: with one team-level component that is the OLS
  residual df ``n - p`` for the arm effect (148 on tests/data/lmer/singular.csv, 10 teams), as if teams did not
  exist; with a nested model whose team variance lme4 puts at ``theta = 2.5e-4`` it reports about 200 df for arm
  (nested_team0.csv). That ignores the uncertainty about the variance and is anti-conservative in a cluster trial
  with few teams, so by default a singular fit uses the **between-within** df below (``df_method =
  "between-within"``; arm: teams - 2 = 8 there, as nlme reports) and a note gives lmerTest's values.
  ``fit_mixed(..., singular_df="satterthwaite")`` reproduces lmerTest (Satterthwaite over the non-zero components).
- **Between-within df** (fallback; SAS DDFM=BETWITHIN / nlme-style levels): each X column is assigned to the
  outermost level within whose groups it is constant: team level (intercept included), participant level (nested
  models), or within (varies inside the innermost groups). Level df: ``teams - (team-level columns)``,
  ``participants - teams - (participant-level columns)``, ``n - (innermost groups) - (within columns)``. This is
  nlme's rule except for the intercept, which nlme gives the innermost df. A contrast gets the smallest df among
  the columns it involves. Used for singular fits (by default) and whenever the Satterthwaite approximation cannot
  be computed (Hessian of the REML criterion not positive definite); a note says why.

Only :class:`cpeval.errors.CpevalError` is raised for problems in the input (missing values, fewer than 2 groups,
constant or collinear columns, constant y, groups not nested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

from cpeval.errors import CpevalError

__all__ = ["MixedFit", "fit_mixed"]

_THETA_MAX = 1.0e4  # theta = tau / sigma; ICC 0.99999999 at the bound
_COLLINEAR_TOL = 1e-9  # 1 - R^2 of a column on the earlier columns below this: rank deficient
_SINGULAR_THETA = 1e-4  # lme4's isSingular(tol = 1e-4) on theta
_HESS_TOL = 1e-8  # eigenvalues below this fraction of the largest: Hessian treated as not positive definite


# --------------------------------------------------------------------------------------------- REML engine


@dataclass
class _Eval:
    dev: float  # profiled REML criterion
    beta: np.ndarray  # centred parametrisation
    K: np.ndarray  # (X' H^-1 X)^-1
    r2: float  # y' P y (penalised residual sum of squares)
    grad: np.ndarray | None = None  # d dev / d lam (profiled == non-profiled at sigma2 = r2 / (n - p))
    hess: np.ndarray | None = None  # Hessian of the non-profiled deviance in (lam..., sigma2) at sigma2-hat
    dMXX: list[np.ndarray] | None = None  # d (X' H^-1 X) / d lam_i


class _Problem:
    """Sufficient statistics of a random-intercept model and the REML criterion with derivatives."""

    def __init__(self, W: np.ndarray, outer: np.ndarray, n_outer: int,
                 inner: np.ndarray | None = None, n_inner: int = 0, inner_to_outer: np.ndarray | None = None):
        n, k = W.shape
        self.n, self.p = n, k - 1
        self.S0 = W.T @ W
        self.nested = inner is not None
        self.k = 2 if self.nested else 1
        if not self.nested:
            self.u = np.column_stack([np.bincount(outer, weights=W[:, c], minlength=n_outer) for c in range(k)])
            self.q = np.bincount(outer, minlength=n_outer).astype(float)
            return
        s = np.column_stack([np.bincount(inner, weights=W[:, c], minlength=n_inner) for c in range(k)])
        m = np.bincount(inner, minlength=n_inner)
        sizes, size_idx = np.unique(m, return_inverse=True)
        nm = sizes.size
        idx = inner_to_outer * nm + size_idx
        self.sizes = sizes.astype(float)
        self.U = np.ascontiguousarray(np.stack(
            [np.bincount(idx, weights=s[:, c], minlength=n_outer * nm).reshape(n_outer, nm) for c in range(k)],
            axis=1))  # (teams, k, distinct sizes): sum of the [X y] rows of the participants of that size
        self.cnt = np.bincount(idx, minlength=n_outer * nm).reshape(n_outer, nm).astype(float)
        self.N_m = self.cnt.sum(axis=0)
        self.S_m = np.stack([s[size_idx == i].T @ s[size_idx == i] for i in range(nm)]).reshape(nm, k * k)

    # -- the criterion -------------------------------------------------------------------------------------

    def evaluate(self, lam: np.ndarray, order: int = 0) -> _Eval | None:
        """REML criterion at relative variances ``lam`` (and derivatives up to ``order``); None if not computable."""
        p, n = self.p, self.n
        lt = float(lam[0])

        def wsum(f, a, b):  # sum_j f_j a_j b_j'
            return (a * f[:, None]).T @ b

        if self.nested:
            lp = float(lam[1])
            m = self.sizes
            c = 1.0 / (1.0 + m * lp)
            q = self.cnt @ (m * c)
            u = self.U @ c
            ldH = float(self.N_m @ np.log1p(m * lp))
            M = self.S0 - ((lp * c) @ self.S_m).reshape(p + 1, p + 1)
        else:
            q, u = self.q, self.u
            ldH = 0.0
            M = self.S0
        d = 1.0 + lt * q
        w = lt / d
        ldH += float(np.sum(np.log(d)))
        M = M - wsum(w, u, u)
        MXX = M[:p, :p]
        try:
            Lc = np.linalg.cholesky(MXX)
        except np.linalg.LinAlgError:
            return None
        Linv = np.linalg.inv(Lc)
        K = Linv.T @ Linv
        beta = K @ M[:p, p]
        r2 = float(M[p, p] - M[:p, p] @ beta)
        if not (r2 > 0.0) or not np.isfinite(r2):
            return None
        logdet = 2.0 * float(np.sum(np.log(np.diag(Lc))))
        dev = ldH + logdet + (n - p) * (1.0 + math.log(2.0 * math.pi * r2 / (n - p)))
        out = _Eval(dev=dev, beta=beta, K=K, r2=r2)
        if order == 0:
            return out

        # first derivatives of M and log|H| with respect to lam
        if self.nested:
            c1, c2 = -m * c * c, 2.0 * m * m * c ** 3
            a1, a2 = c * c, -2.0 * m * c ** 3
            q1, q2 = self.cnt @ (m * c1), self.cnt @ (m * c2)
            u1 = self.U @ c1
            w_t = 1.0 / d ** 2
            w_p = -lt * lt * q1 / d ** 2
            uu1 = wsum(w, u, u1)
            dM = [-wsum(w_t, u, u),
                  -((a1 @ self.S_m).reshape(p + 1, p + 1) + wsum(w_p, u, u) + uu1 + uu1.T)]
            dld = np.array([np.sum(q / d), float(self.N_m @ (m * c)) + np.sum(lt * q1 / d)])
        else:
            dM = [-wsum(1.0 / d ** 2, u, u)]
            dld = np.array([np.sum(q / d)])
        e = np.append(-beta, 1.0)
        Me = [dMi @ e for dMi in dM]
        r2_1 = np.array([e @ v for v in Me])
        KdM = [K @ dMi[:p, :p] for dMi in dM]
        trK = np.array([np.trace(a) for a in KdM])
        out.grad = dld + trK + (n - p) * r2_1 / r2
        out.dMXX = [dMi[:p, :p] for dMi in dM]
        if order == 1:
            return out

        # second derivatives
        if self.nested:
            u2 = self.U @ c2
            w_tt = -2.0 * q / d ** 3
            w_tp = -2.0 * lt * q1 / d ** 3
            w_pp = 2.0 * lt ** 3 * q1 ** 2 / d ** 3 - lt * lt * q2 / d ** 2
            x_tp = wsum(w_t, u, u1)
            x_pp1 = wsum(w_p, u, u1)
            x_pp2 = wsum(w, u, u2)
            d2M = {
                (0, 0): -wsum(w_tt, u, u),
                (0, 1): -(wsum(w_tp, u, u) + x_tp + x_tp.T),
                (1, 1): -((a2 @ self.S_m).reshape(p + 1, p + 1) + wsum(w_pp, u, u) + 2.0 * (x_pp1 + x_pp1.T)
                          + x_pp2 + x_pp2.T + 2.0 * wsum(w, u1, u1)),
            }
            d2ld = {
                (0, 0): -np.sum(q * q / d ** 2),
                (0, 1): np.sum(q1 / d ** 2),
                (1, 1): -float(self.N_m @ (m * m * c * c)) + np.sum(lt * q2 / d - lt * lt * q1 ** 2 / d ** 2),
            }
        else:
            d2M = {(0, 0): wsum(2.0 * q / d ** 3, u, u)}
            d2ld = {(0, 0): -np.sum(q * q / d ** 2)}
        k = self.k
        s2 = r2 / (n - p)
        H = np.empty((k + 1, k + 1))
        for i in range(k):
            for j in range(i, k):
                A = d2M[(i, j)]
                r2_ij = e @ A @ e - 2.0 * Me[i][:p] @ K @ Me[j][:p]
                hij = d2ld[(i, j)] + np.sum(K * A[:p, :p]) - np.sum(KdM[i] * KdM[j].T) + r2_ij / s2
                H[i, j] = H[j, i] = hij
            H[i, k] = H[k, i] = -r2_1[i] / s2 ** 2
        H[k, k] = (n - p) / s2 ** 2
        out.hess = H
        return out

    def profiled_hessian(self, ev: _Eval) -> np.ndarray:
        H = ev.hess
        k = self.k
        return H[:k, :k] - np.outer(H[:k, k], H[:k, k]) / H[k, k]


# ----------------------------------------------------------------------------------------------- optimiser


def _newton_log(prob: _Problem, a: np.ndarray, B: np.ndarray, x0: np.ndarray,
                maxit: int = 100) -> tuple[np.ndarray, float] | None:
    """Minimise the profiled criterion over lam = a + B x, x > 0, by Newton's method in eta = log x.

    Analytic gradient and Hessian; the Hessian is made positive definite (eigenvalues reflected and floored) when
    it is not, steps are capped at a factor e^3 in x, and an Armijo backtracking line search guarantees descent.
    Stops when the gradient in eta is below 1e-9 (criterion units), no further decrease is possible, or a
    component of x falls below 1e-14 (the boundary, which the caller evaluates separately). Returns (lam, dev).
    """
    eta = np.log(np.asarray(x0, dtype=float))
    lam_of = lambda e: a + B @ np.exp(e)  # noqa: E731
    ev = prob.evaluate(lam_of(eta), 2)
    if ev is None:
        return None
    f = ev.dev
    for _ in range(maxit):
        x = np.exp(eta)
        gx = B.T @ ev.grad
        g = x * gx
        if np.max(np.abs(g)) < 1e-9 or np.min(x) < 1e-14 or np.max(x) > _THETA_MAX ** 2:
            break
        Hx = B.T @ prob.profiled_hessian(ev) @ B
        H = Hx * np.outer(x, x) + np.diag(g)
        w, V = np.linalg.eigh(H)
        w = np.maximum(np.abs(w), 1e-8 * max(1.0, np.max(np.abs(w))))
        step = -V @ ((V.T @ g) / w)
        big = np.max(np.abs(step))
        if big > 3.0:
            step *= 3.0 / big
        slope = float(g @ step)
        t, accepted = 1.0, False
        for _ in range(40):
            e_new = eta + t * step
            ev_new = prob.evaluate(lam_of(e_new), 0)
            if ev_new is not None and ev_new.dev <= f + 1e-4 * t * slope:
                accepted = True
                break
            t *= 0.5
        if not accepted:
            break
        eta = e_new
        ev = prob.evaluate(lam_of(eta), 2)
        f = ev.dev
    return lam_of(eta), f


def _fit_reml(prob: _Problem) -> tuple[np.ndarray, float]:
    """Global REML fit: interior optimum compared with every boundary face; ties go to the boundary.

    Each search starts from the best point of a small grid of theta = tau / sigma values.
    """
    k = prob.k
    zero = np.zeros(k)
    candidates: list[tuple[np.ndarray, float]] = []
    ev0 = prob.evaluate(zero, 0)
    if ev0 is not None:
        candidates.append((zero.copy(), ev0.dev))
    grid1 = [0.05, 0.2, 0.5, 1.0, 2.0]

    def search(free: list[int], grid: list[np.ndarray]):
        B = np.eye(k)[:, free]
        start = _best_start(prob, zero, B, grid)
        if start is not None:
            r = _newton_log(prob, zero, B, start)
            if r is not None:
                candidates.append(r)

    if k == 1:
        search([0], [np.array([t * t]) for t in grid1])
    else:
        search([0, 1], [np.array([a * a, b * b]) for a in (0.1, 0.4, 1.0) for b in (0.1, 0.5, 1.0, 2.0)])
        for i in (0, 1):  # faces: the other component fixed at zero
            search([i], [np.array([t * t]) for t in grid1])
    if not candidates:
        raise CpevalError("mixed model: the REML criterion could not be evaluated (check X and y for extreme values)")
    best_dev = min(c[1] for c in candidates)
    tol = 1e-10 * max(1.0, abs(best_dev))
    # among candidates within tolerance of the best, prefer the one with most zero components (lme4's boundary)
    near = [c for c in candidates if c[1] <= best_dev + tol]
    near.sort(key=lambda c: (-int(np.sum(c[0] == 0.0)), c[1]))
    return near[0]


def _best_start(prob: _Problem, a: np.ndarray, B: np.ndarray, grid: list[np.ndarray]) -> np.ndarray | None:
    best, arg = np.inf, None
    for x in grid:
        ev = prob.evaluate(a + B @ x, 0)
        if ev is not None and ev.dev < best:
            best, arg = ev.dev, x
    return arg


# ------------------------------------------------------------------------------------------------ results


@dataclass
class MixedFit:
    """A REML random-intercept fit. See the module docstring for what each number is and how it compares to lme4.

    ``fixed``: index = X column names; columns estimate, std_error, df, t_value, p_value, conf_low, conf_high
    (t-based, df from ``df_method``). ``cov_fixed``: (X' V^-1 X)^-1 at the REML estimates (lme4's ``vcov``).
    ``variances``: {outer group name: tau2, [inner group name: tau2], "residual": sigma2}. ``varpar_cov``:
    2 x inverse Hessian of the REML criterion with respect to those variances, in that order; rows and columns of
    a variance estimated as exactly zero are NaN (no normal approximation at the boundary), None if the Hessian is
    not positive definite. ``reml_criterion``: lme4's ``REMLcrit()``. ``notes``: singular fits, df fallbacks,
    convergence problems, in words.
    """

    fixed: pd.DataFrame
    cov_fixed: pd.DataFrame
    variances: dict[str, float]
    varpar_cov: np.ndarray | None
    reml_criterion: float
    df_method: str
    singular: bool
    converged: bool
    notes: list[str]
    n_obs: int
    n_groups: dict[str, int]
    conf_level: float = 0.95
    _state: Any = field(default=None, repr=False, compare=False)
    # Satterthwaite df per term as lmerTest reports them, also on a singular fit where ``fixed`` uses
    # between-within df (lmerTest then treats the zero variance as known); None when not computable
    lmertest_df: pd.Series | None = None

    # -- contrasts -------------------------------------------------------------------------------------------

    def contrast(self, L, conf_level: float | None = None) -> dict:
        """Estimate, SE, df, t and p for ``L @ beta``.

        ``L``: a vector over the fixed effects (same order as ``fixed.index``), or a dict / Series mapping fixed-effect
        names to weights (others 0). df: Satterthwaite for this ``L`` (lmerTest's ``contest1D``) when
        ``df_method == "Satterthwaite"``, else between-within (smallest df among the columns with a nonzero weight).
        Returns keys estimate, std_error, df, t_value, p_value, conf_low, conf_high, df_method, conf_level
        (``t`` and ``p`` are aliases of ``t_value`` and ``p_value``).
        """
        st = self._state
        names = list(self.fixed.index)
        Lv = _as_contrast(L, names)
        cl = self.conf_level if conf_level is None else _check_conf(conf_level)
        est = float(Lv @ st["beta"])
        Lc = Lv @ st["T"]
        v = float(st["s2"] * Lc @ st["K"] @ Lc)
        se = math.sqrt(max(v, 0.0))
        if self.df_method == "Satterthwaite":
            df = _satterthwaite(Lc, st)
        else:
            df = float(min(st["bw_df"][i] for i in np.flatnonzero(Lv != 0)))
        return _t_summary(est, se, df, cl) | {"df_method": self.df_method, "conf_level": cl}

    # -- ICC -------------------------------------------------------------------------------------------------

    def icc(self, group: str, conf_level: float | None = None, method: str = "profile") -> dict:
        """Intraclass correlation for ``group``: its variance / (sum of all variances incl. residual), with a CI.

        ``method="profile"`` (default): profile-likelihood interval on the REML criterion. The ICC depends only on
        the relative variances ``lam``; for each candidate ICC value the criterion is minimised over the other
        relative variance (nested models; sigma2 is always profiled) and the interval is every ICC whose criterion
        is within ``chi2_1(conf_level)`` of the minimum. At a singular fit the lower limit is 0; the interval is
        valid at and near the boundary, unlike Wald intervals. ``method="delta"``: delta method on the logit scale
        from ``varpar_cov`` (not available when the group variance is zero). Returns keys group, icc, conf_low,
        conf_high, conf_level, method.
        """
        names = [g for g in self.variances if g != "residual"]
        if group not in names:
            raise CpevalError(f"icc: unknown group {group!r}; the fitted random intercepts are {names}")
        cl = self.conf_level if conf_level is None else _check_conf(conf_level)
        gi = names.index(group)
        total = sum(self.variances.values())
        icc = self.variances[group] / total
        if method == "profile":
            lo, hi = _icc_profile(self._state, gi, cl)
            label = "profile likelihood (REML)"
        elif method == "delta":
            label = "delta method, logit scale"
            V = self.varpar_cov
            if icc <= 0.0 or V is None:
                lo = hi = float("nan")
                label += " (not available: variance on the boundary or no Hessian)"
            else:
                phi = np.array(list(self.variances.values()))
                other = total - phi[gi]
                g = -np.ones(phi.size) / other
                g[gi] = 1.0 / phi[gi]
                ok = np.isfinite(np.diag(V))  # a variance estimated as zero is held at zero (NaN rows)
                se = math.sqrt(max(float(g[ok] @ V[np.ix_(ok, ok)] @ g[ok]), 0.0))
                z = stats.norm.ppf(0.5 + cl / 2)
                lg = math.log(icc / (1 - icc))
                lo, hi = (1 / (1 + math.exp(-(lg - z * se))), 1 / (1 + math.exp(-(lg + z * se))))
        else:
            raise CpevalError(f"icc: method must be 'profile' or 'delta', not {method!r}")
        return {"group": group, "icc": icc, "conf_low": lo, "conf_high": hi, "conf_level": cl, "method": label}


def _t_summary(est: float, se: float, df: float, cl: float) -> dict:
    t = est / se if se > 0 else float("nan")
    p = float(2.0 * stats.t.sf(abs(t), df)) if np.isfinite(t) else float("nan")
    q = float(stats.t.ppf(0.5 + cl / 2, df))
    return {"estimate": est, "std_error": se, "df": df, "t_value": t, "p_value": p,
            "conf_low": est - q * se, "conf_high": est + q * se, "t": t, "p": p}


def _satterthwaite(Lc: np.ndarray, st: dict) -> float:
    """lmerTest's df for one contrast (centred parametrisation), on the free variance parameters."""
    K, s2 = st["K"], st["s2"]
    KL = K @ Lc
    v = s2 * float(Lc @ KL)
    g = [-s2 * float(KL @ dM @ KL) for i, dM in enumerate(st["dMXX"]) if i in st["free"]]
    g.append(float(Lc @ KL))
    g = np.array(g)
    denom = float(g @ st["A"] @ g)
    if denom <= 0.0:
        return float("inf")
    return 2.0 * v * v / denom


def _icc_profile(st: dict, gi: int, cl: float) -> tuple[float, float]:
    prob: _Problem = st["prob"]
    lam_hat = st["lam"]
    dmin = st["dev"]
    crit = float(stats.chi2.ppf(cl, 1))
    k = prob.k
    oi = 1 - gi if k == 2 else None

    def prof(rho):
        r = rho / (1.0 - rho)
        base = np.zeros(k)
        base[gi] = r
        ev0 = prob.evaluate(base, 0)
        best = np.inf if ev0 is None else ev0.dev
        if oi is not None:  # minimise over lam_other >= 0 with lam_g = r (1 + lam_other)
            B = np.zeros((k, 1))
            B[oi, 0], B[gi, 0] = 1.0, r
            starts = [np.array([t * t]) for t in (0.1, 0.5, 1.0, 2.0)]
            if lam_hat[oi] > 0:
                starts.append(np.array([lam_hat[oi]]))
            x0 = _best_start(prob, base, B, starts)
            if x0 is not None:
                res = _newton_log(prob, base, B, x0)
                if res is not None:
                    best = min(best, res[1])
        return best - dmin

    rho_hat = lam_hat[gi] / (1.0 + lam_hat.sum())

    def g(rho):
        return prof(rho) - crit

    if rho_hat <= 0.0 or g(0.0) <= 0.0:
        lo = 0.0
    else:
        lo = optimize.brentq(g, 0.0, rho_hat, xtol=1e-10)
    # upper: step towards 1 until outside the interval
    a, hi = rho_hat, None
    steps = [1e-4, 4e-4, 1.6e-3, 6.4e-3, 0.0256, 0.1, 0.25, 0.5] + [1.0 - 0.5 ** j for j in range(2, 34)]
    for step in steps:
        b = rho_hat + (1.0 - rho_hat) * step
        gb = g(b)
        if gb > 0:
            hi = optimize.brentq(g, a, b, xtol=1e-10)
            break
        a = b
    if hi is None:
        hi = 1.0
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------- validation


def _check_conf(conf_level) -> float:
    try:
        cl = float(conf_level)
    except (TypeError, ValueError):
        raise CpevalError(f"conf_level must be a number between 0 and 1, not {conf_level!r}") from None
    if not 0.0 < cl < 1.0:
        raise CpevalError(f"conf_level must be between 0 and 1 (e.g. 0.95), not {conf_level!r}")
    return cl


def _as_contrast(L, names: list[str]) -> np.ndarray:
    p = len(names)
    if isinstance(L, dict | pd.Series):
        items = dict(L)
        unknown = [k for k in items if k not in names]
        if unknown:
            raise CpevalError(f"contrast: unknown fixed effect(s) {unknown}; the fixed effects are {names}")
        v = np.array([float(items.get(n, 0.0)) for n in names])
    else:
        try:
            v = np.asarray(L, dtype=float).ravel()
        except (TypeError, ValueError):
            raise CpevalError(f"contrast: L must be numbers, one per fixed effect ({names}), not {L!r}") from None
        if v.size != p:
            raise CpevalError(f"contrast: L has {v.size} entries but there are {p} fixed effects ({names})")
    if not np.all(np.isfinite(v)):
        raise CpevalError("contrast: L contains missing or infinite values")
    if not np.any(v != 0):
        raise CpevalError("contrast: L is all zero; give a weight to at least one fixed effect")
    return v


def _rows_text(mask: np.ndarray) -> str:
    rows = np.flatnonzero(mask)
    shown = ", ".join(str(r) for r in rows[:5])
    return f"row{'s' if rows.size > 1 else ''} {shown}{' ...' if rows.size > 5 else ''}"


def _check_y(y, n_expected: int | None) -> tuple[np.ndarray, str]:
    name = str(y.name) if isinstance(y, pd.Series) and y.name is not None else "y"
    try:
        if isinstance(y, pd.DataFrame) and y.shape[1] == 1:
            y = y.iloc[:, 0]
        if isinstance(y, pd.Series):
            arr = y.to_numpy(dtype=float, na_value=np.nan)
        else:
            arr = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        raise CpevalError(f"mixed model: outcome {name!r} must be numeric") from None
    if arr.ndim != 1:
        arr = arr.squeeze()
        if arr.ndim != 1:
            raise CpevalError(f"mixed model: outcome {name!r} must be one-dimensional, got shape {np.shape(y)}")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise CpevalError(f"mixed model: outcome {name!r} has {int(bad.sum())} missing or infinite value(s) "
                          f"({_rows_text(bad)}); remove rows with missing values before fitting")
    if n_expected is not None and arr.size != n_expected:
        raise CpevalError(f"mixed model: outcome {name!r} has {arr.size} values but X has {n_expected} rows")
    return arr, name


def _check_X(X) -> tuple[np.ndarray, list[str]]:
    if not isinstance(X, pd.DataFrame):
        raise CpevalError("mixed model: X must be a pandas DataFrame with one named column per fixed effect "
                          f"(including the intercept), not {type(X).__name__}")
    names = [str(c) for c in X.columns]
    if len(set(names)) != len(names):
        dup = sorted({c for c in names if names.count(c) > 1})
        raise CpevalError(f"mixed model: X has duplicated column names {dup}")
    if X.shape[1] == 0:
        raise CpevalError("mixed model: X has no columns; include at least the intercept")
    cols = []
    for c in X.columns:
        s = X[c]
        if pd.api.types.is_bool_dtype(s):
            s = s.astype(float)
        if not pd.api.types.is_numeric_dtype(s):
            raise CpevalError(f"mixed model: X column {str(c)!r} is not numeric (dtype {s.dtype}); "
                              "code factors as dummy columns before fitting")
        cols.append(s.to_numpy(dtype=float, na_value=np.nan))
    Xa = np.column_stack(cols)
    for j, c in enumerate(names):
        bad = ~np.isfinite(Xa[:, j])
        if bad.any():
            raise CpevalError(f"mixed model: X column {c!r} has {int(bad.sum())} missing or infinite value(s) "
                              f"({_rows_text(bad)}); remove rows with missing values before fitting")
    return Xa, names


def _codes(g, name: str, n: int) -> tuple[np.ndarray, int, np.ndarray]:
    arr = np.asarray(g)
    if arr.ndim != 1:
        raise CpevalError(f"mixed model: group labels {name!r} must be one-dimensional, got shape {arr.shape}")
    if arr.size != n:
        raise CpevalError(f"mixed model: group labels {name!r} have {arr.size} values but there are {n} rows")
    codes, uniques = pd.factorize(pd.Series(arr), sort=False, use_na_sentinel=True)
    if (codes < 0).any():
        raise CpevalError(f"mixed model: group labels {name!r} have {int((codes < 0).sum())} missing value(s) "
                          f"({_rows_text(codes < 0)}); remove those rows before fitting")
    return codes.astype(np.intp), int(len(uniques)), np.asarray(uniques)


def _constant_within(x: np.ndarray, codes: np.ndarray, G: int, cnt: np.ndarray) -> bool:
    mean = np.bincount(codes, weights=x, minlength=G) / cnt
    scale = max(1.0, float(np.max(np.abs(x))))
    return bool(np.max(np.abs(x - mean[codes])) <= 1e-10 * scale)


def _check_rank(names: list[str], XtX: np.ndarray, mu: np.ndarray, k0: int | None, xscale: np.ndarray) -> None:
    """Sequential check on the (centred) Gram matrix: is column j a combination of the earlier ones?

    ``mu``: the column means removed (0 for the intercept ``k0``); used to say whether the intercept is involved.
    """
    d = np.sqrt(np.diag(XtX))
    R = XtX / np.outer(d, d)
    p = len(names)
    for j in range(1, p + 1):
        A = R[:j, :j]
        try:
            b = np.linalg.solve(A[:-1, :-1], A[:-1, -1]) if j > 1 else np.zeros(0)
        except np.linalg.LinAlgError:  # pragma: no cover - earlier columns were checked already
            continue
        resid = A[-1, -1] - (A[:-1, -1] @ b if j > 1 else 0.0)
        if resid < _COLLINEAR_TOL:
            involved = [i for i in range(j - 1) if i != k0 and abs(b[i]) > 1e-6]
            if k0 is not None:  # x_j = sum raw_i x_i + c * intercept in the uncentred columns: is c nonzero?
                raw = b * d[j - 1] / d[: j - 1]
                if k0 < j - 1:
                    raw[k0] = 0.0
                if abs(mu[j - 1] - raw @ mu[: j - 1]) > 1e-8 * xscale[j - 1]:
                    involved.append(k0)
            involved = [names[i] for i in sorted(involved)]
            raise CpevalError(
                f"mixed model: X column {names[j - 1]!r} is a linear combination of "
                f"{', '.join(repr(x) for x in involved) or 'earlier columns'} (X is rank deficient); "
                "drop it or one of those columns (e.g. a dummy for every level of a factor plus an intercept)")


# ------------------------------------------------------------------------------------------------ fitting


def fit_mixed(y, X: pd.DataFrame, groups, group_names: list[str] | None = None, *, conf_level: float = 0.95,
              singular_df: str = "between-within") -> MixedFit:
    """Fit ``y ~ X + (1 | outer) [+ (1 | inner)]`` by REML with lmerTest-style (Satterthwaite) inference.

    ``y``: outcome (array or Series). ``X``: the full fixed-effects design matrix as a DataFrame (intercept column
    included), built by the caller; rows with missing values must already be removed. ``groups``: one array of
    group labels (a random intercept per group), or two arrays ``[outer, inner]`` (a list, a 2 x n array or a
    two-column DataFrame) for nested intercepts; each inner label, e.g. a participant, must belong to one outer
    group, e.g. a team, and labels must be unique across teams. ``y``, ``X`` and ``groups`` are matched by
    position (pandas indexes are not aligned). ``group_names``: names used in ``variances`` and ``n_groups``
    (default: the Series / column names, else ``group1``, ``group2``).
    ``singular_df``: df rule when a variance is estimated as zero: ``"between-within"`` (default; see module
    docstring) or ``"satterthwaite"`` (what lmerTest reports: the zero variance treated as known).
    """
    if singular_df not in ("between-within", "satterthwaite"):
        raise CpevalError(f"singular_df must be 'between-within' or 'satterthwaite', not {singular_df!r}")
    cl = _check_conf(conf_level)
    Xa, xnames = _check_X(X)
    n, p = Xa.shape
    ya, yname = _check_y(y, n)

    # groups: one array, or [outer, inner] (also a two-column DataFrame or a 2 x n array)
    if isinstance(groups, pd.DataFrame):
        glist = [groups[c] for c in groups.columns]
    elif isinstance(groups, np.ndarray) and groups.ndim == 2:
        glist = list(groups)
    elif isinstance(groups, list | tuple) and len(groups) > 0 and np.ndim(groups[0]) == 1:
        glist = list(groups)
    else:
        glist = [groups]
    if len(glist) not in (1, 2):
        raise CpevalError(f"mixed model: groups must be one array of labels or two ([outer, inner]), "
                          f"got {len(glist)}")
    if group_names is None:
        group_names = [str(g.name) if isinstance(g, pd.Series) and g.name is not None else f"group{i + 1}"
                       for i, g in enumerate(glist)]
    else:
        group_names = [str(g) for g in group_names]
    if len(group_names) != len(glist):
        raise CpevalError(f"mixed model: {len(glist)} grouping factor(s) but {len(group_names)} name(s) "
                          f"in group_names ({group_names})")
    if len(set(group_names)) != len(group_names) or "residual" in group_names:
        raise CpevalError(f"mixed model: group names must be distinct and not 'residual', got {group_names}")
    coded = [_codes(g, nm, n) for g, nm in zip(glist, group_names)]
    for (codes, G, uniq), nm in zip(coded, group_names):
        if G < 2:
            raise CpevalError(f"mixed model: grouping factor {nm!r} has {G} level ({uniq[0]}); a random "
                              "intercept needs at least 2 groups")
        if G >= n:
            raise CpevalError(f"mixed model: grouping factor {nm!r} has {G} levels for {n} rows (one row per "
                              "group): its variance cannot be separated from the residual variance")
    nested = len(coded) == 2
    outer, G1, uo = coded[0]
    inner_to_outer = None
    if nested:
        inner, G2, ui = coded[1]
        inner_to_outer = np.empty(G2, dtype=np.intp)
        inner_to_outer[inner] = outer
        wrong = inner_to_outer[inner] != outer
        if wrong.any():
            r = int(np.flatnonzero(wrong)[0])
            lab = str(ui[inner[r]])
            teams = sorted({str(uo[c]) for c in outer[inner == inner[r]]})
            raise CpevalError(f"mixed model: {group_names[1]!r} is not nested in {group_names[0]!r}: "
                              f"{group_names[1]} {lab!r} appears in {group_names[0]} {', '.join(teams)}; "
                              "each inner group must belong to one outer group (give them unique labels)")
        if G2 <= G1:
            raise CpevalError(f"mixed model: every {group_names[0]!r} has a single {group_names[1]!r}, so the "
                              "two variances cannot be told apart; fit one random intercept")

    # y and constant columns
    if np.ptp(ya) == 0:
        raise CpevalError(f"mixed model: outcome {yname!r} is constant ({ya[0]:g} in all {n} rows): nothing to model")
    if n <= p:
        raise CpevalError(f"mixed model: {n} rows for {p} fixed effects; need more rows than fixed effects")
    ptp = np.ptp(Xa, axis=0)
    scale = np.max(np.abs(Xa), axis=0)
    const = np.flatnonzero(ptp <= 1e-12 * np.maximum(scale, 1e-300))
    for j in const:
        if scale[j] == 0:
            raise CpevalError(f"mixed model: X column {xnames[j]!r} is 0 in every row (e.g. a factor level with "
                              "no observations left); drop it")
    if const.size > 1:
        j = const[1]
        raise CpevalError(f"mixed model: X column {xnames[j]!r} is constant ({Xa[0, j]:g} in every row) as is "
                          f"{xnames[const[0]]!r}; only one constant column (the intercept) is allowed")

    # centre (when there is an intercept): Xc = X T, det T = 1, so the REML criterion is unchanged
    T = np.eye(p)
    shift = np.zeros(p)
    mu = np.zeros(p)
    if const.size == 1:
        k0 = int(const[0])
        c0 = Xa[0, k0]
        mu = Xa.mean(axis=0)
        mu[k0] = 0.0
        Xc = Xa - mu
        T[k0, :] -= mu / c0
        ybar = ya.mean()
        yc = ya - ybar
        shift[k0] = ybar / c0
    else:
        Xc, yc = Xa, ya
    W = np.column_stack([Xc, yc])
    prob = _Problem(W, outer, G1, inner if nested else None, G2 if nested else 0, inner_to_outer)
    _check_rank(xnames, prob.S0[:p, :p], mu if const.size == 1 else np.zeros(p),
                int(const[0]) if const.size == 1 else None, np.maximum(scale, 1e-300))
    ev_ols = prob.evaluate(np.zeros(prob.k), 0)
    if ev_ols is None or ev_ols.r2 <= 1e-20 * float(yc @ yc):
        raise CpevalError(f"mixed model: outcome {yname!r} is an exact linear function of the X columns "
                          "(residual sum of squares 0): nothing left for the variance components")

    # between-within levels
    cnt1 = np.bincount(outer, minlength=G1).astype(float)
    level = np.full(p, 2 if nested else 1)  # 0 outer, 1 inner (nested), last = within
    cnt2 = np.bincount(inner, minlength=G2).astype(float) if nested else None
    for j in range(p):
        if _constant_within(Xa[:, j], outer, G1, cnt1):
            level[j] = 0
        elif nested and _constant_within(Xa[:, j], inner, G2, cnt2):
            level[j] = 1
    if nested:
        lev_df = [G1 - np.sum(level == 0), G2 - G1 - np.sum(level == 1), n - G2 - np.sum(level == 2)]
        lev_names = [f"{group_names[0]}-level", f"{group_names[1]}-level", "within"]
        lev_units = [G1, G2 - G1, n - G2]
    else:
        lev_df = [G1 - np.sum(level == 0), n - G1 - np.sum(level == 1)]
        lev_names = [f"{group_names[0]}-level", "within"]
        lev_units = [G1, n - G1]
    for L_, nm, units in zip(lev_df, lev_names, lev_units):
        if L_ < 1:
            cols = [xnames[j] for j in range(p) if lev_names[level[j]] == nm]
            raise CpevalError(f"mixed model: {len(cols)} {nm} fixed effect(s) ({', '.join(cols)}) for {units} "
                              f"{nm.replace('-level', '')} unit(s): not enough groups to estimate them and the "
                              "variance at that level; use fewer terms at that level")
    bw_df = np.array([float(lev_df[level[j]]) for j in range(p)])

    # --- REML
    lam, dev = _fit_reml(prob)
    ev = prob.evaluate(lam, 2)
    s2 = ev.r2 / (n - p)
    k = prob.k
    boundary = [i for i in range(k) if lam[i] == 0.0]
    inter = [i for i in range(k) if lam[i] > 0.0]
    notes: list[str] = []
    # lme4's isSingular(): theta = tau / sigma below 1e-4 counts as on the boundary
    near_zero = [i for i in inter if math.sqrt(lam[i]) < _SINGULAR_THETA]
    singular = bool(boundary or near_zero)
    for i in boundary:
        notes.append(f"singular fit: {group_names[i]} variance estimated as zero")
    for i in near_zero:
        notes.append(f"singular fit: {group_names[i]} variance estimated as nearly zero "
                     f"(tau / sigma = {math.sqrt(lam[i]):.2g} < {_SINGULAR_THETA:g}, lme4's isSingular tolerance)")

    # convergence: stationary in the interior components, KKT on the boundary, second-order condition
    Hp = prob.profiled_hessian(ev)
    gscale = max(1.0, abs(dev))
    converged = True
    if inter:
        if np.max(np.abs(ev.grad[inter] * np.sqrt(lam[inter]) * 2.0)) > 1e-4 * gscale:
            converged = False
        if np.min(np.linalg.eigvalsh(Hp[np.ix_(inter, inter)])) <= 0:
            converged = False
    for i in boundary:
        if ev.grad[i] < -1e-6 * gscale:
            converged = False
    if not converged:
        notes.append("REML optimisation did not meet the convergence checks (gradient or curvature); "
                     "treat the results with caution")

    # Satterthwaite ingredients on the free parameters (interior lam + sigma2)
    free_idx = inter + [k]
    Hf = ev.hess[np.ix_(free_idx, free_idx)]
    # positive definiteness judged on the log scale (D Hf D, D = the parameters), where it is scale-free
    D = np.append(lam[inter], s2)
    evals = np.linalg.eigvalsh(Hf * np.outer(D, D))
    hess_ok = bool(evals.max() > 0 and evals.min() > _HESS_TOL * evals.max())
    A = 2.0 * np.linalg.inv(Hf) if hess_ok else None

    C = s2 * ev.K
    beta_orig = T @ (ev.beta + shift)
    cov = T @ C @ T.T
    state = {"prob": prob, "lam": lam, "dev": dev, "K": ev.K, "s2": s2, "T": T, "beta": beta_orig,
             "dMXX": ev.dMXX, "free": inter, "A": A, "bw_df": bw_df, "level": level}

    bw_text = "; ".join(f"{lev_names[v]} terms {int(lev_df[v])} df" for v in sorted(set(level.tolist())))
    if not hess_ok:
        df_method = "between-within"
        notes.append("Satterthwaite df not computed: the Hessian of the REML criterion is not positive definite; "
                     f"between-within df used ({bw_text})")
    elif singular and singular_df == "between-within":
        df_method = "between-within"
        sat = [_satterthwaite(T[i, :], state) for i in range(p)]
        shown = ", ".join(f"{xnames[i]} {sat[i]:.1f}" for i in range(p))
        notes.append("singular fit: between-within df used (" + bw_text + "); Satterthwaite df as lmerTest "
                     "reports them treat the zero variance as known, ignoring its uncertainty (" + shown + ")")
    else:
        df_method = "Satterthwaite"
        if singular:
            notes.append("singular fit: Satterthwaite df treat the zero variance as known (as lmerTest does)")

    if df_method == "Satterthwaite":
        lmertest_df = pd.Series([_satterthwaite(T[i, :], state) for i in range(p)], index=pd.Index(xnames))
    elif singular and singular_df == "between-within":
        lmertest_df = pd.Series(sat, index=pd.Index(xnames))
    else:
        lmertest_df = None

    # fixed-effects table
    rows = []
    for i in range(p):
        se = math.sqrt(max(cov[i, i], 0.0))
        df = lmertest_df.iloc[i] if df_method == "Satterthwaite" else bw_df[i]
        r = _t_summary(float(beta_orig[i]), se, float(df), cl)
        rows.append({c: r[c] for c in ("estimate", "std_error", "df", "t_value", "p_value", "conf_low",
                                       "conf_high")})
    fixed = pd.DataFrame(rows, index=pd.Index(xnames))
    cov_fixed = pd.DataFrame(cov, index=pd.Index(xnames), columns=pd.Index(xnames))

    # variances and their covariance: Hessian of the criterion in phi = (tau2..., sigma2)
    phi = np.append(lam * s2, s2)
    variances = {group_names[i]: float(phi[i]) for i in range(k)} | {"residual": float(s2)}
    varpar_cov = _varpar_cov(ev, lam, s2, k, inter)
    # (varpar_cov's NaN rows for a zero variance are documented on MixedFit; not a note for readers of results)

    n_groups = {group_names[0]: G1} | ({group_names[1]: G2} if nested else {})
    return MixedFit(fixed=fixed, cov_fixed=cov_fixed, variances=variances, varpar_cov=varpar_cov,
                    reml_criterion=float(dev), df_method=df_method, singular=singular, converged=converged,
                    notes=notes, n_obs=n, n_groups=n_groups, conf_level=cl, _state=state,
                    lmertest_df=lmertest_df)


def _varpar_cov(ev: _Eval, lam: np.ndarray, s2: float, k: int, free: list[int]) -> np.ndarray | None:
    """2 x inverse Hessian of the REML criterion in phi = (tau2_1.., sigma2), over the non-zero components.

    Rows and columns of components estimated as exactly zero are NaN: the estimator has a point mass at the
    boundary and no normal approximation; the other block is the covariance with those components fixed at zero.
    """
    H = ev.hess
    g = np.append(ev.grad, 0.0)  # gradient in (lam, s); d/ds is 0 at sigma2-hat (0 at an interior optimum)
    # (lam_i, s) as functions of phi: lam_i = phi_i / phi_s, s = phi_s
    J = np.zeros((k + 1, k + 1))
    for i in range(k):
        J[i, i] = 1.0 / s2
        J[i, k] = -lam[i] / s2
    J[k, k] = 1.0
    Hphi = J.T @ H @ J
    for i in free:  # second derivatives of lam_i(phi)
        Hphi[i, k] += g[i] * (-1.0 / s2 ** 2)
        Hphi[k, i] += g[i] * (-1.0 / s2 ** 2)
        Hphi[k, k] += g[i] * (2.0 * lam[i] / s2 ** 2)
    idx = list(free) + [k]
    Hf = Hphi[np.ix_(idx, idx)]
    D = np.append(lam[free] * s2, s2)  # judge definiteness on a scale-free version
    try:
        ev_ = np.linalg.eigvalsh(Hf * np.outer(D, D))
        if ev_.max() <= 0 or ev_.min() <= _HESS_TOL * ev_.max():
            return None
        out = np.full((k + 1, k + 1), np.nan)
        out[np.ix_(idx, idx)] = 2.0 * np.linalg.inv(Hf)
        return out
    except np.linalg.LinAlgError:
        return None
