"""Scenery for the synthetic banknote scenes: backgrounds, unlabelled clutter and the note patterns.

Split out of :mod:`smartcash_core.training.synthetic`, which composes scenes from these; every drawing
call takes its randomness from the scene's generator in the same order, so scenes stay byte-identical.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RGB = tuple[int, int, int]


# ----------------------------------------------------------------------------------------------------------
# Background and clutter
# ----------------------------------------------------------------------------------------------------------


def random_colour(rng: np.random.Generator, low: int = 0, high: int = 256) -> RGB:
    red, green, blue = (int(v) for v in rng.integers(low, high, size=3))
    return red, green, blue


def paint_background(
    rng: np.random.Generator, width: int, height: int, cells: tuple[int, int], noise_amplitude: int
) -> Image.Image:
    """A gradient blended with coarse colour noise (a grid of ``cells`` cells a side, drawn from that
    inclusive range), a sine texture and fine pixel noise up to ``noise_amplitude``, ``[H, W, 3]``.

    Everything is float32 and built from broadcast ``[1, W]`` / ``[H, 1]`` axes: this is the generator's
    hot spot.
    """
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (xs * np.float32(math.cos(angle)) + ys * np.float32(math.sin(angle))) / max(width, height)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    start = np.asarray(random_colour(rng, 40, 220), dtype=np.float32)
    end = np.asarray(random_colour(rng, 40, 220), dtype=np.float32)

    cells_a_side = int(rng.integers(cells[0], cells[1] + 1))
    coarse = rng.integers(0, 256, size=(cells_a_side, cells_a_side, 3), dtype=np.uint8)
    coarse_up = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR))

    # sin(a x + b y) expanded so that only [1, W] and [H, 1] vectors go through sin/cos.
    frequency = rng.uniform(0.02, 0.2)
    phase_x = xs * np.float32(rng.uniform(-1, 1) * frequency)
    phase_y = ys * np.float32(rng.uniform(-1, 1) * frequency)
    texture = np.sin(phase_x) * np.cos(phase_y) + np.cos(phase_x) * np.sin(phase_y)
    amplitude = np.float32(rng.uniform(0, 18))
    noise = rng.integers(-noise_amplitude, noise_amplitude + 1, size=(height, width), dtype=np.int16)
    grey = texture * amplitude + noise

    image = ramp[..., None] * ((end - start) * np.float32(0.65)) + start * np.float32(0.65)
    image += coarse_up * np.float32(0.35)
    image += grey[..., None]
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), "RGB")


def draw_distractors(rng: np.random.Generator, image: Image.Image, count: int) -> None:
    """Shapes, lines and digit strings that are not banknotes (unlabelled clutter)."""
    draw = ImageDraw.Draw(image)
    width, height = image.size
    for _ in range(count):
        kind = int(rng.integers(0, 4))
        size = int(rng.integers(max(width, height) // 40, max(width, height) // 6 + 2))
        x0, y0 = int(rng.integers(-size // 2, width)), int(rng.integers(-size // 2, height))
        box = (x0, y0, x0 + size, y0 + int(size * rng.uniform(0.3, 1.5)))
        colour = random_colour(rng)
        if kind == 0:
            draw.rectangle(box, fill=colour)
        elif kind == 1:
            draw.ellipse(box, fill=colour, outline=random_colour(rng))
        elif kind == 2:
            draw.line((box[0], box[1], box[2], box[3]), fill=colour, width=int(rng.integers(1, 6)))
        else:
            text = str(int(rng.integers(1, 100000)))
            draw.text((x0, y0), text, fill=colour, font=default_font(max(8, size // 3)))


@cache
def default_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled default font at ``size`` px (FreeType build); cached because loading is slow."""
    return ImageFont.load_default(size=size)


# ----------------------------------------------------------------------------------------------------------
# Note patterns
# ----------------------------------------------------------------------------------------------------------


def jitter(colour: RGB, offset: np.ndarray) -> RGB:
    red, green, blue = (int(v) for v in np.clip(np.asarray(colour) + offset, 0, 255))
    return red, green, blue


def blend(colour: RGB, towards: RGB, amount: float) -> RGB:
    red, green, blue = (round(c + (t - c) * amount) for c, t in zip(colour, towards, strict=True))
    return red, green, blue


def _pattern_waves(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    for row in range(1, 7):
        y = h * row / 7
        points = [(x, y + h * 0.04 * math.sin(x / w * 12 + phase + row)) for x in range(0, w + 8, 8)]
        draw.line(points, fill=ink, width=2)


def _pattern_diagonals(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    step = max(6, w // 14)
    shift = int(phase * step) % step
    for x in range(-h + shift, w, step):
        draw.line((x, h, x + h, 0), fill=ink, width=2)


def _pattern_rings(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    cx, cy = w * (0.45 + 0.1 * math.sin(phase)), h * 0.5
    for radius in range(max(4, h // 10), w, max(5, h // 8)):
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), outline=ink, width=2)


def _pattern_grid(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    step = max(6, h // 6)
    for x in range(int(phase * 3) % step, w, step):
        draw.line((x, 0, x, h), fill=ink, width=1)
    for y in range(int(phase * 3) % step, h, step):
        draw.line((0, y, w, y), fill=ink, width=1)


def _pattern_dots(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    step = max(6, h // 7)
    radius = max(1, step // 4)
    for row, y in enumerate(range(step // 2, h, step)):
        offset = (step // 2) * (row % 2) + int(phase * 2) % step
        for x in range(offset, w, step):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=ink)


def _pattern_bands(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    step = max(8, w // 9)
    for x in range(int(phase * 5) % step, w, step):
        draw.rectangle((x, 0, x + step // 3, h), fill=ink)


def _pattern_chevrons(draw: ImageDraw.ImageDraw, w: int, h: int, ink: RGB, phase: float) -> None:
    step = max(6, h // 6)
    tooth = max(4, w // 20)
    for y in range(int(phase * 3) % step, h + step, step):
        points = [(x, y - (tooth if (x // tooth) % 2 else 0)) for x in range(0, w + tooth, tooth)]
        draw.line(points, fill=ink, width=2)


PatternDrawer = Callable[[ImageDraw.ImageDraw, int, int, RGB, float], None]
# One pattern per denomination, in denomination order.
NOTE_PATTERNS: tuple[PatternDrawer, ...] = (
    _pattern_waves,
    _pattern_diagonals,
    _pattern_rings,
    _pattern_grid,
    _pattern_dots,
    _pattern_bands,
    _pattern_chevrons,
)
