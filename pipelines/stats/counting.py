"""Counting rules: which objects count, over which area, so that densities are unbiased.

The analysed region is a rectangle in LabelMe pixel coordinates (pixel centres at integers, so
the whole image is ``(-0.5, -0.5, W - 0.5, H - 0.5)``). Objects whose centre lies outside it are
not analysed at all. Inside it, one of three rules decides which objects are *counted* (enter
counts, densities, coverage and size statistics):

- ``all``: every object; those touching the region's border are flagged (their visible part is
  measured, so their size is too small and a border-cut object may be counted in two images).
- ``exclude_border``: objects touching the border are left out; simple, but large objects touch
  the border more often, so densities come out low and sizes small.
- ``guard_frame``: an object counts when its centre lies in the region shrunk by a guard width
  on every side, and densities are divided by that inner area. Every object has exactly one
  centre, so the count is unbiased; with a guard at least the largest object radius, every
  counted object lies wholly inside the region and is measured whole.

Spatial statistics (nearest neighbours, Clark–Evans, Ripley) use all analysed objects as
neighbours, with their own edge corrections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.errors import InvalidInput

COUNTING_RULES = ("all", "exclude_border", "guard_frame")
DEFAULT_BORDER_TOLERANCE_PX = 1.0


@dataclass(frozen=True)
class Region:
    """Axis-aligned rectangle in LabelMe pixel coordinates ``(x, y)``."""

    x_min: float
    y_min: float
    x_max: float
    y_max: float

    @property
    def width_px(self) -> float:
        return self.x_max - self.x_min

    @property
    def height_px(self) -> float:
        return self.y_max - self.y_min

    @property
    def area_px(self) -> float:
        return max(0.0, self.width_px) * max(0.0, self.height_px)

    @property
    def perimeter_px(self) -> float:
        return 2.0 * (max(0.0, self.width_px) + max(0.0, self.height_px))

    def shrink(self, margin_px: float) -> Region:
        return Region(
            self.x_min + margin_px,
            self.y_min + margin_px,
            self.x_max - margin_px,
            self.y_max - margin_px,
        )

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``(n,) bool``: points inside (the lower/left edge included, the upper/right not)."""
        return (x >= self.x_min) & (x < self.x_max) & (y >= self.y_min) & (y < self.y_max)

    def border_distance_px(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Distance of points inside the region to its nearest edge."""
        return np.minimum.reduce([x - self.x_min, self.x_max - x, y - self.y_min, self.y_max - y])

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x_min, self.y_min, self.x_max, self.y_max)


def image_region(height: int, width: int) -> Region:
    """The whole image: pixel centres at integers, so its edges lie half a pixel outside them."""
    return Region(-0.5, -0.5, width - 0.5, height - 0.5)


def region_from_tuple(
    values: tuple[float, float, float, float], height: int, width: int, where: str = "region"
) -> Region:
    """A user region ``(x_min, y_min, x_max, y_max)`` in px, clipped to the image."""
    x_min, y_min, x_max, y_max = (float(v) for v in values)
    whole = image_region(height, width)
    region = Region(
        max(x_min, whole.x_min),
        max(y_min, whole.y_min),
        min(x_max, whole.x_max),
        min(y_max, whole.y_max),
    )
    if region.width_px <= 0 or region.height_px <= 0:
        raise InvalidInput(
            f"{where} ({x_min:g}, {y_min:g}, {x_max:g}, {y_max:g}) px does not overlap the "
            f"{width}x{height} image; give x_min < x_max and y_min < y_max inside the image"
        )
    return region


@dataclass(frozen=True)
class CountingRule:
    """How objects are counted (see the module docstring).

    ``guard_px``: width of the guard frame for ``guard_frame``; None uses the largest
    centre-to-outline distance among the image's objects. ``border_tolerance_px``: an object
    touches the border when its bounds come this close to it.
    """

    rule: str = "all"
    guard_px: float | None = None
    border_tolerance_px: float = DEFAULT_BORDER_TOLERANCE_PX

    def __post_init__(self) -> None:
        if self.rule not in COUNTING_RULES:
            raise InvalidInput(
                f"unknown counting rule {self.rule!r}; choose one of: {', '.join(COUNTING_RULES)}"
            )
        if self.guard_px is not None and not (self.guard_px >= 0):
            raise InvalidInput(f"guard frame width must be ≥ 0 px, got {self.guard_px}")
        if not self.border_tolerance_px >= 0:
            raise InvalidInput(f"border tolerance must be ≥ 0 px, got {self.border_tolerance_px}")


@dataclass(frozen=True)
class CountingOutcome:
    """Result of a counting rule on one image; arrays are ``(n_objects,) bool``."""

    analysed: np.ndarray
    touches_border: np.ndarray
    counted: np.ndarray
    region: Region
    counting_region: Region
    guard_px: float | None
    description: str


def apply_counting_rule(
    rule: CountingRule,
    region: Region,
    cx: np.ndarray,
    cy: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    extent_px: np.ndarray,
    where: str = "image",
) -> CountingOutcome:
    """Flag analysed, border-touching and counted objects of one image.

    ``bounds`` is ``(x_min, y_min, x_max, y_max)`` per object; ``extent_px`` the largest
    centre-to-outline distance (sets the default guard width).
    """
    x_min, y_min, x_max, y_max = bounds
    analysed = region.contains(cx, cy)
    tol = rule.border_tolerance_px
    touches = analysed & (
        (x_min <= region.x_min + tol)
        | (y_min <= region.y_min + tol)
        | (x_max >= region.x_max - tol)
        | (y_max >= region.y_max - tol)
    )
    tolerance = f"within {tol:g} px"
    if rule.rule == "all":
        return CountingOutcome(
            analysed,
            touches,
            analysed.copy(),
            region,
            region,
            None,
            "all objects whose centre lies in the analysed region are counted; objects touching "
            f"its border ({tolerance}) are flagged, not excluded",
        )
    if rule.rule == "exclude_border":
        return CountingOutcome(
            analysed,
            touches,
            analysed & ~touches,
            region,
            region,
            None,
            f"objects touching the border of the analysed region ({tolerance}) are excluded; "
            "densities divide by the whole region (biased low when objects are large)",
        )
    guard = rule.guard_px
    if guard is None:
        guard = float(extent_px[analysed].max()) if analysed.any() else 0.0
    inner = region.shrink(guard)
    if inner.width_px <= 0 or inner.height_px <= 0:
        raise InvalidInput(
            f"{where}: a guard frame of {guard:.1f} px leaves no inner area in the "
            f"{region.width_px:.0f}x{region.height_px:.0f} px region; choose a smaller guard width"
        )
    counted = analysed & inner.contains(cx, cy)
    return CountingOutcome(
        analysed,
        touches,
        counted,
        region,
        inner,
        guard,
        f"guard frame of {guard:.2f} px: objects whose centre lies in the inner frame are "
        "counted and densities divide by the inner frame's area (unbiased)",
    )
