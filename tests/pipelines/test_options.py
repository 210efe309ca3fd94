"""Settings from dicts (CLI ``--set``, job specs, model.json): wrong types are one-line errors."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pipelines.detection.base import DetectOptions
from pipelines.detection.registry import create_config
from pipelines.errors import InvalidInput


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tile_px": "big"}, "tile_px='big' should be a whole number"),
        ({"tile_px": 512.5}, "tile_px=512.5 should be a whole number"),
        ({"score_threshold": None}, "score_threshold=None should be a number"),
        ({"score_threshold": True}, "should be a number"),
        ({"min_area_px": "20"}, "min_area_px='20' should be a number"),
    ],
)
def test_a_prediction_option_of_the_wrong_type_is_named(options, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        DetectOptions.from_dict(options)


def test_numbers_and_nulls_are_taken_where_they_fit():
    options = DetectOptions.from_dict({"score_threshold": 1, "min_area_px": None, "tile_px": 256})
    assert options.score_threshold == 1.0 and isinstance(options.score_threshold, float)
    assert options.min_area_px is None and options.tile_px == 256
    numpy_values = DetectOptions.from_dict({"tile_px": np.int64(128), "max_area_px": np.float32(9)})
    assert numpy_values.tile_px == 128 and type(numpy_values.tile_px) is int
    assert numpy_values.max_area_px == 9.0 and type(numpy_values.max_area_px) is float


def test_engine_settings_are_checked_and_lists_become_tuples():
    config = create_config("unet", {"channels": [8, 16], "augment": {"scale_range": [0.9, 1.1]}})
    assert config.channels == (8, 16)
    assert config.augment.scale_range == (0.9, 1.1)
    with pytest.raises(InvalidInput, match="batch_size='abc' should be a whole number"):
        create_config("unet", {"batch_size": "abc"})
    with pytest.raises(InvalidInput, match=r"augment\.scale_range takes 2 values"):
        create_config("unet", {"augment": {"scale_range": [0.9]}})
    with pytest.raises(InvalidInput, match=r"augment\.flips=1 should be true or false"):
        create_config("unet", {"augment": {"flips": 1}})
    with pytest.raises(InvalidInput, match="channels='a' should be a whole number"):
        create_config("unet", {"channels": ["a"]})
    with pytest.raises(InvalidInput, match="smoothing_grid_px=2 should be a list"):
        create_config("threshold", {"smoothing_grid_px": 2})
    with pytest.raises(InvalidInput, match="channels='8,16' should be a list"):
        create_config("unet", {"channels": "8,16"})
    with pytest.raises(InvalidInput, match="key: value pairs"):
        create_config("threshold", [["min_area_px", 3]])  # type: ignore[arg-type]
