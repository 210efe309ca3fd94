"""Image classification (issue 5): sort whole images or object crops into classes.

Modules, in the order data flows through them:

- :mod:`~pipelines.classification.samples`: one example (image or object crop) and reading it;
- :mod:`~pipelines.classification.datasets`: find labelled images (class sub-folders, a zip,
  LabelMe flags, LabelMe object crops), read them, split them per class;
- :mod:`~pipelines.classification.prediction_inputs`: what ``predict`` classifies, and the
  true classes the inputs reveal;
- :mod:`~pipelines.classification.preprocess`: image → network input (aspect kept, per-image
  percentile normalisation, grey → 3 channels);
- :mod:`~pipelines.classification.augment`: microscopy augmentation presets;
- :mod:`~pipelines.classification.engines`: the engine registry and configs (timm ConvNeXt);
- :mod:`~pipelines.classification.training`: the training loop;
- :mod:`~pipelines.classification.evaluation`: scores and confusion matrix as plain data;
- :mod:`~pipelines.classification.gradcam`: class-activation heatmaps and overlays;
- :mod:`~pipelines.classification.api`: ``train`` and ``predict``, called via
  :mod:`pipelines.tasks`.

Importing this package imports nothing heavy; torch and timm load with the modules that use
them.
"""
