"""Prepare a picture of one digit as MNIST did, so a net trained on MNIST can read it.

MNIST digits are white ink on black, fitted into a 20x20 box (aspect kept, anti-aliased) and
placed in a 28x28 field so that the intensity-weighted centre of mass sits at pixel (14, 14).
A photo or scan is first cleaned the way NIST's binary scans were clean: the paper's uneven
light is divided out, the ink is picked by its contrast, specks away from the digit dropped,
and the strokes brought into MNIST's range of widths (see ``prepare_digit``).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import ImageError

FIELD = 28
BOX = 20
MIN_CONTRAST = 0.1
"""Ink that differs from its paper by less than this share of the paper's brightness is no
digit: an image with nothing stronger is blank."""
WORK_SIZE = (128, 512)
"""Range of the longer side of the copy in which the ink is looked for: a small picture is
enlarged so a 16-pixel digit has edges to threshold between, a large one shrunk (a 20x20
result needs no more, and the time and memory stay bounded)."""
PAPER_CELLS = 32
"""The paper's brightness is sampled as the median of each cell of a grid this many cells
across, then fitted by a smooth surface."""
PAPER_DEGREE = 3
"""Degree of the polynomial surface fitted to the paper: enough for a lighting gradient times
a vignette, too stiff to follow a stroke."""
NOISE_TARGET = 0.04
"""Noise (std of the ink strength on bare paper) above this is averaged away before the ink
is thresholded."""
FRAME = 4 * BOX
"""The digit's longer side, in pixels, while its strokes are measured and thickened or thinned:
four pixels for each pixel of the 20x20 box, so averaging down to it anti-aliases as MNIST's
own normalization did."""
STROKE_WIDTH = (5.6, 10.9)
"""Stroke widths of MNIST digits in that frame (each MNIST pixel four frame pixels, ink where
the grey is at least 0.5): the 10th and 90th percentile of ``stroke_width`` over the
training digits (tests/test_images.py measures them again). Strokes outside are thickened or
thinned into this range."""


def prepare_digit(img: np.ndarray) -> np.ndarray:
    """Prepare a greyscale picture of one digit as MNIST did: (28, 28) float32 in [0, 1].

    ``img`` is 2-D, float in [0, 1] or an unsigned integer type over its full range. Photos
    and scans are not clean, so the paper is not one grey level: its brightness is estimated
    locally (a smooth surface through the paper, which lighting gradients and vignettes bend)
    and divided out; whichever of dark or light ink stands out from it is the ink; the ink is
    thresholded by contrast (Otsu's method, after averaging away strong noise); specks and
    blobs far from the digit's strokes are dropped. The digit's strokes are then thickened or
    thinned into MNIST's range of widths, and it is scaled to fit 20x20 keeping its aspect
    (anti-aliased) and pasted in 28x28 with its centre of mass at (14, 14). Coloured ink on
    coloured paper arrives here as its luminance, which separates the pens and papers people
    use; an ink and a paper of equal luminance cannot be told apart. Raises ``ImageError``
    when there is no ink at all.
    """
    gray, enlarged = _working_copy(_as_unit_float(img))
    ink, noise = _ink_strength(gray)
    if ink.max() < MIN_CONTRAST:
        raise ImageError("no digit found: the image is blank (no ink on the background)")
    if noise > NOISE_TARGET:
        # Average over enough of the original pixels (an enlarged copy repeats each one).
        side = enlarged * noise / NOISE_TARGET
        ink = _box_blur(ink, min(int(np.ceil((side - 1) / 2)), max(ink.shape) // 40 + 1))
    strokes = _adjust_strokes(_in_frame(_digit_mask(ink)))
    digit = _fit_box(strokes, BOX)
    h, w = digit.shape
    grid_y, grid_x = np.indices(digit.shape)
    mass = digit.sum()
    cy, cx = (grid_y * digit).sum() / mass, (grid_x * digit).sum() / mass
    # Shift by whole pixels as MNIST did, but never push ink off the 28x28 field.
    top = int(np.clip(round(FIELD / 2 - cy), 0, FIELD - h))
    left = int(np.clip(round(FIELD / 2 - cx), 0, FIELD - w))
    field = np.zeros((FIELD, FIELD), dtype=np.float32)
    field[top:top + h, left:left + w] = digit
    return field


def _as_unit_float(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 2 or min(arr.shape) < 1:
        raise ValueError(f"prepare_digit needs a 2-D greyscale image, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("prepare_digit got NaN or infinite pixel values")
    return np.clip(arr, 0.0, 1.0)


def _resize(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Float resize: averaging when shrinking (anti-aliased), bilinear when enlarging."""
    shrink = height * width < a.shape[0] * a.shape[1]
    resample = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = Image.fromarray(a.astype(np.float32)).resize((max(1, width), max(1, height)), resample)
    return np.asarray(out, dtype=np.float32)


def _working_copy(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """The picture with its longer side in ``WORK_SIZE``, and how much it was enlarged (1 if
    it was not)."""
    h, w = gray.shape
    longer = max(h, w)
    scale = min(max(longer, WORK_SIZE[0]), WORK_SIZE[1]) / longer
    if scale == 1.0:
        return gray, 1.0
    return np.clip(_resize(gray, round(h * scale), round(w * scale)), 0.0, 1.0), max(scale, 1.0)


# --- the paper and the ink ---


def _ink_strength(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """How much darker (or lighter) than the paper under it each pixel is, as a share of the
    paper's brightness: 0 on paper, near 1 on black ink, whatever the lighting; and the noise
    (robust standard deviation) of that share, most pixels being paper."""
    paper = _paper_surface(gray)
    residual = gray - paper
    spread = 1.4826 * float(np.median(np.abs(residual)))
    level = max(3.0 * spread, MIN_CONTRAST / 2)
    dark = np.clip(-residual - level, 0.0, None).sum()
    light = np.clip(residual - level, 0.0, None).sum()
    if light > dark:  # light ink on a dark ground: make it dark ink on light paper
        gray, paper = 1.0 - gray, 1.0 - paper
    # Divided by the paper's brightness: ink keeps its strength where the light is dim. At
    # most threefold, so the noise in a nearly black corner does not swamp the digit.
    strength = (paper - gray) / np.maximum(paper, max(float(paper.max()) / 3, 0.05))
    noise = 1.4826 * float(np.median(np.abs(strength - np.median(strength))))
    return np.clip(strength, 0.0, 1.0).astype(np.float32), noise


def _paper_surface(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness at every pixel: a polynomial surface fitted to the medians of
    grid cells, cells that differ from it (ink) left out by an iterated robust fit.

    Lighting varies slowly across a sheet, so a low-degree surface follows gradients and
    vignettes, and a stroke (even one wider than a cell, whose cell median is ink) is an
    outlier to it. The fit starts from the border cells, which are paper in a picture of a
    digit, so a digit covering much of the picture is not taken for the paper.
    """
    h, w = gray.shape
    cell = -(-max(h, w) // PAPER_CELLS)
    ny, nx = -(-h // cell), -(-w // cell)
    padded = np.pad(gray, ((0, ny * cell - h), (0, nx * cell - w)), mode="edge")
    samples = np.median(padded.reshape(ny, cell, nx, cell), axis=(1, 3)).ravel()
    v = (np.minimum((np.arange(ny) + 0.5) * cell, h) / h) * 2 - 1
    u = (np.minimum((np.arange(nx) + 0.5) * cell, w) / w) * 2 - 1
    vv, uu = (grid.ravel() for grid in np.meshgrid(v, u, indexing="ij"))
    powers = [(i, j) for i in range(PAPER_DEGREE + 1) for j in range(PAPER_DEGREE + 1 - i)]
    basis = np.stack([uu ** i * vv ** j for i, j in powers], axis=1).astype(np.float64)
    samples = samples.astype(np.float64)
    use = (np.abs(uu) > 0.75) | (np.abs(vv) > 0.75)
    if use.sum() < len(powers):
        use[:] = True
    # A plane first, then curved surfaces: a low degree is not thrown off by ink it has not
    # yet learnt to leave out.
    coef = np.zeros(len(powers))
    for degree in range(1, PAPER_DEGREE + 1):
        terms = [k for k, (i, j) in enumerate(powers) if i + j <= degree]
        for _ in range(3):
            coef[:] = 0.0
            coef[terms] = np.linalg.lstsq(basis[use][:, terms], samples[use], rcond=None)[0]
            residual = samples - basis @ coef
            spread = 1.4826 * float(np.median(np.abs(residual[use])))
            inliers = np.abs(residual) < max(3.0 * spread, MIN_CONTRAST / 2)
            if inliers.sum() < len(powers) or (inliers == use).all():
                break
            use = inliers
    # Evaluate sum c_ij u^i v^j on the full grid as one small matrix product.
    table = np.zeros((PAPER_DEGREE + 1, PAPER_DEGREE + 1))
    for (i, j), c in zip(powers, coef, strict=True):
        table[j, i] = c
    v_full = ((np.arange(h) + 0.5) / h) * 2 - 1
    u_full = ((np.arange(w) + 0.5) / w) * 2 - 1
    exponents = np.arange(PAPER_DEGREE + 1)
    surface = (v_full[:, None] ** exponents) @ table @ (u_full[:, None] ** exponents).T
    return np.clip(surface, 0.0, 1.0).astype(np.float32)


def _digit_mask(ink: np.ndarray) -> np.ndarray:
    """The digit's ink as a boolean mask, cropped to it.

    Pixels above Otsu's threshold, and those above half of it that touch them (hysteresis),
    form components. The one with the most ink is the digit's main stroke; pieces within a
    stroke width of the digit join it (a stroke broken by faint ink), and so do large pieces
    a little farther off (the bar of a 5); specks and blobs elsewhere are left out.
    """
    high = min(max(_otsu(ink), MIN_CONTRAST), float(ink.max()))
    labels, boxes = _label(ink >= high / 2)
    count = len(boxes)
    top, bottom, left, right = boxes.T
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count + 1)[1:]
    strong = np.bincount(labels.ravel(), weights=ink.ravel() >= high, minlength=count + 1)[1:] > 0
    mass = np.where(strong, mass, 0.0)
    main = int(np.argmax(mass))
    keep = np.zeros(count, dtype=bool)
    keep[main] = True
    reach = min(max(1, round(stroke_width(labels == main + 1))), max(ink.shape))
    while True:
        mask = np.concatenate([[False], keep])[labels]
        touching = np.zeros(count + 1, dtype=bool)
        touching[labels[_box_blur(mask, reach) > 0.5 / (2 * reach + 1) ** 2]] = True
        box = [top[keep].min(), bottom[keep].max(), left[keep].min(), right[keep].max()]
        size = max(box[1] - box[0], box[3] - box[2]) + 1
        gap = np.maximum.reduce([top - box[1], box[0] - bottom, left - box[3], box[2] - right,
                                 np.zeros(count)])
        near = strong & ~keep & ((touching[1:] & (mass >= 0.01 * mass[main]))
                                 | ((gap <= 0.5 * size) & (mass >= 0.15 * mass[main])))
        if not near.any():
            break
        keep |= near
    mask &= ink >= high  # the fringe below the threshold linked pieces; it is not ink
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _otsu(values: np.ndarray) -> float:
    """Otsu's threshold: the level between ink and paper that best separates the two; on a
    plateau of equally good levels, its middle."""
    counts, edges = np.histogram(values, bins=256, range=(0.0, 1.0))
    p = counts / counts.sum()
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(p)[:-1]
    mean = np.cumsum(p * centres)[:-1]
    total = mean[-1] + p[-1] * centres[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * weight - mean) ** 2 / (weight * (1.0 - weight))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))
    return float(edges[1 + (best[0] + best[-1]) // 2])


def _box_blur(a: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1) square around each pixel, edges repeated: two cumulative sums."""
    k = 2 * radius + 1
    padded = np.pad(a.astype(np.float64), radius, mode="edge")
    for axis in (0, 1):
        c = np.cumsum(padded, axis=axis)
        c = np.concatenate([np.zeros_like(c.take([0], axis=axis)), c], axis=axis)
        n = c.shape[axis]
        padded = (c.take(np.arange(k, n), axis=axis) - c.take(np.arange(0, n - k), axis=axis))
    return (padded / (k * k)).astype(np.float32)


def _label(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Connected components (8-connected) of a boolean mask: labels 1..count (0 outside),
    and each component's bounding box as a (count, 4) array of top, bottom, left, right.

    Run-length labelling: the runs of each row are found with NumPy, runs touching a run of
    the row above are joined in a union-find over runs (a few per row), and the labels are
    painted back run by run.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(mask, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    run_row, run_start = np.nonzero(edges == 1)
    run_end = np.nonzero(edges == -1)[1]  # exclusive; same order as the starts
    n = len(run_row)
    parent = list(range(n))
    first = np.searchsorted(run_row, np.arange(h + 1)).tolist()
    starts, ends = run_start.tolist(), run_end.tolist()

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for y in range(1, h):
        above, here = range(first[y - 1], first[y]), range(first[y], first[y + 1])
        if not above or not here:
            continue
        a = above.start
        for b in here:
            while a < above.stop and ends[a] < starts[b]:  # a ends left of b's 8-neighbours
                a += 1
            k = a
            while k < above.stop and starts[k] <= ends[b]:
                ra, rb = root(k), root(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
                k += 1
    roots = np.array([root(i) for i in range(n)], dtype=np.int64)
    ids = np.unique(roots, return_inverse=True)[1] + 1
    labels = np.zeros((h, w), dtype=np.int64)
    lengths = run_end - run_start
    flat = np.repeat(run_row * w + run_start - np.cumsum(lengths) + lengths, lengths) \
        + np.arange(lengths.sum())
    labels.ravel()[flat] = np.repeat(ids, lengths)
    count = int(ids.max()) if n else 0
    boxes = np.empty((count, 4))
    for column, (reduce, values) in enumerate(((np.minimum, run_row), (np.maximum, run_row),
                                               (np.minimum, run_start),
                                               (np.maximum, run_end - 1))):
        boxes[:, column] = np.inf if reduce is np.minimum else -np.inf
        reduce.at(boxes[:, column], ids - 1, values)
    return labels, boxes


# --- strokes and the box ---


def _in_frame(mask: np.ndarray) -> np.ndarray:
    """The digit's mask scaled so its longer side is ``FRAME`` pixels, with a margin. Strokes
    that shrinking would thin below two pixels are first widened, so they are not lost."""
    h, w = mask.shape
    scale = FRAME / max(h, w)
    width = stroke_width(mask)
    if width * scale < 2.0:
        mask = _disk_filter(mask, int(np.ceil((2.0 / scale - width) / 2)), grow=True)
    scaled = _resize(mask, round(h * scale), round(w * scale)) >= 0.5
    return np.pad(scaled, FRAME // 4)


def stroke_width(mask: np.ndarray) -> float:
    """Mean width of the strokes in a binary mask: area over half the boundary length (the
    edge of the array counting as boundary)."""
    mask = np.pad(np.asarray(mask, dtype=bool), 1)
    edges = (np.count_nonzero(mask[1:] != mask[:-1])
             + np.count_nonzero(mask[:, 1:] != mask[:, :-1]))
    return 2.0 * np.count_nonzero(mask) / max(edges, 1)


def _adjust_strokes(mask: np.ndarray) -> np.ndarray:
    """Thicken thin strokes (a fine pen, a light font) and thin thick ones (a marker, a bold
    font) into MNIST's range of stroke widths; thinning stops at a quarter of the width so
    the hairlines of a contrasting font survive."""
    width = stroke_width(mask)
    low, high = STROKE_WIDTH
    if width < low:
        return _disk_filter(mask, int(np.ceil((low - width) / 2)), grow=True)
    if width > high:
        return _disk_filter(mask, min(int(np.ceil((width - high) / 2)), int(width / 4)),
                            grow=False)
    return mask


def _disk_filter(mask: np.ndarray, radius: int, grow: bool) -> np.ndarray:
    """Dilate (``grow``) or erode a boolean mask by a disk of ``radius`` pixels."""
    if radius < 1:
        return mask
    source = mask if grow else ~mask
    padded = np.pad(source, radius)
    out = np.zeros_like(source)
    h, w = source.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out |= padded[radius + dy:radius + dy + h, radius + dx:radius + dx + w]
    return out if grow else ~out


def _fit_box(mask: np.ndarray, box: int) -> np.ndarray:
    """Crop to the ink and average down so the longer side is ``box`` pixels: MNIST's
    anti-aliased grey edges, solid strokes at 1."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    ink = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    h, w = ink.shape
    scale = box / max(h, w)
    digit = np.clip(_resize(ink, round(h * scale), round(w * scale)), 0.0, 1.0)
    peak = digit.max()
    return digit / peak if peak > 0 else digit
