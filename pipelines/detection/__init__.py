"""Instance segmentation of microscopy objects, trained from a few LabelMe crops.

Engines (``unet`` — the fast default, ``threshold`` — classical baseline, ``maskrcnn``) sit
behind one registry (:mod:`pipelines.detection.registry`); :mod:`pipelines.detection.api` is the
entry point for training, prediction and in-process detection. Heavy libraries (torch) are
imported by the engine modules only, so importing this package stays cheap.
"""
