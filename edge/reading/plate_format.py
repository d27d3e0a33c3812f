"""What a mainland Chinese plate looks like: its characters, its layout and its background colours.

A read only counts when it fits the format (province character, issuing letter, then 5 characters,
or 6 on a green new-energy plate) and the background has a plate colour: the text detector finds
every word in a vehicle box (model names, stickers, dealer frames), and the format is what tells a
plate from the rest. A white plate's last character may be a class character (警 police, 学 driving
school...), which is part of the number.
"""

from __future__ import annotations

import re
from enum import StrEnum

import cv2
import numpy as np

# The 31 mainland provinces' one-character abbreviations, as the first character of every plate.
PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
# Letters on plates: I and O are never issued (they read as 1 and 0).
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"
# A plate's last character may name its class instead of a letter or digit.
CLASS_CHARACTERS = "警学挂领使港澳"

PLATE_PATTERN = re.compile(
    rf"^[{PROVINCES}][{LETTERS}]"
    rf"(?:[{LETTERS}{DIGITS}]{{4}}[{LETTERS}{DIGITS}{CLASS_CHARACTERS}]|[{LETTERS}{DIGITS}]{{6}})$"
)
# What the recogniser confuses with a plate's own characters: separators it reads, and O/I it prefers.
_SEPARATORS = str.maketrans("", "", "·•・.．-—_ :：")
_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "o": "0", "i": "1"})


class PlateColour(StrEnum):
    BLUE = "blue"      # ordinary small cars: white characters on blue
    YELLOW = "yellow"  # large vehicles, driving schools: black on yellow
    GREEN = "green"    # new-energy vehicles: black on a green gradient, 6 characters after the letter
    WHITE = "white"    # police and government: black on white (a red class character)


def normalise(text: str) -> str | None:
    """The plate number in ``text`` (separators dropped, O/I after the letter as 0/1), or None when it is no plate."""
    text = text.strip().translate(_SEPARATORS).upper()
    if len(text) < 7:
        return None
    text = text[:2] + text[2:].translate(_LOOKALIKES)
    return text if PLATE_PATTERN.match(text) else None


def display(plate: str) -> str:
    """The plate as it is painted: a dot after the issuing letter (京A·12345)."""
    return f"{plate[:2]}·{plate[2:]}"


def fits_colour(plate: str, colour: PlateColour) -> bool:
    """True when a number of this length and kind can be painted on a plate of ``colour``."""
    if colour is PlateColour.GREEN:
        return len(plate) == 8
    if colour is PlateColour.WHITE:
        return len(plate) == 7
    return len(plate) == 7 and plate[-1] not in "警使"


def background_colour(strip: np.ndarray) -> PlateColour | None:
    """The plate colour of a rectified text strip (BGR), or None when its background is no plate's.

    The background is the strip's most common hue among its pixels, judged relative to the strip's
    own brightness so that dusk does not turn white into grey: characters cover a third of a plate,
    so the median of the saturated (or of all) pixels is the background's.
    """
    hsv = cv2.cvtColor(strip, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.float32)
    hue, sat, val = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    bright = val >= np.percentile(val, 30)  # leave out the darkest pixels: characters, shadows, the frame
    coloured = bright & (sat >= 60)
    share = {colour: float((coloured & (low <= hue) & (hue <= high)).sum()) / max(1, int(bright.sum()))
             for colour, (low, high) in HUES.items()}
    colour, most = max(share.items(), key=lambda item: item[1])
    if most >= (GREEN_SHARE if colour is PlateColour.GREEN else COLOURED_SHARE):
        return colour
    if float(np.median(sat[bright])) < 60 and float(np.median(val[bright])) >= 50:
        return PlateColour.WHITE
    return None


# OpenCV hue ranges (0-180) of the coloured plates' backgrounds
HUES = {PlateColour.BLUE: (95, 130), PlateColour.YELLOW: (12, 35), PlateColour.GREEN: (36, 90)}
COLOURED_SHARE = 0.3  # of the bright pixels: a blue or yellow background fills most of the strip
GREEN_SHARE = 0.15    # a new-energy plate fades from green to white towards its top
