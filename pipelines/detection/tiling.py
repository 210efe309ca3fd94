"""Whole-image inference of any size in overlapping tiles, merged without seams.

Two merging rules, one per kind of engine:

* map engines (U-Net): each tile's *core* (the tile minus ``overlap_px`` on each inner side) is
  written into one full-size probability map, and instances are extracted once from the stitched
  map. With the overlap above the network's receptive field the map equals a whole-image pass,
  so an object on a seam can be neither duplicated nor cut.
* instance engines (Mask R-CNN): an instance belongs to the tile whose core holds its bounding
  box centre; with the overlap above the largest object it lies whole inside that tile. Owned
  instances are pasted in descending score order and never overwrite pixels already taken.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pipelines.progress import ProgressCallback, StageTimer


@dataclass(frozen=True)
class Tile:
    """Read window ``[top, bottom) x [left, right)`` and the core it owns, in image pixels."""

    top: int
    left: int
    bottom: int
    right: int
    core_top: int
    core_left: int
    core_bottom: int
    core_right: int

    def read(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def core(self) -> tuple[slice, slice]:
        return slice(self.core_top, self.core_bottom), slice(self.core_left, self.core_right)

    def core_in_tile(self) -> tuple[slice, slice]:
        return (
            slice(self.core_top - self.top, self.core_bottom - self.top),
            slice(self.core_left - self.left, self.core_right - self.left),
        )


def _starts(length: int, tile_px: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Core intervals along one axis: they partition ``[0, length)``.

    Inner edges fall on multiples of ``multiple`` so every read window of a network that
    halves its input ``log2(multiple)`` times needs no padding of its own.
    """
    count = max(1, int(np.ceil(length / tile_px)))
    units = length // multiple
    count = min(count, max(1, units))
    # Spread the cores evenly so the last tile is not a thin sliver.
    edges = (np.linspace(0, units, count + 1).round().astype(int) * multiple).tolist()
    edges[-1] = length
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def tile_grid(
    height: int, width: int, tile_px: int, overlap_px: int, multiple: int = 1
) -> list[Tile]:
    """Tiles whose cores (at most ``tile_px`` a side) partition the image; each tile reads its
    core plus ``overlap_px`` of context on every side that is inside the image."""
    overlap_px = -(-overlap_px // multiple) * multiple
    tiles = []
    for core_top, core_bottom in _starts(height, tile_px, multiple):
        for core_left, core_right in _starts(width, tile_px, multiple):
            tiles.append(
                Tile(
                    top=max(0, core_top - overlap_px),
                    left=max(0, core_left - overlap_px),
                    bottom=min(height, core_bottom + overlap_px),
                    right=min(width, core_right + overlap_px),
                    core_top=core_top,
                    core_left=core_left,
                    core_bottom=core_bottom,
                    core_right=core_right,
                )
            )
    return tiles


def pad_to_multiple(array: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad the last two axes up to a multiple (a U-Net needs sizes divisible by 2^depth)."""
    height, width = array.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return array, (height, width)
    pad = [(0, 0)] * (array.ndim - 2) + [(0, pad_h), (0, pad_w)]
    mode = "reflect" if height > pad_h and width > pad_w else "edge"
    return np.pad(array, pad, mode=mode), (height, width)


def iterate_tiles(
    height: int,
    width: int,
    tile_px: int,
    overlap_px: int,
    progress: ProgressCallback | None,
    stage: str = "predict",
    multiple: int = 1,
) -> Iterator[Tile]:
    """Yield tiles, reporting progress after each one."""
    tiles = tile_grid(height, width, tile_px, overlap_px, multiple)
    timer = StageTimer(progress, stage, len(tiles), min_interval_s=0.5)
    for index, tile in enumerate(tiles):
        yield tile
        timer.update(index + 1, message=f"tile {index + 1}/{len(tiles)}")


def predict_maps_tiled(
    forward: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    channels: int,
    tile_px: int,
    overlap_px: int,
    progress: ProgressCallback | None = None,
    multiple: int = 1,
) -> np.ndarray:
    """Stitch ``forward(tile (h, w)) -> (channels, h, w)`` over the image into ``(C, H, W)``.

    The image is padded once to a multiple of ``multiple`` and every tile edge is aligned to
    it, so the stitched map equals a whole-image pass wherever the overlap exceeds the
    network's receptive field.
    """
    padded, (height, width) = pad_to_multiple(image, multiple)
    out = np.empty((channels, *padded.shape), dtype=np.float32)
    for tile in iterate_tiles(*padded.shape, tile_px, overlap_px, progress, multiple=multiple):
        maps = forward(padded[tile.read()])
        rows, cols = tile.core_in_tile()
        out[(slice(None), *tile.core())] = maps[:, rows, cols]
    return out[:, :height, :width]


@dataclass(eq=False)
class TileInstances:
    """Instances found in one tile: boolean masks in tile coordinates, classes and scores."""

    masks: list[np.ndarray]  # each (h, w) bool over the tile's read window
    class_ids: np.ndarray
    scores: np.ndarray


def merge_tile_instances(
    height: int,
    width: int,
    found: list[tuple[Tile, TileInstances]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paste owned instances into one ``(H, W) int32`` label map; return labels, classes, scores.

    An instance is owned by the tile whose core contains its bounding-box centre; instances are
    pasted by descending score and only onto free pixels, so each object appears once.
    """
    candidates: list[tuple[float, int, Tile, np.ndarray]] = []
    for tile, result in found:
        for mask, class_id, score in zip(
            result.masks, result.class_ids, result.scores, strict=True
        ):
            rows, cols = np.nonzero(mask)
            if rows.size == 0:
                continue
            centre_row = tile.top + (rows.min() + rows.max()) / 2.0
            centre_col = tile.left + (cols.min() + cols.max()) / 2.0
            if not (
                tile.core_top <= centre_row < tile.core_bottom
                and tile.core_left <= centre_col < tile.core_right
            ):
                continue
            candidates.append((float(score), int(class_id), tile, mask))
    candidates.sort(key=lambda item: -item[0])
    labels = np.zeros((height, width), dtype=np.int32)
    class_ids: list[int] = []
    scores: list[float] = []
    for score, class_id, tile, mask in candidates:
        window = labels[tile.read()]
        free = mask & (window == 0)
        if free.sum() < 0.5 * mask.sum():
            continue  # mostly covered by a better-scored instance: a duplicate
        class_ids.append(class_id)
        scores.append(score)
        window[free] = len(class_ids)
    return labels, np.array(class_ids, dtype=np.int32), np.array(scores, dtype=np.float32)
