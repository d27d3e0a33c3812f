"""Plates and company words drawn at run time onto real frames, for ``python -m bench plates`` and the tests.

Nothing here is a stored image: every plate is rendered from a random valid number in its real
colours and layout (440×140 mm, 7 characters in narrow cells with the dot after the issuing letter;
480×140 mm and 8 characters for green new-energy plates), with Debian's ``fonts-noto-cjk`` found
through ``fc-match``, then warped in perspective onto a vehicle box of a real frame. The scene is
scaled so the plate has the requested pixel height against a vehicle of plausible size (a plate is
about a seventh of a car's height as a camera sees it), so small plates really are small in it.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gridwatch.edge.reading.plate_format import DIGITS, LETTERS, PROVINCES, PlateColour

PLATE_MM = {PlateColour.GREEN: (480, 140)}
DEFAULT_MM = (440, 140)
PLATE_SHARE_OF_VEHICLE = 1 / 7  # plate height / vehicle box height in the scaled scene
# (background top, background bottom, character) in BGR
COLOURS = {
    PlateColour.BLUE: ((200, 70, 10), (200, 70, 10), (250, 250, 250)),
    PlateColour.YELLOW: ((20, 190, 245), (20, 190, 245), (20, 20, 20)),
    PlateColour.GREEN: ((235, 250, 235), (110, 200, 80), (20, 20, 20)),
    PlateColour.WHITE: ((240, 240, 240), (240, 240, 240), (20, 20, 20)),
}
RED = (30, 30, 210)


class FontMissing(RuntimeError):
    pass


@functools.cache
def cjk_font_file() -> tuple[str, int]:
    """(file, face index) of the Simplified Chinese Noto Sans CJK bold face, as fontconfig resolves it."""
    try:
        found = subprocess.run(["fc-match", "Noto Sans CJK SC:style=Bold", "--format", "%{file}\t%{index}"],
                               capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise FontMissing("fc-match is not available; install fontconfig and fonts-noto-cjk") from exc
    path, index = found.split("\t")
    if "CJK" not in path:
        raise FontMissing(f"fc-match found {path!r}, not Noto Sans CJK: install Debian's fonts-noto-cjk")
    return path, int(index)


@functools.cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    path, index = cjk_font_file()
    return ImageFont.truetype(path, size, index=index)


def random_plate(rng: np.random.Generator, colour: PlateColour) -> str:
    """A valid number for a plate of ``colour`` (at most two letters after the issuing letter, as issued)."""
    head = rng.choice(list(PROVINCES)) + rng.choice(list(LETTERS))
    if colour is PlateColour.GREEN:  # small new-energy car: D (electric) or F (hybrid) then 5 digits
        return head + rng.choice(["D", "F"]) + "".join(rng.choice(list(DIGITS), 5))
    if colour is PlateColour.WHITE:
        return head + "".join(rng.choice(list(DIGITS), 4)) + "警"
    tail = list(rng.choice(list(DIGITS), 5))
    for position in rng.choice(5, size=int(rng.integers(0, 3)), replace=False):
        tail[position] = rng.choice(list(LETTERS))
    return head + "".join(tail)


def render_plate(plate: str, colour: PlateColour, height_px: int = 140) -> np.ndarray:
    """The plate face (BGR) at ``height_px``: its colours, a border, narrow characters and the dot."""
    width_mm, height_mm = PLATE_MM.get(colour, DEFAULT_MM)
    scale = height_px / height_mm
    width_px = round(width_mm * scale)
    top, bottom, ink = COLOURS[colour]
    ramp = np.linspace(0, 1, height_px)[:, None, None]
    face = ((1 - ramp) * np.array(top) + ramp * np.array(bottom)) * np.ones((height_px, width_px, 3))
    face = face.astype(np.uint8)
    border = max(1, round(3 * scale))
    cv2.rectangle(face, (border, border), (width_px - 1 - border, height_px - 1 - border), ink, border)
    cell_w, cell_h, gap, dot = 45 * scale, 90 * scale, 12 * scale, 22 * scale
    count = len(plate)
    total = count * cell_w + (count - 1) * gap + dot
    x = (width_px - total) / 2
    y = (height_px - cell_h) / 2
    for position, character in enumerate(plate):
        colour_of_ink = RED if character in "警" else ink
        glyph = _glyph(character, round(cell_h), colour_of_ink)
        glyph_w = round(cell_w)
        glyph = cv2.resize(glyph, (glyph_w, round(cell_h)), interpolation=cv2.INTER_AREA)
        x0, y0 = round(x), round(y)
        mask = glyph[..., 3:4].astype(np.float32) / 255
        region = face[y0:y0 + glyph.shape[0], x0:x0 + glyph_w]
        face[y0:y0 + glyph.shape[0], x0:x0 + glyph_w] = (region * (1 - mask) + glyph[..., :3] * mask).astype(np.uint8)
        x += cell_w + gap
        if position == 1:
            cv2.circle(face, (round(x + dot / 2 - gap / 2), height_px // 2), max(1, round(5 * scale)), ink, -1)
            x += dot
    return face


def _glyph(character: str, height: int, ink: tuple[int, int, int]) -> np.ndarray:
    """One character as BGRA, cut to its ink and stretched to fill a ``height``-high cell (plates use tall glyphs)."""
    font = _font(height)
    canvas = Image.new("L", (height * 2, height * 2), 0)
    ImageDraw.Draw(canvas).text((height // 2, height // 4), character, font=font, fill=255)
    alpha = np.array(canvas)
    ys, xs = np.nonzero(alpha > 0)
    alpha = alpha[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    out = np.zeros((*alpha.shape, 4), np.uint8)
    out[..., :3] = ink
    out[..., 3] = alpha
    return out


def render_text_patch(text: str, height_px: int, ink: tuple[int, int, int],
                      background: tuple[int, int, int] | None) -> np.ndarray:
    """Words as printed on a jacket or a box: one line at ``height_px`` BGRA (transparent without a background)."""
    font = _font(height_px)
    left, top, right, bottom = font.getbbox(text)
    pad = max(2, height_px // 6)
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), text, font=font, fill=255)
    alpha = np.array(canvas)
    out = np.zeros((*alpha.shape, 4), np.uint8)
    out[..., :3] = ink
    out[..., 3] = alpha
    if background is not None:
        out[..., :3] = np.where(alpha[..., None] > 0, np.array(ink), np.array(background)).astype(np.uint8)
        out[..., 3] = 255
    return out


def perspective(face: np.ndarray, yaw_deg: float, roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """``face`` turned by ``yaw_deg`` about its vertical axis and ``roll_deg`` in plane, as a pinhole sees it.

    Returns the warped BGRA image (alpha marks the plate) and its four corners in that image."""
    h, w = face.shape[:2]
    focal = 2.5 * w
    yaw, roll = np.radians(yaw_deg), np.radians(roll_deg)
    corners = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]], np.float64)
    rotated = corners @ np.array([[np.cos(roll), np.sin(roll)], [-np.sin(roll), np.cos(roll)]])
    x, y = rotated[:, 0], rotated[:, 1]
    z = focal + x * np.sin(yaw)
    projected = np.stack([focal * x * np.cos(yaw) / z, focal * y / z], axis=1)
    projected -= projected.min(axis=0)
    size = (int(np.ceil(projected[:, 0].max())) + 1, int(np.ceil(projected[:, 1].max())) + 1)
    matrix = cv2.getPerspectiveTransform(corners.astype(np.float32) + np.float32([w / 2, h / 2]),
                                         projected.astype(np.float32))
    bgra = np.dstack([face[..., :3], face[..., 3] if face.shape[2] == 4 else np.full((h, w), 255, np.uint8)])
    return cv2.warpPerspective(bgra, matrix, size, flags=cv2.INTER_AREA), projected


def paste(image: np.ndarray, patch: np.ndarray, centre: tuple[float, float]) -> tuple[int, int, int, int]:
    """Blend a BGRA ``patch`` into ``image`` (in place) centred at ``centre``; return the pasted box."""
    ph, pw = patch.shape[:2]
    x0, y0 = round(centre[0] - pw / 2), round(centre[1] - ph / 2)
    x1, y1 = max(0, x0), max(0, y0)
    x2, y2 = min(image.shape[1], x0 + pw), min(image.shape[0], y0 + ph)
    cut = patch[y1 - y0:y2 - y0, x1 - x0:x2 - x0]
    alpha = cut[..., 3:4].astype(np.float32) / 255
    image[y1:y2, x1:x2] = (image[y1:y2, x1:x2] * (1 - alpha) + cut[..., :3] * alpha).astype(np.uint8)
    return x1, y1, x2, y2


@dataclass(frozen=True)
class Scene:
    """A real frame scaled and cut around one vehicle, with a plate on it."""

    image: np.ndarray
    vehicle_box: np.ndarray  # x1 y1 x2 y2 in ``image``
    plate: str
    colour: PlateColour
    plate_height_px: int


def _around(frame: np.ndarray, box: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``frame`` scaled by ``scale`` and cut to ``box`` plus a margin; the box in the cut's pixels."""
    scaled = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    box = np.asarray(box, np.float64) * scale
    margin = 0.15 * (box[2] - box[0])
    cx1, cy1 = int(max(0, box[0] - margin)), int(max(0, box[1] - margin))
    cx2, cy2 = int(min(scaled.shape[1], box[2] + margin)), int(min(scaled.shape[0], box[3] + margin))
    return scaled[cy1:cy2, cx1:cx2].copy(), box - [cx1, cy1, cx1, cy1]


def _warped_to_height(face: np.ndarray, height_px: int, yaw_deg: float, roll_deg: float) -> np.ndarray:
    warped, corners = perspective(face, yaw_deg, roll_deg)
    shrink = height_px / (corners[:, 1].max() - corners[:, 1].min())
    return cv2.resize(warped, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)


def plate_scene(frame: np.ndarray, vehicle_box: np.ndarray, plate: str, colour: PlateColour, height_px: int,
                yaw_deg: float, roll_deg: float, rng: np.random.Generator) -> Scene:
    """Scale ``frame`` so that ``vehicle_box`` fits a plate ``height_px`` high, cut around it and put the plate on.

    The plate sits in the lower part of the box, horizontally near its centre (as on the clip's cars)."""
    scale = height_px / (PLATE_SHARE_OF_VEHICLE * float(vehicle_box[3] - vehicle_box[1]))
    image, box = _around(frame, vehicle_box, scale)
    warped = _warped_to_height(render_plate(plate, colour, max(height_px * 3, 60)), height_px, yaw_deg, roll_deg)
    width = box[2] - box[0]
    centre = (box[0] + width * (0.5 + rng.uniform(-0.1, 0.1)), box[1] + (box[3] - box[1]) * rng.uniform(0.7, 0.82))
    paste(image, warped, centre)
    return Scene(image, box, plate, colour, height_px)


# How each company prints its words on jackets and boxes: (ink, background or None for print on the cloth), BGR
COMPANY_PRINT = {
    "美团外卖": ((0, 200, 255), None),
    "饿了么": ((230, 140, 0), (250, 250, 250)),
    "顺丰速运": ((245, 245, 245), None),
    "京东物流": ((30, 30, 220), (250, 250, 250)),
}
WORD_SHARE_OF_PERSON_WIDTH = 0.7


def words_scene(frame: np.ndarray, person_box: np.ndarray, word: str, height_px: int, yaw_deg: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``word`` printed across the torso of the person in ``person_box``, the scene scaled so the word is
    ``height_px`` high and fits the torso; returns the image and the person box in it."""
    ink, background = COMPANY_PRINT[word]
    patch = render_text_patch(word, max(height_px * 3, 48), ink, background)
    warped = _warped_to_height(patch, height_px, yaw_deg, 0.0)
    scale = warped.shape[1] / (WORD_SHARE_OF_PERSON_WIDTH * float(person_box[2] - person_box[0]))
    image, box = _around(frame, person_box, scale)
    centre = ((box[0] + box[2]) / 2 + rng.uniform(-0.05, 0.05) * (box[2] - box[0]),
              box[1] + (box[3] - box[1]) * rng.uniform(0.3, 0.4))
    paste(image, warped, centre)
    return image, box
