"""File formats: LabelMe JSON (``labelme``), instance masks (``masks``), COCO export (``coco``)."""
