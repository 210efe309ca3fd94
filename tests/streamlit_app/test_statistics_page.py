"""Statistics page under AppTest: upload LabelMe (+ image) → table, histogram, downloads."""

from __future__ import annotations

import json

from streamlit.testing.v1 import AppTest


def _goto(app: AppTest, name: str) -> AppTest:
    from streamlit_app.navigation import GOTO

    app.session_state[GOTO] = name
    return app.run()


def test_labelme_and_image_give_calibrated_statistics(app: AppTest, sample_files) -> None:
    app = _goto(app, "statistics")
    assert app.title[0].value.endswith("Statistics")
    labels = sample_files["labels"].read_bytes()
    app.file_uploader(key="stats_labels").set_value(("labels.json", labels, "application/json"))
    app.file_uploader(key="stats_image").set_value(
        ("image.tif", sample_files["image"].read_bytes(), "image/tiff")
    ).run()
    assert not app.exception and not app.error
    nm_input = next(n for n in app.number_input if n.key.startswith("stats_nm_"))
    assert nm_input.value == 0.25  # read from the TIFF written by the synthetic sample
    n_objects = len([s for s in json.loads(labels)["shapes"] if s["label"] != "crop"])
    assert app.metric[0].value == str(n_objects)
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert spec["data"][0]["type"] == "bar"  # the size histogram, binned by pipelines.stats
    assert "nm" in spec["layout"]["xaxis"]["title"]["text"]
    downloads = [d.proto.label for d in app.get("download_button")]
    assert downloads == [
        "Objects table (CSV)",
        "Statistics (Excel)",
        "Statistics (JSON)",
        "Report (HTML)",
    ]


def test_uncalibrated_labels_give_pixel_sizes(app: AppTest, sample_files) -> None:
    raw = json.loads(sample_files["labels"].read_bytes())
    raw.pop("nocode_ml", None)  # the sample's labels carry its pixel size
    app = _goto(app, "statistics")
    app.file_uploader(key="stats_labels").set_value(
        ("labels.json", json.dumps(raw).encode(), "application/json")
    ).run()
    assert not app.exception and not app.error
    assert "(px)" in app.metric[1].label
    spec = json.loads(app.get("plotly_chart")[0].proto.spec)
    assert "px" in spec["layout"]["xaxis"]["title"]["text"]


def test_bad_json_shows_an_error_and_the_page_keeps_working(app: AppTest, sample_files) -> None:
    app = _goto(app, "statistics")
    app.file_uploader(key="stats_labels").set_value(
        ("bad.json", b"{not json", "application/json")
    ).run()
    assert not app.exception
    assert app.error[0].value.startswith("bad.json is not valid JSON (line 1, column 2")
    assert "give the .json file that labelme saved" in app.error[0].value
    app.file_uploader(key="stats_labels").set_value(
        ("notes.json", b"notes from Tuesday", "application/json")
    ).run()
    assert "notes.json is not a LabelMe JSON file" in app.error[0].value
    assert "Expecting value" not in app.error[0].value
    app.file_uploader(key="stats_labels").set_value(
        (
            "broken.json",
            json.dumps({"shapes": [{"label": "p", "points": [[1, 1], [2, 2]]}]}).encode(),
            "application/json",
        )
    ).run()
    assert not app.exception
    assert "shapes[0]" in app.error[0].value
    app.file_uploader(key="stats_labels").set_value(
        ("labels.json", sample_files["labels"].read_bytes(), "application/json")
    ).run()
    assert not app.error and app.metric
    with_bom = "\ufeff".encode() + sample_files["labels"].read_bytes()  # Windows Notepad
    app.file_uploader(key="stats_labels").set_value(
        ("labels.json", with_bom, "application/json")
    ).run()
    assert not app.exception and not app.error and app.metric


def test_a_pixel_size_stored_in_the_labelme_file_fills_the_field(
    app: AppTest, sample_files
) -> None:
    """The field says what 0 means and starts from the file's own pixel size."""
    raw = json.loads(sample_files["labels"].read_bytes())
    raw["nocode_ml"] = {"nm_per_px": 0.5}
    app = _goto(app, "statistics")
    app.file_uploader(key="stats_labels").set_value(
        ("calibrated.json", json.dumps(raw).encode(), "application/json")
    ).run()
    assert not app.exception and not app.error
    nm_input = next(n for n in app.number_input if n.key.startswith("stats_nm_"))
    assert nm_input.value == 0.5
    assert "0 = the one stored in the LabelMe file, else sizes in pixels" in nm_input.label
    read = "Pixel size read from calibrated.json: 0.5 nm per pixel."
    assert any(c.value == read for c in app.caption)
    assert "(nm)" in app.metric[1].label


def test_the_image_uploader_takes_the_types_the_app_reads(app: AppTest) -> None:
    from pipelines.imaging import SUPPORTED_EXTENSIONS

    app = _goto(app, "statistics")
    assert list(app.file_uploader(key="stats_image").proto.type) == list(SUPPORTED_EXTENSIONS)
