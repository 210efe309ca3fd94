"""Tiny engine settings the app tests train through ``NOCODE_ML_APP_TRAIN_CONFIG``.

Both are learned networks trained through the real job path (local launcher, worker process).
They stop after a fixed number of steps or epochs, not after a time budget, so a run does the
same work however busy the 2 shared cores are; each trains in a few seconds.
"""

from __future__ import annotations

# A 2-level U-Net (8 and 16 channels) on 64-px patches, 80 steps of 8 patches: ~2-4 s of
# training on 2 cores. On the sample image (41 particles, 25 of them outlined in its crops) it
# reports 35 (seed 0) and 48 (seed 1) objects, after leaving out 1 detection on the burnt-in
# scale bar each (measured 2026-11-25 by training and predicting through pipelines.tasks).
TINY_UNET = {
    "engine": "unet",
    "channels": [8, 16],
    "patch_px": 64,
    "batch_size": 8,
    "max_steps": 80,
    "train_seconds": 60.0,
}
# ConvNeXt-atto on 48-px inputs for 60 epochs of the 24-image classification sample: ~7 s on
# 2 cores; it already tells the classes apart a little (46 % right where chance is 33 %), where
# 2 epochs at 32 px put every image in one class.
TINY_CONVNEXT = {"input_size_px": 48, "epochs": 60, "batch_size": 8}
APP_TRAIN_CONFIG = {"detect": TINY_UNET, "classify": TINY_CONVNEXT}
