"""Noise-aware basics: finite masking, a robust noise scale, smoothing sized to the noise.

Every curve a doctor reads is noisy (mini-batch sampling, a small validation
set). Thresholds that ignore the noise fire on healthy runs, so the other
signals measure the noise first and judge changes against it.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_BLOCK_VALUES = 1 << 22  # window values a rolling median copies at once (32 MiB of floats)


def as_array(values) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


def median(values) -> float:
    """``np.median`` of a 1-D float array, number for number, without its overhead (a diagnosis takes hundreds).

    The same partition (the same ``kth``, so the same middle elements, zeros'
    signs included), the same mean of the middle one or two, NaN when a NaN is
    present. Anything but a non-empty 1-D float64 array goes to ``np.median``.
    """
    a = np.asarray(values)
    n = a.size
    if n == 0 or a.ndim != 1 or a.dtype != np.float64:
        return np.median(a)
    half = n // 2
    # numpy's mean adds from 0.0 (so a middle -0.0 comes back as 0.0), then divides by the count
    if n % 2:
        part = np.partition(a, [half, -1])
        middle = (0.0 + part[half]) / 1
    else:
        part = np.partition(a, [half - 1, half, -1])
        middle = ((0.0 + part[half - 1]) + part[half]) / 2
    return np.float64(np.nan) if np.isnan(part[-1]) else middle


def finite_xy(x, values) -> tuple[np.ndarray, np.ndarray]:
    """The points of a curve whose value is finite (NaN/inf are evidence for other signals)."""
    x, v = as_array(x), as_array(values)
    mask = np.isfinite(v) & np.isfinite(x)
    return x[mask], v[mask]


def mad(values) -> float:
    """Median absolute deviation, scaled to a standard deviation under normal noise."""
    v = as_array(values)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 0.0
    return float(_MAD_TO_SIGMA * median(np.abs(v - median(v))))


def noise_scale(values) -> float:
    """Robust standard deviation of the point-to-point noise of a curve.

    Uses second differences, which cancel any locally linear trend, so a steep
    but smooth decline is not mistaken for noise: for white noise of standard
    deviation s the second difference has standard deviation s*sqrt(6).
    Returns 0.0 for fewer than four finite points.
    """
    v = as_array(values)
    v = v[np.isfinite(v)]
    if v.size < 4:
        return 0.0
    if v.size <= SMALL:
        return _noise_scale_small(v.tolist())
    second = np.diff(v, n=2)
    return float(mad(second) / np.sqrt(6.0))


# --- the same numbers for short curves, in plain floats ------------------------------------
#
# A diagnosis measures the noise of a few dozen curves of a few dozen points
# each; on arrays that short numpy's per-call cost is most of the time. For
# curves of at most SMALL points the functions above take these paths: the
# same IEEE operations on the same values in the same order (differences,
# order statistics, the mean of the middle two from 0.0, the percentile
# interpolation), so the results are the same bits. ``tests/signals/test_noise.py``
# compares them with the numpy paths.

SMALL = 256
_SQRT6 = float(np.sqrt(6.0))


def _median_sorted(s: list[float]) -> float:
    """:func:`median` of a sorted list of finite floats (the middle one, or the mean of the middle two from 0.0)."""
    half = len(s) // 2
    if len(s) % 2:
        return (0.0 + s[half]) / 1
    return ((0.0 + s[half - 1]) + s[half]) / 2


def _noise_scale_small(v: list[float]) -> float:
    """:func:`noise_scale` of at least four finite floats: the MAD of the second differences over sqrt(6)."""
    first = [b - a for a, b in zip(v, v[1:])]
    second = [b - a for a, b in zip(first, first[1:])]
    second = [d for d in second if math.isfinite(d)]  # huge values can overflow to inf: mad() drops those
    if not second:
        return 0.0
    centre = _median_sorted(sorted(second))
    spread = _median_sorted(sorted(abs(d - centre) for d in second))
    return float(_MAD_TO_SIGMA * spread / _SQRT6)


_SPREAD_QF = tuple(float(q) for q in np.true_divide([95, 5], 100))


def _spread_small(s: list[float]) -> float:
    """:func:`spread_5_95` of a sorted list of at least two finite floats (numpy's "linear" percentiles)."""
    n = len(s)
    out = []
    for q in _SPREAD_QF:
        virtual = (n - 1) * q
        if virtual >= n - 1:
            out.append(s[-1])
            continue
        below = math.floor(virtual)
        a, b = s[below], s[below + 1]
        gamma = virtual - below
        diff = b - a
        out.append(b - diff * (1 - gamma) if gamma >= 0.5 else a + diff * gamma)
    return float(out[0] - out[1])


_SPREAD_Q = np.true_divide([95, 5], 100)


def spread_5_95(values) -> float:
    """``np.percentile(v, 95) - np.percentile(v, 5)`` of a 1-D float array, number for number, at a fraction of the cost.

    numpy's "linear" method step by step (the same partition, the same
    interpolation); an array holding NaN goes to numpy itself.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n = v.size
    if n < 2:
        return float(np.percentile(v, 95) - np.percentile(v, 5))
    virtual = (n - 1) * _SPREAD_Q
    previous = np.floor(virtual)
    following = previous + 1
    above = virtual >= n - 1
    previous[above] = -1
    following[above] = -1
    previous, following = previous.astype(np.intp), following.astype(np.intp)
    part = v.copy()
    part.partition(np.unique(np.concatenate(([0, -1], previous, following))))
    if np.isnan(part[-1]):
        return float(np.percentile(v, 95) - np.percentile(v, 5))
    a, b = part[previous], part[following]
    gamma = virtual - previous
    diff = b - a
    result = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5)
    return float(result[0] - result[1])


def smoothing_window(values) -> int:
    """An odd Savitzky-Golay window that grows with the noise-to-signal ratio.

    1 means "leave the curve as it is" (too short, constant or noiseless).
    """
    v = as_array(values)
    v = v[np.isfinite(v)]
    n = v.size
    if n < 5:
        return 1
    if n <= SMALL:
        listed = v.tolist()
        sigma = _noise_scale_small(listed)
        spread = _spread_small(sorted(listed))
    else:
        sigma = noise_scale(v)
        spread = spread_5_95(v)
    if sigma <= 0.0 or spread <= 0.0:
        return 1
    ratio = sigma / spread
    window = int(round(5 + 40 * ratio))
    largest = n if n % 2 else n - 1
    largest = min(largest, max(5, (n // 2) | 1))
    window = max(5, min(window, largest))
    return window | 1 if window % 2 == 0 else window


def smooth(values) -> np.ndarray:
    """Savitzky-Golay smoothing (quadratic) with a window sized to the curve's noise.

    Non-finite points stay where they are and are left out of the fit. The
    result is affine-equivariant (smooth(a*v + b) == a*smooth(v) + b) and never
    turns finite input into NaN: should the filter overflow, the input is
    returned unchanged.
    """
    v = as_array(values)
    out = v.copy()
    mask = np.isfinite(v)
    finite = v[mask]
    window = smoothing_window(finite)
    if window <= 1:
        return out
    with np.errstate(all="ignore"):
        fitted = savgol_interp(finite, window)
    if not np.all(np.isfinite(fitted)):
        return out
    out[mask] = fitted
    return out


def savgol_interp(values: np.ndarray, window: int) -> np.ndarray:
    """``scipy.signal.savgol_filter(values, window, 2, mode="interp")`` on a 1-D float array, number for number.

    The same steps as scipy's (``convolve1d`` with the filter's coefficients
    inside, a least-squares quadratic through the first and last ``window``
    points at the ends, by the same LAPACK routine with the same arguments),
    with everything that depends only on ``window`` (the coefficients, the
    scaled Vandermonde matrix, LAPACK's work sizes) computed once per window
    size instead of once per call: a fraction of the cost on the short curves
    a diagnosis smooths, and no import of ``scipy.signal``.
    ``tests/signals/test_noise.py`` checks that the result is bit-identical
    to scipy's.
    """
    from scipy.ndimage import convolve1d

    v = np.asarray(values, dtype=np.float64)
    n, half = v.size, window // 2
    if window > n:
        raise ValueError(f"window {window} is longer than the curve ({n} points)")
    plan = _savgol_plan(window)
    out = convolve1d(v, plan.coeffs, mode="constant")
    for start, at, span in ((0, plan.left, slice(0, half)), (n - window, plan.right, slice(n - half, n))):
        fit = plan.solve(v[start : start + window].reshape(window, 1))
        fit = (fit.T / plan.scale).T
        edge = np.zeros_like(at)
        for j in range(fit.shape[0]):  # Horner, as scipy's polyval
            edge = edge * at + fit[j, ...]
        out[span] = edge.reshape(half)
    return out


class _SavgolPlan:
    """What a quadratic Savitzky-Golay filter of ``window`` points needs besides the data (a pure function of ``window``).

    ``solve(b)`` is ``scipy.linalg.lstsq(lhs, b, cond=rcond)[0]`` (the
    least-squares fit scipy's ``polyfit`` makes), calling LAPACK's ``gelsd``
    directly with the work sizes ``lstsq`` would compute; where scipy's
    private helper for those sizes is missing, ``lstsq`` itself.
    """

    def __init__(self, window: int) -> None:
        from scipy.linalg import lapack

        self.coeffs = _savgol_coeffs(window)
        x = np.arange(0, window, dtype=np.float64)
        powers = np.flip(np.arange(3, dtype=np.float64))
        lhs = x[:, None] ** powers[None, :]
        self.scale = np.sqrt(np.sum(lhs * lhs, axis=0))
        lhs /= self.scale
        self.lhs = lhs
        self.rcond = x.shape[0] * np.finfo(np.float64).eps  # as scipy's polyfit sets it
        half = window // 2
        self.left = np.arange(0, half, dtype=np.float64).reshape(-1, 1)
        self.right = np.arange(window - half, window, dtype=np.float64).reshape(-1, 1)
        for array in (self.coeffs, self.scale, self.lhs, self.left, self.right):
            array.setflags(write=False)  # shared by every call: nobody may change them
        self._gelsd = self._work = None
        compute_lwork = getattr(lapack, "_compute_lwork", None)
        if compute_lwork is not None:
            gelsd, gelsd_lwork = lapack.get_lapack_funcs(("gelsd", "gelsd_lwork"), (lhs, lhs[:, :1]))
            self._gelsd, self._work = gelsd, compute_lwork(gelsd_lwork, window, 3, 1, self.rcond)

    def solve(self, b: np.ndarray) -> np.ndarray:
        if self._gelsd is None:
            from scipy.linalg import lstsq

            return lstsq(self.lhs, b, cond=self.rcond, check_finite=False)[0]
        lwork, iwork = self._work
        x, _, _, info = self._gelsd(self.lhs, b, lwork, iwork, self.rcond, False, False)
        if info != 0:  # what lstsq would raise, in its words
            from scipy.linalg import lstsq

            return lstsq(self.lhs, b, cond=self.rcond, check_finite=False)[0]
        return x[:3]


@functools.lru_cache(maxsize=256)
def _savgol_plan(window: int) -> _SavgolPlan:
    return _SavgolPlan(window)


def _savgol_coeffs(window: int) -> np.ndarray:
    """``scipy.signal.savgol_coeffs(window, 2)`` (odd ``window``), by scipy's own steps without importing ``scipy.signal``."""
    from scipy.linalg import lstsq

    pos = window // 2
    x = np.flip(np.arange(-pos, window - pos, dtype=np.float64))
    order = np.reshape(np.arange(3, dtype=np.float64), (-1, 1))
    a = x**order
    y = np.zeros(3, dtype=np.float64)
    y[0] = 1.0
    return lstsq(a, y, cond=np.finfo(np.float64).eps * max(a.shape))[0]


def rolling_median(values, half_width: int) -> np.ndarray:
    """Centered rolling median over ``2 * half_width + 1`` points; the window shrinks symmetrically at the ends."""
    from numpy.lib.stride_tricks import sliding_window_view

    v = as_array(values)
    n = v.size
    out = np.empty(n)
    h = max(int(half_width), 0)
    width = 2 * h + 1
    if h > 0 and n >= width:
        windows = sliding_window_view(v, width)
        rows = max(1, _BLOCK_VALUES // width)  # medians of a block of windows at a time: memory bounded on long curves
        for start in range(0, windows.shape[0], rows):
            block = windows[start : start + rows]
            out[h + start : h + start + block.shape[0]] = np.median(block, axis=1)
        edges = [*range(h), *range(n - h, n)]
    else:
        edges = list(range(n))
    for i in edges:
        k = min(h, i, n - 1 - i)
        out[i] = median(v[i - k : i + k + 1])
    return out
