"""The fitted pizza/clock phase boundary in the plane (attention rate alpha, log2 width).

The paper's phase diagrams (Zhong et al. 2023, "The Clock and the Pizza") plot which circular
algorithm a transformer learns against its attention rate alpha -- alpha = 0 is constant (uniform)
attention, alpha = 1 is standard attention -- and its width: low alpha gives pizza, high alpha
gives clock, and runs whose embeddings are not circular are filtered out before the phases are
compared. This module turns that picture into numbers a DVC metric can track: a logistic
regression

    P(pizza | alpha, w) = sigmoid(b0 + b_alpha * alpha + b_width * log2 w),

whose 50 % line alpha*(w) = -(b0 + b_width * log2 w) / b_alpha is the transition attention rate,
with a percentile-bootstrap band over resampled seeds.

Runs of one (width, seed) group start from the same initial weights (unless
``model.init_per_run``), so they are not independent draws: the bootstrap resamples those groups
as clusters, within each width, not single runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from clockpizza.results.selection import CLOCK, NON_CIRCULAR, PHASES, PIZZA, main_runs

REQUIRED_COLUMNS = ("attn_rate", "width", "phase")

# Newton on a strictly convex objective converges quadratically once close; on a perfectly
# separated grid the early steps are slow (the coefficients grow until the L2 term bites), so
# the cap is generous. The tolerance is on half the squared Newton decrement, i.e. an estimate
# of how far the objective is above its minimum.
_MAX_NEWTON_ITER = 200
_NEWTON_TOL = 1e-12

# A band built from fewer than half the requested draws would describe the resamples that
# happened to contain both phases, not the data: report NaN instead.
_MIN_BOOT_FRACTION = 0.5

SUMMARY_KEYS = (
    "intercept",
    "coef_attn_rate",
    "coef_log2_width",
    "transition_attn_rate",
    "transition_attn_rate_lo",
    "transition_attn_rate_hi",
    "n_runs",
)


@dataclass(frozen=True)
class Boundary:
    """A fitted phase boundary, P(pizza) = sigmoid(b0 + b_alpha*alpha + b_width*log2 width).

    Coefficients are on the original scale (alpha in [0, 1], width in log2 units), whatever
    standardisation the fit used internally. ``boot_coefs`` holds one ``(b0, b_alpha, b_width)``
    triple per bootstrap draw that could be fitted; it is a tuple, not an array, so that the
    dataclass stays immutable and two fits compare equal exactly when every float is equal.
    """

    intercept: float
    coef_attn_rate: float
    # 0.0 when the runs span a single width: the slope is then not identifiable and not fitted,
    # so the boundary is the same alpha* at every width (an assumption, not a finding).
    coef_log2_width: float
    n_runs: int
    fits_width: bool
    n_boot: int
    n_boot_skipped: int
    boot_coefs: tuple[tuple[float, float, float], ...]

    def transition_attn_rate(self, width: float) -> float:
        """alpha*(width): the attention rate at which P(pizza) = 1/2 for models of this width.

        May fall outside [0, 1] (the line is extrapolated); NaN when b_alpha == 0, since then
        the attention rate does not move the prediction and there is no crossing.
        """
        if width <= 0:
            raise ValueError(f"width = {width!r}: must be positive")
        if self.coef_attn_rate == 0.0:
            return math.nan
        return -(self.intercept + self.coef_log2_width * math.log2(width)) / self.coef_attn_rate

    def boot_draws(self) -> np.ndarray:
        """The bootstrap coefficients as a [draw, 3] array, columns (b0, b_alpha, b_width)."""
        return np.asarray(self.boot_coefs, dtype=np.float64).reshape(-1, 3)

    def band(self, widths: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Percentile-bootstrap interval of alpha*(w) at each width, as ``(lo, hi)``.

        The interval runs between the (1 - level)/2 and (1 + level)/2 quantiles of alpha*(w)
        over the bootstrap draws (the percentile bootstrap; Efron & Tibshirani 1993, ch. 13).
        Both arrays have the shape of ``widths`` and are all NaN when more than half the
        requested draws were skipped (or none were requested).
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level = {level!r}: must be in (0, 1)")
        w = np.asarray(widths, dtype=np.float64)
        if np.any(~(w > 0)):
            raise ValueError("widths must all be positive")
        nan = np.full(w.shape, np.nan)
        draws = self.boot_draws()
        if self.n_boot == 0 or len(draws) < _MIN_BOOT_FRACTION * self.n_boot:
            return nan, nan.copy()
        b0, b_alpha, b_width = draws[:, 0:1], draws[:, 1:2], draws[:, 2:3]  # [draw, 1] each
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha_star = -(b0 + b_width * np.log2(w.reshape(1, -1))) / b_alpha  # [draw, width]
        # A draw with b_alpha == 0 has no crossing; drop it rather than let inf into the quantile.
        alpha_star = np.where(b_alpha == 0.0, np.nan, alpha_star)
        q = 100.0 * np.array([(1.0 - level) / 2.0, (1.0 + level) / 2.0])
        lo, hi = np.nanpercentile(alpha_star, q, axis=0)  # [width] each
        return lo.reshape(w.shape), hi.reshape(w.shape)


def _select_runs(
    runs: pd.DataFrame,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pizza and clock runs with an attention rate, as (alpha, log2 width, y=1 for pizza,
    cluster): the cluster is the run's (width, seed) group, whose runs share their initial
    weights, or the run itself where it drew its own (``init_per_run``) or no seed is given."""
    for col in REQUIRED_COLUMNS:
        if col not in runs.columns:
            raise ValueError(
                f"runs table has no column {col!r}; the boundary needs {list(REQUIRED_COLUMNS)}"
            )
    # Attention-free models (the MLPs) have no attention rate and no place on this axis.
    keep = list(REQUIRED_COLUMNS) + [c for c in ("seed", "init_per_run") if c in runs.columns]
    rows = runs.loc[runs["attn_rate"].notna(), keep]
    unknown = sorted({repr(p) for p in rows["phase"] if p not in PHASES})
    if unknown:
        # A typo or a missing label would otherwise silently shrink the sample.
        raise ValueError(f"unknown phase labels {', '.join(unknown)}; expected one of {PHASES}")
    # Paper choice: only circular runs are compared, so non-circular ones are dropped, not
    # counted as clock.
    rows = rows[rows["phase"] != NON_CIRCULAR]
    alpha = rows["attn_rate"].to_numpy(dtype=np.float64)
    width = rows["width"].to_numpy(dtype=np.float64)
    if np.any(~(width > 0)):
        raise ValueError("column 'width' must be positive for every run with an attention rate")
    y = (rows["phase"] == PIZZA).to_numpy(dtype=np.float64)
    own = rows["init_per_run"].fillna(False).astype(bool).to_numpy() \
        if "init_per_run" in rows.columns else np.zeros(len(rows), dtype=bool)
    if "seed" in rows.columns:
        group = [f"w{w:g}-s{s}" for w, s in zip(width, rows["seed"], strict=True)]
    else:
        group = [f"run{i}" for i in range(len(rows))]
    cluster = np.array([f"run{i}" if o else g for i, (g, o) in enumerate(zip(group, own,
                                                                             strict=True))])
    return alpha, np.log2(width), y, cluster


def cluster_resample(log2w: np.ndarray, cluster: np.ndarray,
                     rng: np.random.Generator) -> np.ndarray:
    """Row indices of one bootstrap resample: at every width, its clusters drawn with
    replacement (as many as it has), each bringing all of its rows."""
    out: list[np.ndarray] = []
    for w in np.unique(log2w):
        at_w = np.flatnonzero(log2w == w)
        names, inverse = np.unique(cluster[at_w], return_inverse=True)
        members = [at_w[inverse == k] for k in range(len(names))]
        for k in rng.integers(0, len(names), size=len(names)):
            out.append(members[k])
    return np.concatenate(out)


def _sigmoid(eta: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warning for large |eta|, unlike 1 / (1 + exp(-eta)).
    return 0.5 * (1.0 + np.tanh(0.5 * eta))


def _penalised_nll(design: np.ndarray, y: np.ndarray, beta: np.ndarray, pen: np.ndarray) -> float:
    eta = design @ beta  # [run]
    return float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * np.sum(pen * beta**2))


def _newton(design: np.ndarray, y: np.ndarray, pen: np.ndarray) -> np.ndarray:
    """Minimise the ridge-penalised logistic negative log-likelihood by damped Newton (IRLS).

    ``pen`` is the per-coefficient L2 weight (0 for the intercept). With at least one run of
    each class and a positive weight on every slope the objective is strictly convex with a
    finite minimiser, so backtracking Newton converges from zero.
    """
    beta = np.zeros(design.shape[1])
    obj = _penalised_nll(design, y, beta, pen)
    for _ in range(_MAX_NEWTON_ITER):
        eta = design @ beta  # [run]
        # Residual mu - y written per class so it keeps its digits when mu is within 1e-16 of y.
        resid = np.where(y == 1.0, -_sigmoid(-eta), _sigmoid(eta))
        # mu (1 - mu) as a product of two sigmoids: stays positive where 1 - mu would round to 0.
        weight = _sigmoid(eta) * _sigmoid(-eta)
        grad = design.T @ resid + pen * beta  # [coef]
        hess = design.T @ (design * weight[:, None]) + np.diag(pen)  # [coef, coef]
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if 0.5 * decrement < _NEWTON_TOL:
            break
        t = 1.0
        while True:
            candidate = beta - t * step
            cand_obj = _penalised_nll(design, y, candidate, pen)
            if cand_obj <= obj - 0.25 * t * decrement or t < 1e-12:
                break
            t *= 0.5
        if t < 1e-12:
            # No descent left at float precision: we are at the minimum up to rounding.
            break
        beta, obj = candidate, cand_obj
    return beta


def _fit_coefs(
    alpha: np.ndarray, log2w: np.ndarray, y: np.ndarray, *, fit_width: bool, l2: float
) -> tuple[float, float, float] | None:
    """(b0, b_alpha, b_width) on the original scale, or None for a degenerate sample.

    Degenerate: a single class, a single attention rate, or (when the width slope is fitted)
    a single width.
    """
    n_pizza = int(y.sum())
    if n_pizza == 0 or n_pizza == len(y):
        return None
    feats = [alpha, log2w] if fit_width else [alpha]
    raw = np.column_stack(feats)  # [run, feature]
    mean, sd = raw.mean(axis=0), raw.std(axis=0)
    if np.any(sd == 0.0):
        return None
    # Standardised features: alpha spans ~1 and log2 width ~4, and a separated grid drives the
    # coefficients to tens or hundreds; on a common unit scale the Hessian stays well conditioned
    # and one L2 weight means the same thing for both slopes.
    design = np.column_stack([np.ones(len(y)), (raw - mean) / sd])  # [run, 1 + feature]
    pen = np.full(design.shape[1], l2)
    pen[0] = 0.0  # the intercept only sets the base rate; shrinking it would bias alpha*
    c = _newton(design, y, pen)
    slopes = c[1:] / sd
    b0 = float(c[0] - np.sum(slopes * mean))
    b_alpha = float(slopes[0])
    b_width = float(slopes[1]) if fit_width else 0.0
    return b0, b_alpha, b_width


def fit_boundary(
    runs: pd.DataFrame, *, n_boot: int = 200, seed: int = 0, l2: float = 1e-3
) -> Boundary | None:
    """Fit the pizza/clock boundary P(pizza) = sigmoid(b0 + b_alpha*alpha + b_width*log2 width).

    Rows with a NaN ``attn_rate`` (attention-free models) and rows whose ``phase`` is
    ``"non-circular"`` are dropped, as the paper filters non-circular runs before comparing
    phases; every remaining row must be ``"pizza"`` (y = 1) or ``"clock"`` (y = 0).

    The fit maximises the log-likelihood minus ``l2/2 * ||slopes||^2``, the slopes measured on
    standardised features (the intercept is not penalised). On a clean grid the two phases are
    usually perfectly separated and the unpenalised maximum-likelihood slopes are infinite; the
    small penalty keeps them finite, and as ``l2 -> 0`` the 50 % line tends to the
    maximum-margin separator, which sits midway between the phases. The default 1e-3 is a
    Gaussian prior with standard deviation ~32 per standard deviation of a feature: weak enough
    that a known boundary is recovered (see tests), strong enough to stop the divergence.

    When the runs span a single width the width slope is not identifiable: it is not fitted and
    ``coef_log2_width`` is 0.0.

    Bootstrap: ``n_boot`` cluster resamples (:func:`cluster_resample`: at each width the
    (width, seed) groups, drawn with replacement, each with all of its runs, since the runs of
    a group share their initial weights; runs with their own initial weights are their own
    clusters), drawn from ``np.random.default_rng(seed)`` and each refitted the same way. A
    resample that holds a single class (or a single attention rate or width where the full
    fit has several) has no boundary; it is skipped and counted in ``n_boot_skipped``. The
    result is a deterministic function of ``runs``, ``n_boot``, ``seed`` and ``l2``.

    Returns None, rather than raising, when there is no boundary to fit: fewer than 2 pizza or
    fewer than 2 clock runs, or all runs at a single attention rate. Raises ValueError when a
    required column (``attn_rate``, ``width``, ``phase``) is missing, a phase label is unknown,
    or a width is not positive.
    """
    if l2 <= 0 or not math.isfinite(l2):
        raise ValueError(f"l2 = {l2!r}: must be a positive finite number")
    if n_boot < 0:
        raise ValueError(f"n_boot = {n_boot!r}: must be >= 0")
    alpha, log2w, y, cluster = _select_runs(runs)
    n_pizza = int(y.sum())
    if n_pizza < 2 or len(y) - n_pizza < 2 or np.unique(alpha).size < 2:
        return None
    fit_width = np.unique(log2w).size > 1
    point = _fit_coefs(alpha, log2w, y, fit_width=fit_width, l2=l2)
    if point is None:  # unreachable after the checks above; keeps the type checker honest
        return None

    rng = np.random.default_rng(seed)
    n = len(y)
    draws: list[tuple[float, float, float]] = []
    for _ in range(n_boot):
        idx = cluster_resample(log2w, cluster, rng)  # [run]
        coefs = _fit_coefs(alpha[idx], log2w[idx], y[idx], fit_width=fit_width, l2=l2)
        if coefs is not None:
            draws.append(coefs)

    return Boundary(
        intercept=point[0],
        coef_attn_rate=point[1],
        coef_log2_width=point[2],
        n_runs=n,
        fits_width=fit_width,
        n_boot=n_boot,
        n_boot_skipped=n_boot - len(draws),
        boot_coefs=tuple(draws),
    )


def _metric(x: float) -> float | None:
    # JSON has no NaN or inf; a metric that does not exist is null, which DVC shows as "-".
    return round(float(x), 6) if math.isfinite(x) else None


def boundary_summary(b: Boundary | None, default_width: int) -> dict[str, float | None]:
    """The boundary as a flat dict of plain Python numbers, for a DVC metrics JSON file.

    Keys are :data:`SUMMARY_KEYS`: the three coefficients, alpha* at ``default_width`` with its
    95 % bootstrap band (``_lo``/``_hi``), and ``n_runs`` (an int). Floats are rounded to 6
    decimals; non-finite values (no crossing, too few bootstrap draws) become None, and every
    value is None when ``b`` is None.
    """
    if b is None:
        return dict.fromkeys(SUMMARY_KEYS)
    lo, hi = b.band(np.array([float(default_width)]), level=0.95)
    return {
        "intercept": _metric(b.intercept),
        "coef_attn_rate": _metric(b.coef_attn_rate),
        "coef_log2_width": _metric(b.coef_log2_width),
        "transition_attn_rate": _metric(b.transition_attn_rate(default_width)),
        "transition_attn_rate_lo": _metric(float(lo[0])),
        "transition_attn_rate_hi": _metric(float(hi[0])),
        "n_runs": b.n_runs,
    }


# --------------------------------------------------------------------------------------------
# The boundary of the paper's main setting, as figure 2, the report and summary.json use it.


def fit_main(runs: pd.DataFrame, *, n_boot: int = 200, boot_seed: int = 0) -> Boundary | None:
    """The boundary of the paper's figure 2: 1-layer transformers without ablations only.

    Other depths, the ablations and the attention-free family have their own phase diagrams
    (appendix) and would blur this one; a table without those axes is all main runs.
    """
    return fit_boundary(main_runs(runs), n_boot=n_boot, seed=boot_seed)


def boundary_to_json(b: Boundary | None) -> dict[str, Any]:
    """The fit as plain JSON (every float exactly: JSON keeps Python's shortest repr), so the
    stage that fits it saves it once and every reader gets the same object back; ``{"fitted":
    false}`` when there is no boundary."""
    if b is None:
        return {"fitted": False}
    return {"fitted": True, **asdict(b), "boot_coefs": [list(c) for c in b.boot_coefs]}


def boundary_from_json(d: dict[str, Any]) -> Boundary | None:
    """The inverse of :func:`boundary_to_json`."""
    if not d.get("fitted"):
        return None
    fields = {k: v for k, v in d.items() if k != "fitted"}
    fields["boot_coefs"] = tuple(tuple(float(x) for x in c) for c in fields["boot_coefs"])
    return Boundary(**fields)


def why_no_boundary(runs: pd.DataFrame) -> str:
    """Why :func:`fit_boundary` finds no boundary in ``runs`` (the same tests, in words)."""
    alpha, _, y, _ = _select_runs(runs)
    n_pizza, n_clock = int(y.sum()), int(len(y) - y.sum())
    if n_pizza < 2 or n_clock < 2:
        return (f"the circular runs are {n_pizza} pizza and {n_clock} clock; a boundary needs at "
                "least 2 of each")
    if np.unique(alpha).size < 2:
        return f"every circular run has the same attention rate ({alpha[0]:g})"
    return "the fit has a boundary"


def boundary_block(runs: pd.DataFrame, width: int,
                   b: Boundary | None) -> dict[str, float | int | bool | None]:
    """The ``boundary`` block of metrics/summary.json: ``b``, the fit of :func:`fit_main` on
    ``runs``.

    The keys of :func:`boundary_summary` (coefficients, alpha* at ``width`` with its 95 % band,
    ``n_runs``), plus

    - ``width``: where alpha* is read off the line. Exactly ``width`` (render.fig1_width, the
      paper's 128), not the nearest grid width, so that the same key means the same quantity in
      experiments with different width grids;
    - ``extrapolated``: whether ``width`` lies outside the widths the line was fitted on (a
      one-width fit is extrapolated to every other width by assuming the line is vertical);
    - ``alpha_shift_per_doubling``: how far alpha* moves when the width doubles,
      ``-b_width / b_alpha`` (paper: positive, wider models stay pizza to a higher alpha);
      null when the runs span one width and that slope was not fitted.

    Every value but ``width`` is null when there is no boundary to fit. No NaN reaches JSON.
    """
    main = main_runs(runs)
    out: dict[str, float | int | bool | None] = {**boundary_summary(b, width), "width": width,
                                                 "extrapolated": None,
                                                 "alpha_shift_per_doubling": None}
    if b is None:
        return out
    fitted = main.loc[main["phase"].isin((PIZZA, CLOCK)), "width"]
    out["extrapolated"] = bool(width < fitted.min() or width > fitted.max())
    if b.fits_width and b.coef_attn_rate != 0.0:
        out["alpha_shift_per_doubling"] = _metric(-b.coef_log2_width / b.coef_attn_rate)
    return out
