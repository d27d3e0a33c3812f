"""The blur manifest: the edge's account of what it blurred in one stored image, sent with its upload.

Snapshots travel over HTTP, not MQTT, but edge and server must agree on this record as they agree on
the event payload, so it lives with the contract. The edge sends it as the ``X-GridWatch-Blur``
header (compact JSON) of ``PUT /api/snapshots/{sha256}``; a server whose policy requires blurred
faces refuses an upload without one (or whose faces are sharp, when it can look itself). The record
names the face model by manifest name and sha256, so a data-protection officer can tell which
detector vouched for an image, and lists every region blurred, by kind, in the image's pixels.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HEADER = "X-GridWatch-Blur"
MAX_HEADER_BYTES = 16 * 1024  # a frame with hundreds of faces still fits; more is not a manifest

RegionKind = Literal["face", "head", "plate"]  # detected face, head-region fallback, plate region


class BlurRegion(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: RegionKind
    box: tuple[int, int, int, int] = Field(description="x1, y1, x2, y2 in the image's pixels, as blurred (padded)")


class BlurManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(description="the face detector's name in the model manifest")
    model_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    faces_blurred: bool = Field(description="the rule's policy: every face found (and every unmatched head) blurred")
    plates_blurred: bool = Field(description="the rule's policy: vehicle plate regions blurred")
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    regions: tuple[BlurRegion, ...] = ()

    def cropped(self, x1: int, y1: int, x2: int, y2: int) -> BlurManifest:
        """The manifest of the crop (x1, y1, x2, y2) of this image: regions shifted and clipped into it."""
        regions = []
        for region in self.regions:
            bx1, by1, bx2, by2 = region.box
            cx1, cy1, cx2, cy2 = max(bx1, x1), max(by1, y1), min(bx2, x2), min(by2, y2)
            if cx2 > cx1 and cy2 > cy1:
                regions.append(BlurRegion(kind=region.kind, box=(cx1 - x1, cy1 - y1, cx2 - x1, cy2 - y1)))
        return self.model_copy(update={"width": x2 - x1, "height": y2 - y1, "regions": tuple(regions)})

    def to_header(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_header(cls, value: str) -> BlurManifest:
        if len(value.encode()) > MAX_HEADER_BYTES:
            raise ValueError(f"blur manifest larger than {MAX_HEADER_BYTES} bytes")
        return cls.model_validate_json(value)
