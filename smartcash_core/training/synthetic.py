"""Deterministic procedural banknote scenes in YOLO layout: the project's own demo and test data.

Each scene holds zero to three notes on a procedural background. A note of denomination ``d`` (0..6)
yields these labels (ids of the shipped class table, ``smartcash_core/classes.json``):

- ``d``       ``*_whole``: the tight axis-aligned box of the (possibly slightly rotated) note;
- ``7 + d``   ``*_nominal_feature``: a badge whose colour, digits and tick marks encode the denomination;
- ``14``      ``security_thread``: a dashed dark vertical stripe across the note (present or absent);
- ``15``      ``watermark``: a faint light ellipse on the left of the note (present or absent);
- ``16``      ``special_sign``: a dark diamond with a light dot, bottom right (present or absent).

Every denomination has its own base colour and background pattern, so a small model learns the set
quickly. ``domain="shifted"`` renders images unlike the training data (busy textures, strong colour
jitter, many distractor shapes): a validation of a standard-trained model on them produces many
low-confidence candidates, the expensive case for NMS.

Determinism: image ``i`` of seed ``s`` draws from ``np.random.default_rng([s, i])`` only, and all
drawing goes through PIL and numpy, so the same seed gives byte-identical files on the same library
versions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageDraw

from smartcash_core.classes import default_class_table
from smartcash_core.errors import DatasetError
from smartcash_core.training.scenery import (
    NOTE_PATTERNS,
    RGB,
    blend,
    default_font,
    draw_distractors,
    jitter,
    paint_background,
)

# (class id, x0, y0, x1, y1) in pixels of the image being drawn.
PixelBox = tuple[int, float, float, float, float]

NUM_DENOMINATIONS = 7
NOMINAL_CLASS_OFFSET = 7
SECURITY_THREAD_CLASS = 14
WATERMARK_CLASS = 15
SPECIAL_SIGN_CLASS = 16
DENOMINATION_TEXT = ("1000", "2000", "5000", "10000", "20000", "50000", "100000")
JPEG_QUALITY = 90
DOMAINS = ("standard", "shifted")


@dataclass(frozen=True)
class NoteStyle:
    """The look of one denomination: base paper colour, pattern ink, nominal badge colour."""

    base: RGB
    ink: RGB
    badge: RGB


# Loosely after the real Rupiah colours, pushed apart so each denomination is easy to tell from the others.
NOTE_STYLES: tuple[NoteStyle, ...] = (
    NoteStyle(base=(168, 176, 96), ink=(92, 104, 40), badge=(238, 232, 150)),  # 1000 olive
    NoteStyle(base=(150, 150, 166), ink=(80, 80, 104), badge=(214, 214, 240)),  # 2000 grey
    NoteStyle(base=(164, 112, 60), ink=(96, 56, 24), badge=(250, 206, 150)),  # 5000 brown
    NoteStyle(base=(136, 72, 164), ink=(70, 28, 96), badge=(226, 180, 250)),  # 10000 purple
    NoteStyle(base=(64, 160, 88), ink=(20, 90, 40), badge=(180, 246, 190)),  # 20000 green
    NoteStyle(base=(56, 100, 196), ink=(20, 44, 120), badge=(170, 206, 255)),  # 50000 blue
    NoteStyle(base=(206, 60, 70), ink=(120, 20, 30), badge=(255, 190, 190)),  # 100000 red
)


@dataclass(frozen=True)
class DomainConfig:
    """Knobs that separate the training-like domain from the shifted one."""

    note_count_weights: tuple[float, ...]  # P(0 notes), P(1 note), ...
    colour_jitter: int  # max per-channel offset added to a note's colours
    max_rotation_deg: float
    distractors: tuple[int, int]  # inclusive range of distractor shapes per image
    background_noise: int  # per-pixel noise amplitude
    background_cells: tuple[int, int]  # range of the coarse noise grid size (busy = more cells)
    feature_probability: float  # chance that each authentication feature is present on a note


DOMAIN_CONFIGS: dict[str, DomainConfig] = {
    "standard": DomainConfig(
        note_count_weights=(0.08, 0.52, 0.28, 0.12),
        colour_jitter=14,
        max_rotation_deg=6.0,
        distractors=(0, 3),
        background_noise=10,
        background_cells=(2, 6),
        feature_probability=0.65,
    ),
    "shifted": DomainConfig(
        note_count_weights=(0.15, 0.45, 0.25, 0.15),
        colour_jitter=70,
        max_rotation_deg=12.0,
        distractors=(25, 60),
        background_noise=40,
        background_cells=(12, 40),
        feature_probability=0.5,
    ),
}


# ----------------------------------------------------------------------------------------------------------
# One note (backgrounds, clutter and note patterns: ``scenery``)
# ----------------------------------------------------------------------------------------------------------


def _draw_nominal_badge(
    draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], denomination: int, style: NoteStyle, ink: RGB
) -> None:
    """Badge colour + digits + ``denomination + 1`` tick marks: three cues that encode the value."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=style.badge, outline=ink, width=2)
    text = DENOMINATION_TEXT[denomination]
    text_height = y1 - y0
    font_size = max(8, int(min(text_height * 0.62, (x1 - x0) * 0.9 / (0.62 * len(text)))))
    font = default_font(font_size)
    left, top, right, _ = draw.textbbox((0, 0), text, font=font)
    text_x = x0 + (x1 - x0 - (right - left)) / 2 - left
    text_y = y0 + text_height * 0.05 - top
    draw.text((text_x, text_y), text, fill=ink, font=font)
    ticks = denomination + 1
    tick_w = (x1 - x0) * 0.8 / (2 * ticks)
    tick_top = y0 + text_height * 0.74
    # Badges under ~8 px (notes on 64-160 px images) have no room below the digits: draw 1 px ticks there
    # instead of an inverted box, which PIL rejects. Larger badges draw exactly what they always drew.
    tick_bottom = max(tick_top, y1 - max(2, text_height * 0.08))
    for tick in range(ticks):
        tx = x0 + (x1 - x0) * 0.1 + tick * 2 * tick_w
        draw.rectangle((tx, tick_top, tx + tick_w, tick_bottom), fill=ink)


def _draw_thread(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    """A windowed security thread: a dark stripe interrupted by silver windows."""
    x0, y0, x1, y1 = box
    draw.rectangle(box, fill=(40, 40, 44))
    window = max(4, (x1 - x0) * 2)
    for y in range(y0 + window // 2, y1, window * 2):
        draw.rectangle((x0 + 1, y, x1 - 1, min(y + window, y1)), fill=(196, 200, 206))


def _draw_special_sign(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    draw.polygon(((cx, y0), (x1, cy), (cx, y1), (x0, cy)), fill=(24, 20, 60))
    radius = (x1 - x0) * 0.18
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(250, 240, 200))


def _fraction_box(
    w: int, h: int, fx0: float, fy0: float, fx1: float, fy1: float
) -> tuple[int, int, int, int]:
    return round(w * fx0), round(h * fy0), round(w * fx1), round(h * fy1)


def _render_note(
    rng: np.random.Generator, denomination: int, w: int, h: int, config: DomainConfig
) -> tuple[Image.Image, list[PixelBox]]:
    """Draw one upright note ``[h, w]`` (RGBA) and return it with its labels in note pixels."""
    style = NOTE_STYLES[denomination]
    offset = rng.integers(-config.colour_jitter, config.colour_jitter + 1, size=3)
    base, ink = jitter(style.base, offset), jitter(style.ink, offset)
    note = Image.new("RGBA", (w, h), (*base, 255))
    draw = ImageDraw.Draw(note)
    NOTE_PATTERNS[denomination](draw, w, h, blend(ink, base, 0.45), float(rng.uniform(0, 2 * math.pi)))
    draw.rectangle((0, 0, w - 1, h - 1), outline=ink, width=max(2, h // 40))
    # An unlabelled "portrait" so the model must not treat every blob on a note as a feature.
    portrait = _fraction_box(w, h, 0.53, 0.46, 0.71, 0.88)
    draw.ellipse(portrait, fill=blend(ink, base, 0.2), outline=ink)

    labels: list[PixelBox] = []
    jx, jy = rng.uniform(-0.02, 0.02, size=2)
    nominal = _fraction_box(w, h, 0.58 + jx, 0.08 + jy, 0.94 + jx, 0.42 + jy)
    _draw_nominal_badge(draw, nominal, denomination, style, ink)
    labels.append((NOMINAL_CLASS_OFFSET + denomination, *map(float, nominal)))
    labels.extend(_draw_authentication_features(rng, draw, w, h, base, config.feature_probability))
    labels.insert(0, (denomination, 0.0, 0.0, float(w), float(h)))
    return note, labels


def _draw_authentication_features(
    rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int, base: RGB, probability: float
) -> list[PixelBox]:
    """Security thread, watermark and special sign, each present with ``probability``."""
    present = rng.random(3) < probability
    labels: list[PixelBox] = []
    if present[0]:
        # Wider than a real thread so the box stays >= ~10 px at 320 px training size (learnable IoU).
        thread_x = w * rng.uniform(0.34, 0.40)
        thread_w = max(6.0, w * 0.11)
        box = (round(thread_x), 0, round(thread_x + thread_w), h)
        _draw_thread(draw, box)
        labels.append((SECURITY_THREAD_CLASS, *map(float, box)))
    if present[1]:
        box = _fraction_box(w, h, 0.06, 0.18, 0.28, 0.82)
        draw.ellipse(
            box, fill=blend(base, (255, 255, 255), 0.45), outline=blend(base, (255, 255, 255), 0.25)
        )
        labels.append((WATERMARK_CLASS, *map(float, box)))
    if present[2]:
        side = max(12, round(h * 0.26))
        x0, y0 = round(w * 0.78), round(h * 0.62)
        box = (x0, y0, x0 + side, y0 + side)
        _draw_special_sign(draw, box)
        labels.append((SPECIAL_SIGN_CLASS, *map(float, box)))
    return labels


def _rotate_note(
    note: Image.Image, labels: list[PixelBox], angle_deg: float
) -> tuple[Image.Image, list[PixelBox]]:
    """Rotate the note counter-clockwise by ``angle_deg`` and keep every label box axis-aligned and tight.

    The whole-note box is the bbox of the rotated alpha mask (exact); feature boxes are the bbox of their
    rotated corners (exact for rectangles, slightly loose for the watermark ellipse).
    """
    if abs(angle_deg) < 1e-6:
        return note, labels
    w, h = note.size
    rotated = note.rotate(angle_deg, resample=Image.Resampling.BILINEAR, expand=True)
    new_w, new_h = rotated.size
    radians = math.radians(angle_deg)
    cos, sin = math.cos(radians), math.sin(radians)

    def forward(x: float, y: float) -> tuple[float, float]:
        # PIL rotates counter-clockwise on screen (y down) about the centre, then centres the expanded canvas.
        dx, dy = x - w / 2, y - h / 2
        return new_w / 2 + dx * cos + dy * sin, new_h / 2 - dx * sin + dy * cos

    alpha_box = rotated.getchannel("A").point(lambda a: 255 if a >= 128 else 0).getbbox()
    out: list[PixelBox] = []
    for cls, x0, y0, x1, y1 in labels:
        if cls < NUM_DENOMINATIONS and alpha_box is not None:
            out.append((cls, *map(float, alpha_box)))
            continue
        corners = [forward(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1))]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        out.append((cls, max(0.0, min(xs)), max(0.0, min(ys)), min(new_w, max(xs)), min(new_h, max(ys))))
    return rotated, out


# ----------------------------------------------------------------------------------------------------------
# Scenes and files
# ----------------------------------------------------------------------------------------------------------


def _boxes_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int], margin: int) -> bool:
    return not (
        a[2] + margin <= b[0] or b[2] + margin <= a[0] or a[3] + margin <= b[1] or b[3] + margin <= a[1]
    )


def _place_notes(
    rng: np.random.Generator, canvas: Image.Image, count: int, config: DomainConfig
) -> list[PixelBox]:
    """Paste ``count`` notes that do not overlap each other (a note that does not fit is dropped)."""
    width, height = canvas.size
    low, high = (0.38, 0.70) if count == 1 else (0.30, 0.48)
    placed: list[tuple[int, int, int, int]] = []
    labels: list[PixelBox] = []
    for _ in range(count):
        denomination = int(rng.integers(0, NUM_DENOMINATIONS))
        note_w = int(min(width, height * 1.8) * rng.uniform(low, high))
        note_h = int(note_w * rng.uniform(0.45, 0.52))
        note, note_labels = _render_note(rng, denomination, note_w, note_h, config)
        angle = rng.uniform(-config.max_rotation_deg, config.max_rotation_deg) if rng.random() < 0.5 else 0.0
        note, note_labels = _rotate_note(note, note_labels, angle)
        spot = _free_spot(rng, note.size, (width, height), placed)
        if spot is None:
            continue
        canvas.paste(note, spot, note)
        placed.append((spot[0], spot[1], spot[0] + note.width, spot[1] + note.height))
        labels.extend(
            (cls, x0 + spot[0], y0 + spot[1], x1 + spot[0], y1 + spot[1])
            for cls, x0, y0, x1, y1 in note_labels
        )
    return labels


def _free_spot(
    rng: np.random.Generator,
    size: tuple[int, int],
    canvas_size: tuple[int, int],
    placed: list[tuple[int, int, int, int]],
    tries: int = 30,
) -> tuple[int, int] | None:
    """A top-left corner where a ``size`` note lies fully inside the canvas and clear of ``placed`` notes."""
    free_x, free_y = canvas_size[0] - size[0], canvas_size[1] - size[1]
    if free_x < 0 or free_y < 0:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(0, free_x + 1)), int(rng.integers(0, free_y + 1))
        box = (x, y, x + size[0], y + size[1])
        if not any(_boxes_overlap(box, other, margin=4) for other in placed):
            return x, y
    return None


def render_scene(
    rng: np.random.Generator, width: int, height: int, domain: str = "standard"
) -> tuple[Image.Image, list[PixelBox]]:
    """Draw one scene; return the RGB image and its labels as ``(cls, x0, y0, x1, y1)`` pixel boxes."""
    config = _domain_config(domain)
    canvas = paint_background(rng, width, height, config.background_cells, config.background_noise)
    draw_distractors(rng, canvas, int(rng.integers(config.distractors[0], config.distractors[1] + 1)))
    weights = np.asarray(config.note_count_weights)
    count = int(rng.choice(len(weights), p=weights / weights.sum()))
    return canvas, _place_notes(rng, canvas, count, config)


def _domain_config(domain: str) -> DomainConfig:
    try:
        return DOMAIN_CONFIGS[domain]
    except KeyError:
        raise DatasetError(
            f"unknown synthetic domain {domain!r}; choose one of {list(DOMAIN_CONFIGS)}"
        ) from None


def yolo_label_text(labels: list[PixelBox], width: int, height: int) -> str:
    """Pixel boxes -> YOLO label lines ``cls cx cy w h`` (normalized, 6 decimals), one per box."""
    lines = []
    for cls, x0, y0, x1, y1 in labels:
        x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
        y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
        if x1 - x0 < 1 or y1 - y0 < 1:
            continue
        cx, cy = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
        lines.append(f"{cls} {cx:.6f} {cy:.6f} {(x1 - x0) / width:.6f} {(y1 - y0) / height:.6f}")
    return "".join(line + "\n" for line in lines)


def generate_dataset(
    out: str | Path,
    images: int,
    seed: int,
    width: int = 640,
    height: int = 480,
    split: str = "val",
    domain: str = "standard",
) -> Path:
    """Write ``images`` scenes to ``out/images/<split>/*.jpg`` + ``out/labels/<split>/*.txt`` and a
    ``data.yaml`` (splits already present under ``out/images`` are kept). Returns the ``data.yaml`` path."""
    _check_request(images, width, height, split)
    _domain_config(domain)  # fail on a bad domain before anything is written
    root = Path(out)
    image_dir, label_dir = root / "images" / split, root / "labels" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    for index in range(images):
        rng = np.random.default_rng([seed, index])
        scene, labels = render_scene(rng, width, height, domain)
        stem = f"synth_{index:05d}"
        scene.save(image_dir / f"{stem}.jpg", format="JPEG", quality=JPEG_QUALITY)
        (label_dir / f"{stem}.txt").write_text(yolo_label_text(labels, width, height), encoding="utf-8")
    return _write_data_yaml(root, split)


def _check_request(images: int, width: int, height: int, split: str) -> None:
    if images < 1:
        raise DatasetError(f"--images must be at least 1, got {images}")
    if width < 64 or height < 64:
        raise DatasetError(f"image size must be at least 64x64, got {width}x{height}")
    if not split or "/" in split or "\\" in split or split.startswith("."):
        raise DatasetError(f"split must be a plain directory name, got {split!r}")


def _write_data_yaml(root: Path, split: str) -> Path:
    """Name every split present; YOLOv5 wants ``train`` and ``val``, so a missing one reuses ``split``."""
    present = sorted(p.name for p in (root / "images").iterdir() if p.is_dir())
    entries: dict[str, object] = {"path": "."}
    for name in present:
        entries[name] = f"images/{name}"
    for required in ("train", "val"):
        entries.setdefault(required, f"images/{split}")
    names = list(default_class_table().fine_names)
    entries["nc"] = len(names)
    entries["names"] = names
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(entries, sort_keys=False), encoding="utf-8")
    return path
