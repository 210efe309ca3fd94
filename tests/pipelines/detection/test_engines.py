"""Threshold and Mask R-CNN engines behind the api; U-Net loss terms; assisted outlining."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.detection import api
from pipelines.detection.assist import propose_outline
from pipelines.detection.postprocess import match_instances
from pipelines.formats.labelme import Box
from pipelines.formats.masks import polygon_area_px

from .conftest import make_sample, write_labelled


@pytest.mark.parametrize("dark", [False, True])
def test_threshold_engine_calibrates_on_crops_and_finds_the_disks(tmp_path, dark):
    sample = make_sample(128, seed=7, n_particles=14, dark=dark)
    json_path = write_labelled(tmp_path, sample, [Box(0, 0, 64, 128)])
    model = api.train([json_path], tmp_path / "model", engine="threshold")
    detector = api.load_detector(model)
    assert detector.params.invert is dark
    detections = api.detect(detector, sample.pixels)
    counts = match_instances(detections.instances.labels, sample.truth.labels)
    assert counts.f1 >= 0.9


def test_threshold_engine_never_gives_a_class_without_examples_in_crops(tmp_path):
    from scipy import ndimage

    from pipelines.detection.threshold import UNSEEN_LOG_AREA
    from pipelines.formats.labelme import crop_rectangle, read_labelme, write_labelme

    sample = make_sample(128, seed=7, n_particles=14, n_sites=6)
    json_path = write_labelled(tmp_path, sample, None)
    # Crops round particles only: the single sites are labelled, but outside them.
    document = read_labelme(json_path)
    labels = sample.truth.labels
    is_site = np.isin(labels, np.flatnonzero(sample.truth.class_ids == 2) + 1)
    for rows, cols in ndimage.find_objects(labels)[:6]:
        box = Box(max(0, cols.start - 2), max(0, rows.start - 2), cols.stop + 2, rows.stop + 2)
        if not is_site[box.slices()].any():
            document.shapes.append(crop_rectangle(box))
    write_labelme(json_path, document)
    detector = api.load_detector(api.train([json_path], tmp_path / "model", engine="threshold"))
    assert detector.params.class_log_areas[1] == UNSEEN_LOG_AREA
    detections = api.detect(detector, sample.pixels, {"min_area_px": 1})
    assert detections.count > 0
    assert set(detections.instances.class_ids.tolist()) == {1}


def test_maskrcnn_engine_trains_saves_and_predicts(tmp_path):
    sample = make_sample(96, seed=8, n_particles=8)
    json_path = write_labelled(tmp_path, sample, [Box(0, 0, 96, 64)])
    config = {
        "patch_px": 64,
        "batch_size": 1,
        "max_steps": 2,
        "tile_px": 64,
        "overlap_px": 16,
        "anchor_sizes_px": [8, 16, 32, 64, 128],
    }
    model = api.train([json_path], tmp_path / "model", engine="maskrcnn", config=config)
    detector = api.load_detector(model)
    assert detector.backbone == "resnet18_fpn"
    written = api.predict(model, [tmp_path / "image.tif"], tmp_path / "out")
    assert len(written) == 3


def test_maskrcnn_fine_tunes_the_coco_network_with_small_anchors(tmp_path):
    """The GPU image's path: R50-FPN-v2 built, COCO-shaped weights loaded, our small anchors
    in place of COCO's, trained, saved, loaded and used. (The weights here are random, in the
    COCO file's exact layout: the real file cannot be downloaded in tests.)"""
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    coco = tmp_path / "coco.pth"
    torch.save(maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict(), coco)
    sample = make_sample(96, seed=8, n_particles=8)
    json_path = write_labelled(tmp_path, sample, [Box(0, 0, 96, 64)])
    config = {
        "backbone": "auto",
        "weights_path": str(coco),
        "patch_px": 64,
        "batch_size": 1,
        "max_steps": 1,
        "tile_px": 64,
        "overlap_px": 16,
    }
    model = api.train([json_path], tmp_path / "model", engine="maskrcnn", config=config)
    detector = api.load_detector(model)
    assert detector.backbone == "resnet50_fpn_v2"
    assert detector.network.rpn.anchor_generator.sizes == ((4,), (8,), (16,), (32,), (64,))
    written = api.predict(model, [tmp_path / "image.tif"], tmp_path / "out")
    assert len(written) == 3


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"anchor_sizes_px": [8, 16, 32]}, "anchor_sizes_px needs 5 sizes"),
        ({"backbone": "resnet50_fpn_v2", "aspect_ratios": [1.0]}, "needs 3 aspect_ratios"),
    ],
)
def test_maskrcnn_anchor_settings_that_cannot_fit_are_one_line_errors(tmp_path, setting, message):
    from pipelines.errors import InvalidInput

    sample = make_sample(64, seed=8, n_particles=4)
    json_path = write_labelled(tmp_path, sample, [Box(0, 0, 64, 64)])
    with pytest.raises(InvalidInput, match=message):
        api.train([json_path], tmp_path / "model", engine="maskrcnn", config=setting)
    assert not (tmp_path / "model").exists()


def test_a_bad_coco_weights_file_is_a_one_line_model_error(tmp_path):
    import torch

    from pipelines.detection.maskrcnn import load_coco_weights
    from pipelines.errors import ModelError

    network = torch.nn.Conv2d(1, 2, 3)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file")
    wrong = tmp_path / "wrong.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(1)}, wrong)
    for path in (garbage, wrong):
        with pytest.raises(ModelError, match="backbone=resnet18_fpn") as caught:
            load_coco_weights(network, path)
        assert "\n" not in str(caught.value)
    torch.save(torch.nn.Conv2d(1, 2, 3).state_dict(), tmp_path / "right.pth")
    load_coco_weights(network, tmp_path / "right.pth")


def test_propose_outline_follows_the_clicked_disk():
    rows, cols = np.mgrid[0:80, 0:80]
    image = np.full((80, 80), 100.0)
    image[(rows - 30) ** 2 + (cols - 40) ** 2 <= 8**2] = 200.0
    image[(rows - 30) ** 2 + (cols - 55.5) ** 2 <= 7**2] = 200.0  # a touching neighbour
    image += np.random.default_rng(0).normal(0, 3, image.shape)
    polygon = propose_outline(image, x=38, y=31)
    assert polygon is not None
    area = polygon_area_px(polygon)
    assert area == pytest.approx(np.pi * 8**2, rel=0.2)
    assert polygon[:, 0].max() < 50  # the neighbour is not included
    assert propose_outline(image, x=5, y=70) is None
    assert propose_outline(image, x=500, y=5) is None
    dark = 300.0 - image
    polygon = propose_outline(dark, x=40, y=30)
    assert polygon is not None and polygon_area_px(polygon) == pytest.approx(np.pi * 64, rel=0.2)


def test_unet_loss_weighs_only_the_rare_object_class():
    """The extra class-averaged term applies to the rarer object class, never to one class."""
    import torch

    from pipelines.detection.unet import UNetConfig
    from pipelines.detection.unet_network import training_loss

    torch.manual_seed(0)
    classes = torch.zeros(1, 16, 16, dtype=torch.int64)
    classes[0, 2:12, 2:12] = 1  # a big particle
    classes[0, 14, 14] = 2  # one single-atom pixel
    centre = torch.zeros(1, 16, 16)
    valid = torch.ones(1, 16, 16, dtype=torch.bool)
    logits = torch.randn(1, 4, 16, 16)
    plain = training_loss(logits, classes, centre, valid, UNetConfig(rare_class_weight=0.0))
    rare = training_loss(logits, classes, centre, valid, UNetConfig(rare_class_weight=1.0))
    assert torch.isfinite(rare) and float(rare) > float(plain)
    one_class = classes.clamp_max(1)
    logits_one = logits[:, [0, 1, 3]]
    assert torch.allclose(
        training_loss(logits_one, one_class, centre, valid, UNetConfig(rare_class_weight=0.0)),
        training_loss(logits_one, one_class, centre, valid, UNetConfig(rare_class_weight=1.0)),
    )


def test_contact_band_marks_only_where_two_objects_touch():
    """Two touching squares get a band along their shared edge; a lone square gets none."""
    import torch

    from pipelines.detection.unet import UNetConfig
    from pipelines.detection.unet_network import contact_band, training_loss

    ids = torch.zeros(1, 12, 12, dtype=torch.int32)
    ids[0, 2:6, 1:5] = 1
    ids[0, 2:6, 5:9] = 2  # shares the edge between columns 4 and 5 with object 1
    ids[0, 9:11, 9:11] = 3  # alone
    band = contact_band(ids)[0].numpy()
    assert band[2:6, 3:7].all()  # two pixels either side of the shared edge
    assert not band[:, :3].any() and not band[:, 7:].any() and not band[:2].any()
    assert not band[ids[0].numpy() == 0].any()
    gapped = ids.clone()
    gapped[0, :, 5] = 0  # a 1-px background gap between objects 1 and 2
    assert not contact_band(gapped).any()

    classes = (ids > 0).long()
    centre = torch.zeros(1, 12, 12)
    valid = torch.ones(1, 12, 12, dtype=torch.bool)
    logits = torch.zeros(1, 3, 12, 12)
    plain = training_loss(logits, classes, centre, valid, UNetConfig(contact_weight=0.0), ids)
    weighted = training_loss(logits, classes, centre, valid, UNetConfig(contact_weight=4.0), ids)
    # zero logits against a zero target: ln 2 per pixel, averaged over the 144 valid pixels
    expected = 4.0 * np.log(2.0) * band.sum() / 144
    assert float(weighted) - float(plain) == pytest.approx(expected, rel=1e-5)


def test_unet_precision_auto_uses_bfloat16_only_where_the_processor_has_it():
    """Emulated bfloat16 (x86 CPUs with plain AVX-512) is slower than float32, so "auto" must
    follow the processor's own feature flags; "fp32"/"bf16" are taken as asked."""
    import platform
    from pathlib import Path

    import torch

    from pipelines.detection.unet import UNetConfig
    from pipelines.detection.unet_network import use_bfloat16

    with pytest.raises(ValueError, match=r"precision must be one of .*got 'fp16'"):
        UNetConfig(precision="fp16")
    with pytest.raises(ValueError, match="train_precision"):
        UNetConfig(train_precision="half")
    assert use_bfloat16("fp32", "cpu") is False
    assert use_bfloat16("bf16", "cpu") is True
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() == "x86_64" and cpuinfo.exists():
        flags = set(cpuinfo.read_text().split())
        native = "avx512_bf16" in flags or "amx_tile" in flags
        assert use_bfloat16("auto", "cpu") is native
    # Without a usable GPU the check answers float32 instead of failing.
    if not torch.cuda.is_available():
        assert use_bfloat16("auto", "cuda:0") is False


def test_unet_bfloat16_forward_matches_float32():
    """A bfloat16 pass gives the float32 maps to within bfloat16 rounding, as float32."""
    import torch

    from pipelines.detection.postprocess import WatershedParams
    from pipelines.detection.unet import UNetConfig, UNetDetector
    from pipelines.detection.unet_network import build_network

    torch.manual_seed(0)
    network = build_network(UNetConfig(channels=(4, 8)), 1)
    tile = np.random.default_rng(0).random((40, 40), dtype=np.float32)
    maps = {}
    for precision in ("fp32", "bf16"):
        config = UNetConfig(channels=(4, 8), precision=precision)
        detector = UNetDetector(config, ["particle"], network, False, WatershedParams(), [1.0])
        assert detector.bfloat16 is (precision == "bf16")
        maps[precision] = detector.forward_tile(tile)
    assert maps["bf16"].dtype == np.float32 and maps["bf16"].shape == (2, 40, 40)
    assert not np.array_equal(maps["bf16"], maps["fp32"])  # bfloat16 really ran
    assert np.abs(maps["bf16"] - maps["fp32"]).max() < 0.03


def test_unet_turn_averaging_gives_maps_independent_of_which_way_up():
    """The turned pass is the mean of a plain pass and a pass over the turned tile."""
    import torch

    from pipelines.detection.postprocess import WatershedParams
    from pipelines.detection.unet import UNetConfig, UNetDetector
    from pipelines.detection.unet_network import build_network

    torch.manual_seed(0)
    config = UNetConfig(channels=(4, 8), precision="fp32")
    network = build_network(config, 2)
    plain, turned = (
        UNetDetector(config, ["a", "b"], network, False, WatershedParams(), [1.0, 1.0], **kw)
        for kw in ({}, {"test_time_turn": True})
    )
    tile = np.random.default_rng(0).random((40, 48), dtype=np.float32)
    turn = np.rot90(tile, 2)
    # An untrained network is not symmetric, so the plain maps depend on the orientation.
    assert not np.allclose(plain.forward_tile(turn), np.rot90(plain.forward_tile(tile), 2, (1, 2)))
    expected = (plain.forward_tile(tile) + np.rot90(plain.forward_tile(turn), 2, (1, 2))) / 2
    maps = turned.forward_tile(tile)
    assert maps.shape == (3, 40, 48)
    np.testing.assert_allclose(maps, expected, atol=1e-6)
    np.testing.assert_allclose(turned.forward_tile(turn), np.rot90(maps, 2, (1, 2)), atol=1e-6)
    # A tile that needs padding is padded once, before turning, so its maps line up with
    # those of the same tile padded by hand.
    odd = tile[:37, :45]
    by_hand = turned.forward_tile(np.pad(odd, ((0, 1), (0, 1)), mode="reflect"))
    np.testing.assert_allclose(turned.forward_tile(odd), by_hand[:, :37, :45], atol=1e-6)


def test_unet_trains_in_bfloat16_and_records_the_arithmetic(tmp_path, tiny_unet_config):
    import json

    sample = make_sample(96, seed=3, n_particles=8)
    json_path = write_labelled(tmp_path, sample, [Box(0, 0, 48, 96)])
    base = {**tiny_unet_config, "tune_postprocessing": False, "precision": "fp32"}
    infos = {}
    for arithmetic in ("fp32", "bf16"):
        config = {**base, "train_precision": arithmetic}
        model = api.train([json_path], tmp_path / arithmetic, config=config)
        infos[arithmetic] = json.loads((model / "model.json").read_text())
    bf16, fp32 = infos["bf16"]["metrics"], infos["fp32"]["metrics"]
    assert bf16["train_bfloat16"] is True and fp32["train_bfloat16"] is False
    assert bf16["infer_bfloat16"] is False  # finding objects follows ``precision``
    assert np.isfinite(bf16["final_loss"])
    # same seed, same patches: only the arithmetic differs
    assert bf16["final_loss"] != fp32["final_loss"]
    detections = api.detect(api.load_detector(tmp_path / "bf16"), sample.pixels)
    assert detections.instances.labels.shape == (96, 96)


@pytest.mark.parametrize(
    ("max_steps", "expected_total"),
    [(0, 100), (3000, 100), (40, 40)],  # no cap; cap beyond the budget's reach; cap first
)
def test_training_progress_total_is_what_ends_first(max_steps, expected_total):
    """10 steps in 1 s of a 10 s budget: the budget allows ~100 steps, unless capped lower."""
    import time

    from pipelines.detection.base import TrainContext, report_train_step

    events = []
    context = TrainContext(progress=events.append)
    report_train_step(context, 10, [1.0] * 10, time.monotonic() - 1.0, 10.0, max_steps, 5)
    (event,) = events
    assert event.stage == "train" and event.done == 10
    assert event.total == pytest.approx(expected_total, rel=0.05)
    assert event.eta_s == pytest.approx((expected_total - 10) * 0.1, rel=0.1)
