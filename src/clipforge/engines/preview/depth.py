"""Weight-free depth layers: a foreground subject cut out of the picture and a background plate with the
subject inpainted away, plus the regions ambient motion may live in (sky, water, fire).

Everything is estimated once per clip on a small proxy (long side `PROXY`) from classic cues: spectral-residual
saliency, edge density, a centre prior, the ground-plane prior (lower is nearer) and a sky test (bright, smooth,
touching the top edge). GrabCut turns the cue map into a clean subject mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PROXY = 320


@dataclass
class Layers:
    """Full-resolution layers of one picture (H x W)."""

    image: np.ndarray  # uint8 RGB, the picture
    plate: np.ndarray  # uint8 RGB, the picture with the subject inpainted away
    alpha: np.ndarray  # float32 0..1, the subject's matte
    box: tuple[int, int, int, int]  # subject bounding box x0, y0, x1, y1 (empty when no subject)
    pivot: tuple[float, float]  # where the subject is (push-ins aim here)
    sky: np.ndarray  # float32 0..1 proxy-resolution masks of plausible regions
    water: np.ndarray
    fire: np.ndarray
    depth: np.ndarray  # float32 0..1 proxy-resolution cue map (1 = near)

    @property
    def has_subject(self) -> bool:
        return self.box[2] > self.box[0] and self.box[3] > self.box[1]


def spectral_saliency(gray: np.ndarray) -> np.ndarray:
    """Hou & Zhang's spectral residual saliency, 0..1, at the size of `gray`."""
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    spec = np.fft.fft2(small)
    log_amp = np.log(np.abs(spec) + 1e-6).astype(np.float32)
    residual = log_amp - cv2.blur(log_amp, (3, 3))
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(spec)))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), 2.5)
    sal = cv2.resize(sal, (gray.shape[1], gray.shape[0]), interpolation=cv2.INTER_LINEAR)
    return _norm(sal)


def colour_saliency(rgb: np.ndarray) -> np.ndarray:
    """Achanta's frequency-tuned saliency: how far each (blurred) pixel's Lab colour is from the picture's mean."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    blur = cv2.GaussianBlur(lab, (0, 0), max(1.0, rgb.shape[1] / 160))
    d = np.linalg.norm(blur - lab.reshape(-1, 3).mean(0), axis=2)
    return _norm(cv2.GaussianBlur(d, (0, 0), max(1.0, rgb.shape[1] / 80)))


def _norm(a: np.ndarray) -> np.ndarray:
    lo, hi = float(np.percentile(a, 1)), float(np.percentile(a, 99))
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)


def region_masks(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(sky, water, fire, texture) masks 0..1 on a proxy RGB picture."""
    h, w = rgb.shape[:2]
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hue, sat, val = hsv[..., 0] * (360 / 256), hsv[..., 1] / 255, hsv[..., 2] / 255
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255
    texture = _norm(cv2.blur(np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=3)), (9, 9)))
    ys = np.linspace(0, 1, h, dtype=np.float32)[:, None] * np.ones((1, w), np.float32)
    # sky: smooth, fairly bright or blue, high in the frame, connected to the top edge
    skyish = ((texture < 0.25) & ((val > 0.45) | ((hue > 180) & (hue < 260) & (sat > 0.15))) & (ys < 0.75))
    skyish = skyish.astype(np.uint8)
    n, labels = cv2.connectedComponents(skyish, connectivity=4)
    top = set(np.unique(labels[0, :]).tolist()) - {0}
    sky = np.isin(labels, list(top)).astype(np.float32) if top else np.zeros((h, w), np.float32)
    # water: lower half, blue/cyan or a mirror of the sky's colour, not too textured
    blue = (hue > 160) & (hue < 250) & (sat > 0.12)
    water = (blue & (ys > 0.4)).astype(np.float32) * (1 - sky)
    # fire: bright and warm
    fire = (((hue < 55) | (hue > 340)) & (sat > 0.45) & (val > 0.6)).astype(np.float32)
    soft = (lambda m: cv2.GaussianBlur(m, (0, 0), max(1.0, w / 160)))  # noqa: E731
    return soft(sky), soft(water), soft(fire), texture


def _subject_mask(rgb: np.ndarray, cue: np.ndarray, sky: np.ndarray) -> np.ndarray:
    """A binary subject mask on the proxy via GrabCut seeded from the cue map; empty if nothing stands out."""
    h, w = cue.shape
    hi, lo = np.quantile(cue, 0.82), np.quantile(cue, 0.45)
    init = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    init[cue >= hi] = cv2.GC_PR_FGD
    init[cue <= lo] = cv2.GC_BGD
    init[(sky > 0.5) & (init != cv2.GC_BGD)] = cv2.GC_PR_BGD
    init[:2, :] = cv2.GC_BGD
    if not (init == cv2.GC_PR_FGD).any() or not (init == cv2.GC_BGD).any():
        return np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(1234)
    try:
        cv2.grabCut(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), init, None, bgd, fgd, 3, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return np.zeros((h, w), np.uint8)
    mask = ((init == cv2.GC_FGD) | (init == cv2.GC_PR_FGD)).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 1:
        return np.zeros((h, w), np.uint8)
    # keep the components that carry most of the cue, drop specks
    scores = [(float(cue[labels == k].sum()), k) for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] > 0.004 * h * w]
    if not scores:
        return np.zeros((h, w), np.uint8)
    scores.sort(reverse=True)
    keep = [k for s, k in scores if s >= 0.25 * scores[0][0]][:3]
    mask = np.isin(labels, keep).astype(np.uint8)
    cnts, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(mask, cnts, -1, 1, thickness=cv2.FILLED)  # fill holes
    area = mask.mean()
    touches = int(mask[0].any()) + int(mask[-1].any()) + int(mask[:, 0].any()) + int(mask[:, -1].any())
    if area < 0.02 or area > 0.5 or touches >= 3:
        return np.zeros((h, w), np.uint8)
    return mask


def build_layers(image: np.ndarray) -> Layers:
    """Depth layers of `image` (uint8 RGB, full resolution)."""
    h, w = image.shape[:2]
    scale = PROXY / max(h, w)
    pw, ph = max(16, round(w * scale)), max(16, round(h * scale))
    proxy = cv2.resize(image, (pw, ph), interpolation=cv2.INTER_AREA)
    gray = cv2.cvtColor(proxy, cv2.COLOR_RGB2GRAY)
    sky, water, fire, texture = region_masks(proxy)
    sal = spectral_saliency(gray)
    colour_sal = colour_saliency(proxy)
    edges = _norm(cv2.blur(cv2.Canny(gray, 60, 160).astype(np.float32), (max(3, pw // 24),) * 2))
    ys, xs = np.mgrid[0:ph, 0:pw].astype(np.float32)
    centre = np.exp(-(((xs / pw - 0.5) / 0.32) ** 2 + ((ys / ph - 0.55) / 0.38) ** 2))
    ground = ys / ph
    cue = _norm(0.4 * colour_sal + 0.15 * sal + 0.12 * edges + 0.23 * centre + 0.1 * ground - 0.3 * sky)
    depth = _norm(cv2.GaussianBlur(0.5 * cue + 0.5 * ground - 0.4 * sky, (0, 0), pw / 40))
    mask = _subject_mask(proxy, cue, sky)
    if mask.any():
        # matte at full resolution: upsample, then a short smooth ramp so the edge is a few pixels wide
        m = cv2.resize(mask.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        m = cv2.GaussianBlur(m, (0, 0), max(1.0, w / 900))
        alpha = np.clip((m - 0.25) / 0.5, 0, 1).astype(np.float32)
        ys_, xs_ = np.nonzero(mask)
        box = (int(xs_.min() / scale), int(ys_.min() / scale), int(np.ceil((xs_.max() + 1) / scale)),
               int(np.ceil((ys_.max() + 1) / scale)))
        box = (max(0, box[0]), max(0, box[1]), min(w, box[2]), min(h, box[3]))
        pivot = (float(xs_.mean() / scale), float(ys_.mean() / scale))
        plate = _inpaint_plate(image, proxy, mask, alpha)
    else:
        alpha = np.zeros((h, w), np.float32)
        box, plate = (0, 0, 0, 0), image
        # no clear subject: aim at the most salient spot, pulled towards the centre
        k = np.unravel_index(int(np.argmax(cv2.GaussianBlur(sal * centre, (0, 0), 4))), sal.shape)
        pivot = (0.5 * w + 0.5 * k[1] / scale, 0.5 * h + 0.5 * k[0] / scale)
    sky = sky * (1 - cv2.resize(mask.astype(np.float32), (pw, ph)))
    water = water * (1 - cv2.resize(mask.astype(np.float32), (pw, ph)))
    return Layers(image, plate, alpha, box, pivot, sky, water, fire, depth)


def _inpaint_plate(image: np.ndarray, proxy: np.ndarray, mask: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The picture with the subject replaced by an inpainted fill (Telea on the proxy, upsampled, with a
    little grain so the fill does not look like a smear)."""
    h, w = image.shape[:2]
    grow = cv2.dilate(mask, np.ones((5, 5), np.uint8), iterations=2)
    fill = cv2.inpaint(proxy, grow, 5, cv2.INPAINT_TELEA)
    fill = cv2.resize(fill, (w, h), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(7)
    grain = rng.normal(0, 3.0, (h // 4 + 1, w // 4 + 1, 1)).astype(np.float32)
    grain = cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)[..., None]
    fill = np.clip(fill.astype(np.float32) + grain, 0, 255).astype(np.uint8)
    # the fill covers the whole matte, soft edge included, and fades out just beyond it: a moving subject
    # must not uncover its own outline left behind in the plate (frame 0 is the picture itself, unaffected)
    edge = (alpha > 0.001).astype(np.uint8)
    reach = cv2.GaussianBlur(cv2.dilate(edge, np.ones((3, 3), np.uint8), iterations=3).astype(np.float32),
                             (0, 0), 1.5)
    g = np.maximum(reach, edge.astype(np.float32))[..., None]
    return (image * (1.0 - g) + fill * g).astype(np.uint8)
