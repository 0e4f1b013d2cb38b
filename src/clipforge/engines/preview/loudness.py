"""ITU-R BS.1770-4 integrated loudness (K-weighting, 400 ms blocks, absolute and relative gates), a true-peak
estimate by 4x oversampling, and normalisation to a target loudness under a peak ceiling."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, signal


def k_weighting(rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two biquads of BS.1770's K-weighting (high shelf, then RLB high-pass) at `rate` Hz."""
    g, q, fc = 3.999843853973347, 0.7071752369554196, 1681.974450955533
    k = math.tan(math.pi * fc / rate)
    vh = 10 ** (g / 20)
    vb = vh ** 0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = (np.array([(vh + vb * k / q + k * k) / a0, 2 * (k * k - vh) / a0, (vh - vb * k / q + k * k) / a0]),
             np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    q, fc = 0.5003270373238773, 38.13547087602444
    k = math.tan(math.pi * fc / rate)
    a0 = 1 + k / q + k * k
    highpass = (np.array([1.0, -2.0, 1.0]), np.array([1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]))
    return [shelf, highpass]


def integrated_loudness(audio: np.ndarray, rate: int = 48_000) -> float:
    """Integrated loudness in LUFS of `audio` (channels, samples); -inf for silence."""
    x = np.atleast_2d(np.asarray(audio, dtype=np.float64))
    for b, a in k_weighting(rate):
        x = signal.lfilter(b, a, x, axis=1)
    block, step = int(0.4 * rate), int(0.1 * rate)
    if x.shape[1] < block:
        z = np.mean(x ** 2, axis=1, keepdims=True)
    else:
        power = np.cumsum(np.concatenate([np.zeros((x.shape[0], 1)), x ** 2], axis=1), axis=1)
        starts = np.arange(0, x.shape[1] - block + 1, step)
        z = (power[:, starts + block] - power[:, starts]) / block  # (channels, blocks)
    total = z.sum(axis=0)  # channel weights are 1 for left/right
    with np.errstate(divide="ignore"):
        lj = -0.691 + 10 * np.log10(total)
    keep = lj > -70.0
    if not keep.any():
        return float("-inf")
    rel = -0.691 + 10 * np.log10(total[keep].mean()) - 10.0
    keep &= lj > rel
    return float(-0.691 + 10 * np.log10(total[keep].mean()))


def true_peak(audio: np.ndarray) -> float:
    """Peak magnitude of `audio` oversampled 4x (an estimate of the reconstructed, inter-sample peak)."""
    up = signal.resample_poly(np.atleast_2d(audio).astype(np.float64), 4, 1, axis=1)
    return float(max(np.abs(up).max(), np.abs(audio).max()))


def _true_level(audio: np.ndarray) -> np.ndarray:
    """Per sample, the largest magnitude of any channel at that sample or just after it, oversampled 4x."""
    x = np.atleast_2d(audio).astype(np.float64)
    up = np.abs(signal.resample_poly(x, 4, 1, axis=1)).max(axis=0)[:4 * x.shape[1]]
    return np.maximum(up.reshape(-1, 4).max(axis=1), np.abs(x).max(axis=0))


def limit(audio: np.ndarray, ceiling: float, rate: int = 48_000) -> np.ndarray:
    """A look-ahead true-peak limiter: gain drops ahead of peaks (5 ms) and recovers smoothly (50 ms), so
    nothing is clipped and the oversampled (inter-sample) peaks stay under `ceiling` as well."""
    gain = np.minimum(1.0, ceiling / np.maximum(_true_level(audio), 1e-9))
    win = max(1, int(0.005 * rate))
    gain = ndimage.minimum_filter1d(gain, size=2 * win + 1)
    gain = ndimage.uniform_filter1d(gain, size=win)  # smooth the attack; stays under the min-filtered gain's reach
    gain = np.minimum(gain, ndimage.minimum_filter1d(gain, size=2 * win + 1))
    release = signal.lfilter([1 - math.exp(-1 / (0.05 * rate))], [1, -math.exp(-1 / (0.05 * rate))],
                             gain - 1.0) + 1.0
    gain = np.minimum(gain, release)
    return (audio * gain[None, :]).astype(audio.dtype)


def normalise(audio: np.ndarray, target_lufs: float = -16.0, peak_dbfs: float = -2.0,
              rate: int = 48_000) -> np.ndarray:
    """`audio` at `target_lufs`, its true peak limited to `peak_dbfs`; never clipped.

    The default ceiling leaves headroom for the AAC encoder, whose decoded output overshoots its input's
    peaks (by up to about 1 dB on crackle and speech onsets)."""
    ceiling = 10 ** (peak_dbfs / 20)
    out = np.asarray(audio, dtype=np.float32)
    for _ in range(10):
        lufs = integrated_loudness(out, rate)
        if not math.isfinite(lufs):
            return out
        out = out * np.float32(10 ** ((target_lufs - lufs) / 20))
        if true_peak(out) <= ceiling:
            break
        out = limit(out, ceiling * 0.97, rate)
        if abs(integrated_loudness(out, rate) - target_lufs) < 0.2:
            break
    peak = true_peak(out)
    return (out * np.float32(min(1.0, ceiling / peak)) if peak > 0 else out).astype(np.float32)
