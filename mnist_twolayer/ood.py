"""Digits from outside MNIST: a test set drawn from a seed, with no MNIST digit in it.

A digit reader is judged on digits NIST never prepared: typeset ones, handwriting from other
hands, strokes of other pens, photos of paper under uneven light. This module draws such
digits in four categories (``CATEGORIES``): plain sans and serif fonts, handwriting-like fonts
(both from Debian font packages), polylines drawn with a pen in Pillow, and photo or scan
conditions (lighting gradients, vignettes, noise, coloured ink on coloured paper, specks, blur)
applied to digits of the other three kinds. Every digit varies in stroke width, slant,
rotation, aspect and size (16 to 400 pixels tall), is dark on light or light on dark, and some
are JPEG files. The same seed and the same fonts give the same bytes.

It lives in the package, not in the tests, because ``scripts/ood_accuracy.py`` and the tests
both draw the set and neither may hold logic of its own. Fonts that are not installed are left
out and named in ``OodSet.missing`` (and in a logged warning); ``.ci/run`` installs them all.
"""

from __future__ import annotations

import io
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .errors import ImageError
from .fileio import write_bytes_atomic
from .images import FIELD, image_to_mnist
from .preparation import stroke_width

if TYPE_CHECKING:
    from .network import TwoLayerNet

log = logging.getLogger(__name__)

CATEGORIES = ("fonts", "handwriting", "strokes", "photo")
"""Plain sans and serif fonts, handwriting-like fonts, pen strokes, photo or scan conditions."""

FONT_ROOT = Path("/usr/share/fonts")
"""Where Debian installs font files."""

FONTS: dict[str, dict[str, tuple[str, ...]]] = {
    # Debian package -> font files (relative to FONT_ROOT), by category. Monospaced faces are
    # left out: their slashed or dotted zeros are not how anybody writes a 0.
    "fonts": {
        "fonts-dejavu-core": ("truetype/dejavu/DejaVuSans.ttf",
                              "truetype/dejavu/DejaVuSans-Bold.ttf",
                              "truetype/dejavu/DejaVuSerif.ttf",
                              "truetype/dejavu/DejaVuSerif-Bold.ttf"),
        "fonts-liberation": ("truetype/liberation/LiberationSans-Regular.ttf",
                             "truetype/liberation/LiberationSans-Bold.ttf",
                             "truetype/liberation/LiberationSans-Italic.ttf",
                             "truetype/liberation/LiberationSansNarrow-Regular.ttf",
                             "truetype/liberation/LiberationSerif-Regular.ttf",
                             "truetype/liberation/LiberationSerif-Bold.ttf",
                             "truetype/liberation/LiberationSerif-Italic.ttf"),
        "fonts-freefont-ttf": ("truetype/freefont/FreeSans.ttf",
                               "truetype/freefont/FreeSansBold.ttf",
                               "truetype/freefont/FreeSansOblique.ttf",
                               "truetype/freefont/FreeSerif.ttf",
                               "truetype/freefont/FreeSerifBold.ttf",
                               "truetype/freefont/FreeSerifItalic.ttf"),
    },
    # Faces whose digits were looked at and read as handwriting; outline-only faces
    # (fonts-femkeklaver) and the 90 MB fonts-klee were left out.
    "handwriting": {
        "fonts-comic-neue": ("opentype/comic-neue/ComicNeue-Regular.otf",
                             "opentype/comic-neue/ComicNeue-Bold.otf",
                             "opentype/comic-neue/ComicNeue-Italic.otf",
                             "opentype/comic-neue/ComicNeue-Light.otf"),
        "fonts-dkg-handwriting": ("truetype/fifthhorseman/dkg.ttf",
                                  "truetype/fifthhorseman/dkgBd.ttf",
                                  "truetype/fifthhorseman/dkgIt.ttf"),
        "fonts-breip": ("truetype/breip/Breip.ttf",),
        "fonts-humor-sans": ("truetype/humor-sans/Humor-Sans.ttf",),
        "fonts-kristi": ("truetype/kristi/Kristi.ttf",),
        "fonts-dancingscript": ("opentype/dancingscript/DancingScript-Regular.otf",
                                "opentype/dancingscript/DancingScript-Bold.otf"),
        "fonts-kaushanscript": ("opentype/kaushanscript/KaushanScript-Regular.otf",),
        "fonts-bwht": ("opentype/bwht/BecauseWeConnect-Regular.otf",
                       "opentype/bwht/BecauseWeLearn-Regular.otf",
                       "opentype/bwht/BecauseWeMentor-Regular.otf",
                       "opentype/bwht/BecauseWeOrganize-Regular.otf"),
        "fonts-rufscript": ("truetype/rufscript/Rufscript010.ttf",),
    },
}

PHOTO_CONDITIONS = ("gradient", "vignette", "noise", "colour", "specks", "blur")

INK_ON_PAPER = (
    # (name, ink RGB, paper RGB): pens and papers people use, plus chalk on a board.
    ("red on yellow", (200, 30, 30), (250, 225, 80)),
    ("blue on white", (25, 50, 160), (245, 245, 240)),
    ("blue on light blue", (20, 40, 130), (200, 225, 245)),
    ("green on pink", (20, 110, 50), (250, 200, 210)),
    ("purple on cream", (90, 30, 120), (250, 240, 210)),
    ("black on kraft", (30, 25, 20), (200, 160, 110)),
    ("red on white", (210, 20, 30), (250, 250, 250)),
    ("white chalk on green", (235, 240, 230), (40, 80, 60)),
    ("yellow on dark blue", (250, 220, 60), (20, 30, 80)),
)

GLYPH = 256
"""Height in pixels of a pen-drawn digit before it is distorted and scaled to its size."""

FONT_SIZE = 200
"""Size at which a font's digit is first rendered (about 145 pixels tall), before the same."""

SIZES = (16, 400)
"""Smallest and largest digit height in pixels, drawn log-uniformly."""


@dataclass(frozen=True)
class OodDigit:
    """One picture: its file bytes (PNG or JPEG), the digit it shows and how it was made."""

    label: int
    category: str
    source: str  # a font file's stem, or "pen"
    conditions: tuple[str, ...]  # e.g. ("red on yellow", "gradient", "jpeg q55")
    data: bytes
    suffix: str  # ".png" or ".jpg"

    def filename(self, index: int) -> str:
        return f"{index:04d}-{self.category}-{self.label}{self.suffix}"


@dataclass(frozen=True)
class OodSet:
    digits: list[OodDigit]
    missing: tuple[str, ...]  # Debian font packages not found, so left out

    def save(self, folder: str | Path) -> list[Path]:
        """Write every digit as a file (``0000-fonts-0.png``, ...) into ``folder``."""
        paths = [Path(folder) / digit.filename(i) for i, digit in enumerate(self.digits)]
        for digit, path in zip(self.digits, paths, strict=True):
            write_bytes_atomic(path, digit.data)
        return paths


def prepare_set(ood: OodSet) -> tuple[np.ndarray, np.ndarray]:
    """Every digit as ``predict`` prepares it, from its file: (N, 784) float32 inputs, and a
    bool array that is False where the preparation found no digit (that row is zeros)."""
    x = np.zeros((len(ood.digits), FIELD * FIELD), dtype=np.float32)
    found = np.ones(len(ood.digits), dtype=bool)
    with tempfile.TemporaryDirectory(prefix="ood-") as folder:
        for i, digit in enumerate(ood.digits):
            path = Path(folder) / digit.filename(i)
            path.write_bytes(digit.data)
            try:
                x[i] = image_to_mnist(path)
            except ImageError:
                found[i] = False
    return x, found


def accuracy_by_category(net: TwoLayerNet, ood: OodSet,
                         prepared: tuple[np.ndarray, np.ndarray] | None = None,
                         ) -> dict[str, tuple[int, int]]:
    """(correct, total) per category and for ``"all"``; a digit the preparation could not
    find counts as wrong. Pass ``prepared`` (from :func:`prepare_set`) to judge several nets
    on one preparation."""
    x, found = prepare_set(ood) if prepared is None else prepared
    labels = np.array([digit.label for digit in ood.digits])
    categories = np.array([digit.category for digit in ood.digits])
    right = found & (net.predict(x.astype(net.dtype, copy=False)).argmax(axis=1) == labels)
    tally = {category: (int(right[categories == category].sum()),
                        int((categories == category).sum()))
             for category in CATEGORIES if (categories == category).any()}
    tally["all"] = (int(right.sum()), len(labels))
    return tally


def find_fonts(root: str | Path = FONT_ROOT) -> tuple[dict[str, list[Path]], tuple[str, ...]]:
    """The font files present under ``root`` by category, and the packages missing wholly or
    in part (fonts are looked up by their Debian paths only, so the set does not depend on
    whatever else a machine has installed)."""
    found: dict[str, list[Path]] = {}
    missing = []
    for category, packages in FONTS.items():
        found[category] = []
        for package, files in packages.items():
            present = [Path(root) / f for f in files if (Path(root) / f).is_file()]
            found[category] += present
            if len(present) < len(files):
                missing.append(package)
    return found, tuple(missing)


def make_ood_set(seed: int = 0, per_category: int = 100,
                 font_root: str | Path = FONT_ROOT) -> OodSet:
    """``per_category`` digits of each category (labels 0..9 in turn), drawn from ``seed``.

    Digit ``i`` of a category depends only on (seed, category, i), so a smaller set is the
    start of a larger one. A category whose fonts are all missing is empty; photos then
    start from the kinds that exist (pen strokes always do).
    """
    fonts, missing = find_fonts(font_root)
    if missing:
        log.warning("font packages not installed, their digits are left out: %s",
                    ", ".join(missing))
    digits = []
    for c, category in enumerate(CATEGORIES):
        if category in fonts and not fonts[category]:
            continue
        for i in range(per_category):
            rng = np.random.default_rng([seed, c, i])
            digits.append(_draw(category, i % 10, rng, fonts))
    return OodSet(digits, missing)


# --- one digit ---


def _draw(category: str, label: int, rng: np.random.Generator,
          fonts: dict[str, list[Path]]) -> OodDigit:
    kind = category
    if category == "photo":
        kind = str(rng.choice([k for k in ("fonts", "handwriting", "strokes")
                               if k == "strokes" or fonts[k]]))
    if kind == "strokes":
        source, coverage = "pen", _pen_glyph(label, rng)
    else:
        font = fonts[kind][int(rng.integers(len(fonts[kind])))]
        source, coverage = font.stem, _font_glyph(font, label, rng)
    coverage = _place(_distort(coverage, rng), rng)

    conditions: list[str] = []
    if category == "photo":
        chosen = [name for name in PHOTO_CONDITIONS if rng.random() < 0.4]
        chosen = chosen or [str(rng.choice(PHOTO_CONDITIONS))]
        rgb = _photograph(coverage, chosen, rng, conditions)
    else:
        rgb = _plain(coverage, rng, conditions)
    pixels = np.round(np.clip(rgb, 0.0, 1.0) * 255).astype(np.uint8)
    image = Image.fromarray(pixels if category == "photo" else pixels[..., 0])
    buffer = io.BytesIO()
    if rng.random() < (0.5 if category == "photo" else 0.25):
        quality = int(rng.integers(30, 91))
        image.save(buffer, format="JPEG", quality=quality)
        conditions.append(f"jpeg q{quality}")
        suffix = ".jpg"
    else:
        image.save(buffer, format="PNG")
        suffix = ".png"
    return OodDigit(label, category, source, tuple(conditions), buffer.getvalue(), suffix)


def _font_glyph(font_path: Path, label: int, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage in [0, 1] of ``label`` in a font, its strokes made thinner or thicker."""
    font = ImageFont.truetype(str(font_path), FONT_SIZE)
    text = str(label)
    left, top, right, bottom = font.getbbox(text)
    weight = rng.uniform(-0.5, 1.0)  # below 0 thins the strokes, above thickens them
    grow = max(0, round(weight * 8))
    pad = 20 + grow
    image = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(image).text((pad - left, pad - top), text, font=font, fill=255,
                               stroke_width=grow, stroke_fill=255)
    if weight < 0:
        # Thin by at most a third of the stroke so hairlines of light faces survive.
        thin = min(round(-weight * 8), int(stroke_width(np.asarray(image) > 127) / 3))
        if thin > 0:
            image = image.filter(ImageFilter.MinFilter(2 * thin + 1))
    return np.asarray(image, dtype=np.float32) / 255.0


def _pen_glyph(label: int, rng: np.random.Generator) -> np.ndarray:
    """Ink coverage in [0, 1] of ``label`` drawn as polylines with a round pen."""
    height = 2 * GLYPH  # drawn twice as large, then halved: anti-aliased edges
    pen = height * math.exp(rng.uniform(math.log(0.04), math.log(0.2)))
    pad = pen
    width = 0.75 * height
    strokes = TEMPLATES[label][int(rng.integers(len(TEMPLATES[label])))](
        lambda v: v + rng.normal(0.0, 0.025))
    image = Image.new("L", (round(width + 2 * pad), round(height + 2 * pad)), 0)
    draw = ImageDraw.Draw(image)
    radius = pen / 2
    for stroke in strokes:
        points = [(pad + x * width, pad + y * height) for x, y in stroke]
        draw.line(points, fill=255, width=max(1, round(pen)), joint="curve")
        for x, y in (points[0], points[-1]):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
    image = image.resize((image.width // 2, image.height // 2), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32) / 255.0


def _arc(cx: float, cy: float, rx: float, ry: float, start: float, end: float,
         ) -> list[tuple[float, float]]:
    """Points of an elliptic arc; angles in degrees, 0 to the right, 90 downwards."""
    steps = max(8, int(abs(end - start) / 6))
    angles = np.radians(np.linspace(start, end, steps))
    return list(zip((cx + rx * np.cos(angles)).tolist(), (cy + ry * np.sin(angles)).tolist(),
                    strict=True))


Stroke = list[tuple[float, float]]
Template = Callable[[Callable[[float], float]], list[Stroke]]

# Each digit as one or more pen strokes in a box 0..1 wide and 0..1 tall (y downwards),
# several ways of writing some digits; ``j`` jitters every number a little.
TEMPLATES: dict[int, tuple[Template, ...]] = {
    0: (lambda j: [_arc(j(.5), j(.5), j(.32), j(.47), j(-90), j(275))],),
    1: (lambda j: [[(j(.5), j(0)), (j(.5), j(1))]],
        lambda j: [[(j(.25), j(.22)), (j(.55), j(0)), (j(.55), j(1))]],
        lambda j: [[(j(.25), j(.2)), (j(.5), j(0)), (j(.5), j(1))],
                   [(j(.25), j(1)), (j(.75), j(1))]]),
    2: (lambda j: [_arc(j(.5), j(.3), j(.3), j(.28), j(190), j(380))
                   + [(j(.12), j(1)), (j(.9), j(1))]],
        lambda j: [_arc(j(.5), j(.3), j(.32), j(.3), j(200), j(400))
                   + [(j(.1), j(.98))] + _arc(j(.55), j(.92), j(.35), j(.08), j(200), j(330))]),
    3: (lambda j: [_arc(j(.48), j(.26), j(.3), j(.24), j(200), j(450))
                   + _arc(j(.48), j(.74), j(.34), j(.26), j(270), j(520))],
        lambda j: [[(j(.15), j(0)), (j(.85), j(0)), (j(.45), j(.4))]
                   + _arc(j(.48), j(.7), j(.33), j(.3), j(260), j(510))]),
    4: (lambda j: [[(j(.68), j(1)), (j(.68), j(0)), (j(.08), j(.68)), (j(.95), j(.68))]],
        lambda j: [[(j(.22), j(0)), (j(.12), j(.62)), (j(.9), j(.62))],
                   [(j(.68), j(.25)), (j(.68), j(1))]]),
    5: (lambda j: [[(j(.85), j(0)), (j(.3), j(0)), (j(.25), j(.45))]
                   + _arc(j(.5), j(.68), j(.34), j(.3), j(225), j(500))],
        lambda j: [[(j(.3), j(0)), (j(.25), j(.45))]
                   + _arc(j(.5), j(.68), j(.34), j(.3), j(225), j(500)),
                   [(j(.3), j(0)), (j(.85), j(.02))]]),
    6: (lambda j: [_arc(j(.62), j(.62), j(.45), j(.6), j(265), j(180))
                   + _arc(j(.5), j(.72), j(.3), j(.27), j(180), j(540))],
        lambda j: [[(j(.7), j(0)), (j(.25), j(.6))]
                   + _arc(j(.5), j(.72), j(.3), j(.27), j(200), j(560))]),
    7: (lambda j: [[(j(.08), j(0)), (j(.92), j(0)), (j(.38), j(1))]],
        lambda j: [[(j(.08), j(.12)), (j(.08), j(0)), (j(.92), j(0)), (j(.42), j(1))]],
        lambda j: [[(j(.08), j(0)), (j(.92), j(0)), (j(.4), j(1))],
                   [(j(.35), j(.5)), (j(.8), j(.5))]]),
    8: (lambda j: [_arc(j(.5), j(.25), j(.26), j(.24), j(90), j(450)),
                   _arc(j(.5), j(.73), j(.32), j(.27), j(-90), j(270))],
        lambda j: [_arc(j(.5), j(.25), j(.27), j(.24), j(60), j(-240))
                   + _arc(j(.5), j(.73), j(.32), j(.27), j(-60), j(240))
                   + [(j(.7), j(.05))]]),
    9: (lambda j: [_arc(j(.47), j(.3), j(.3), j(.28), j(0), j(360))
                   + [(j(.72), j(1))]],
        lambda j: [_arc(j(.47), j(.3), j(.3), j(.28), j(0), j(360))
                   + _arc(j(.45), j(.55), j(.3), j(.45), j(0), j(110))]),
}


# --- geometry and placement ---


def _distort(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Slant, rotate and stretch the digit (one affine map), then crop it to its ink."""
    slant = math.tan(math.radians(rng.uniform(-20, 20)))
    angle = math.radians(rng.uniform(-12, 12))
    aspect = math.exp(rng.uniform(-0.25, 0.25))
    image = Image.fromarray(coverage)
    h, w = coverage.shape
    size = int(2 * math.hypot(h, w))
    cos, sin = math.cos(angle), math.sin(angle)
    # forward map: x' = R (S (A x)); Pillow wants the inverse, output -> input
    forward = np.array([[cos, -sin], [sin, cos]]) @ np.array([[1, slant], [0, 1]]) \
        @ np.diag([aspect, 1.0])
    inverse = np.linalg.inv(forward)
    centre_out = np.array([size / 2, size / 2])
    centre_in = np.array([w / 2, h / 2])
    offset = centre_in - inverse @ centre_out
    matrix = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    out = np.asarray(image.transform((size, size), Image.Transform.AFFINE, matrix,
                                     Image.Resampling.BICUBIC, fillcolor=0.0), dtype=np.float32)
    rows = np.flatnonzero(out.max(axis=1) > 0.02)
    cols = np.flatnonzero(out.max(axis=0) > 0.02)
    return np.clip(out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 0.0, 1.0)


def _place(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Scale the digit to a height of 16 to 400 pixels and put it on a canvas with margins."""
    height = round(math.exp(rng.uniform(math.log(SIZES[0]), math.log(SIZES[1]))))
    h, w = coverage.shape
    width = max(1, round(w * height / h))
    digit = np.asarray(Image.fromarray(coverage).resize((width, height), Image.Resampling.LANCZOS),
                       dtype=np.float32)
    top, bottom, left, right = (max(2, round(height * rng.uniform(0.1, 0.6))) for _ in range(4))
    canvas = np.zeros((top + height + bottom, left + width + right), dtype=np.float32)
    canvas[top:top + height, left:left + width] = np.clip(digit, 0.0, 1.0)
    return canvas


# --- appearance ---


def _plain(coverage: np.ndarray, rng: np.random.Generator,
           conditions: list[str]) -> np.ndarray:
    """Grey ink on flat grey paper: dark on light, or (one time in three) light on dark."""
    if rng.random() < 1 / 3:
        conditions.append("light-on-dark")
        paper, ink = rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0)
    else:
        paper, ink = rng.uniform(0.75, 1.0), rng.uniform(0.0, 0.3)
    grey = paper + (ink - paper) * coverage
    return np.repeat(grey[..., None], 3, axis=2)


def _photograph(coverage: np.ndarray, chosen: Sequence[str], rng: np.random.Generator,
                conditions: list[str]) -> np.ndarray:
    """Ink on paper as a camera or scanner sees it, with the ``chosen`` conditions."""
    h, w = coverage.shape
    if "colour" in chosen:
        name, ink, paper = INK_ON_PAPER[int(rng.integers(len(INK_ON_PAPER)))]
        conditions.append(name)
        ink_rgb, paper_rgb = np.array(ink) / 255.0, np.array(paper) / 255.0
    elif rng.random() < 0.25:
        conditions.append("light-on-dark")
        ink_rgb, paper_rgb = np.full(3, rng.uniform(0.75, 1.0)), np.full(3, rng.uniform(0, .25))
    else:
        ink_rgb, paper_rgb = np.full(3, rng.uniform(0, 0.3)), np.full(3, rng.uniform(0.7, 1.0))
    if "specks" in chosen:
        coverage = _specks(coverage, rng)
        conditions.append("specks")
    rgb = paper_rgb + (ink_rgb - paper_rgb) * coverage[..., None]
    y, x = np.mgrid[0:h, 0:w]
    u, v = (x + 0.5) / w - 0.5, (y + 0.5) / h - 0.5  # -0.5..0.5 across the picture
    light = np.ones((h, w))
    if "gradient" in chosen:
        direction = rng.uniform(0, 2 * math.pi)
        ramp = u * math.cos(direction) + v * math.sin(direction)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
        light *= 1.0 - rng.uniform(0.3, 0.65) * ramp
        conditions.append("gradient")
    if "vignette" in chosen:
        cu, cv = rng.uniform(-0.2, 0.2, size=2)
        r2 = ((u - cu) ** 2 + (v - cv) ** 2) / 0.5
        light *= np.clip(1.0 - rng.uniform(0.4, 0.8) * r2, 0.05, 1.0)
        conditions.append("vignette")
    rgb = rgb * light[..., None]
    if "blur" in chosen:
        radius = max(h, w) * rng.uniform(0.005, 0.015)
        blurred = Image.fromarray(np.round(rgb * 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(radius))
        rgb = np.asarray(blurred, dtype=np.float64) / 255.0
        conditions.append("blur")
    if "noise" in chosen:
        if rng.random() < 0.5:
            amplitude = rng.uniform(0.05, 0.25)
            rgb = rgb + rng.uniform(-amplitude, amplitude, size=(h, w, 1))
            conditions.append("uniform noise")
        else:
            rgb = rgb + rng.normal(0.0, rng.uniform(0.02, 0.1), size=(h, w, 1))
            conditions.append("gaussian noise")
    return rgb


def _specks(coverage: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dust and dots of ink anywhere on the page, none larger than a pen dot."""
    h, w = coverage.shape
    image = Image.fromarray(np.round(coverage * 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 25))):
        r = max(0.6, min(h, w) * rng.uniform(0.003, 0.02))
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=int(rng.integers(128, 256)))
    return np.asarray(image, dtype=np.float32) / 255.0
