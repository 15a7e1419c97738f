"""Noise-aware basics: finite masking, a robust noise scale, smoothing sized to the noise.

Every curve a doctor reads is noisy (mini-batch sampling, a small validation
set). Thresholds that ignore the noise fire on healthy runs, so the other
signals measure the noise first and judge changes against it.
"""

from __future__ import annotations

import numpy as np

_MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution times this is its standard deviation
_BLOCK_VALUES = 1 << 22  # window values a rolling median copies at once (32 MiB of floats)


def as_array(values) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)


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
    return float(_MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


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
    second = np.diff(v, n=2)
    return float(mad(second) / np.sqrt(6.0))


def smoothing_window(values) -> int:
    """An odd Savitzky-Golay window that grows with the noise-to-signal ratio.

    1 means "leave the curve as it is" (too short, constant or noiseless).
    """
    v = as_array(values)
    v = v[np.isfinite(v)]
    n = v.size
    if n < 5:
        return 1
    sigma = noise_scale(v)
    spread = float(np.percentile(v, 95) - np.percentile(v, 5))
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
    from scipy.signal import savgol_filter

    with np.errstate(all="ignore"):
        fitted = savgol_filter(finite, window, polyorder=2, mode="interp")
    if not np.all(np.isfinite(fitted)):
        return out
    out[mask] = fitted
    return out


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
        out[i] = np.median(v[i - k : i + k + 1])
    return out
