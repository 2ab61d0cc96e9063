"""map_server files: negate, trinary / scale / raw modes, origin and row order, task keys, and clear errors."""

import numpy as np
import pytest
import yaml
from PIL import Image

from attn_dqn_controller.planning.grid import OccupancyGrid
from attn_dqn_controller.planning.map_io import MapFileError, load_map, save_map

# Image rows top to bottom; pixel values chosen around the default thresholds (0.65 occupied, 0.196 free).
PIXELS = np.array([[0, 254, 205, 100],
                   [254, 254, 254, 254]], dtype=np.uint8)


def write(tmp_path, pixels=PIXELS, name="map.yaml", image="map.pgm", **fields):
    if pixels is not None:
        Image.fromarray(pixels).save(tmp_path / image)
    doc = {"image": image, "resolution": 0.5, "origin": [-1.0, 2.0, 0.0], "negate": 0,
           "occupied_thresh": 0.65, "free_thresh": 0.196}
    doc.update(fields)
    doc = {k: v for k, v in doc.items() if v is not None}
    (tmp_path / name).write_text(yaml.safe_dump(doc))
    return tmp_path / name


def test_trinary_mode_geometry_and_row_order(tmp_path):
    m = load_map(write(tmp_path))
    g = m.grid
    assert g.geometry.resolution == 0.5 and g.geometry.origin_x == -1.0 and g.geometry.origin_y == 2.0
    assert g.shape == (2, 4)
    # The image's top row is the map's row 1 (y in [2.5, 3.0)); 100 -> occ 0.61: unknown in trinary mode.
    assert g.data.tolist() == [[0, 0, 0, 0], [100, 0, -1, -1]]
    assert g.data[g.geometry.world_to_cell(-0.75, 2.75)] == 100
    assert m.start is None and m.goal is None and m.mode == "trinary"


def test_negate_swaps_black_and_white(tmp_path):
    g = load_map(write(tmp_path, negate=1)).grid
    assert g.data.tolist() == [[100, 100, 100, 100], [0, 100, 100, -1]]


def test_scale_mode_keeps_the_in_between_values(tmp_path):
    pixels = np.array([[0, 254, 205, 100]], dtype=np.uint8)
    g = load_map(write(tmp_path, pixels=pixels, mode="scale")).grid
    occ = 1 - np.array([205, 100]) / 255.0
    expected = np.rint(100 * (occ - 0.196) / (0.65 - 0.196)).astype(int)
    assert g.data.tolist() == [[100, 0, *expected.tolist()]]
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, :, :3] = 254
    rgba[0, 0, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    g = load_map(write(tmp_path, pixels=None, image="alpha.png", mode="scale")).grid
    assert g.data.tolist() == [[0, -1]]  # a transparent pixel is unknown in scale mode


def test_raw_mode_takes_the_values_as_they_are(tmp_path):
    pixels = np.array([[0, 37, 100, 255]], dtype=np.uint8)
    g = load_map(write(tmp_path, pixels=pixels, mode="raw")).grid
    assert g.data.tolist() == [[0, 37, 100, -1]]


def test_start_and_goal_keys_and_their_errors(tmp_path):
    m = load_map(write(tmp_path, start=[0.25, 2.25, 1.5], goal=[0.75, 2.25]))
    assert m.start == (0.25, 2.25, 1.5) and m.goal == (0.75, 2.25)
    with pytest.raises(MapFileError, match=r"field 'goal' = \[-0.75, 2.75\] is invalid: it lies in an occupied"):
        load_map(write(tmp_path, goal=[-0.75, 2.75]))
    with pytest.raises(MapFileError, match=r"field 'start' = \[5.0, 2.25\] is invalid: it lies outside the map"):
        load_map(write(tmp_path, start=[5.0, 2.25, 0.0]))
    with pytest.raises(MapFileError, match=r"field 'start' .* lists of 3 finite numbers"):
        load_map(write(tmp_path, start=[0.25, 2.25]))
    with pytest.raises(MapFileError, match=r"field 'goal' .* unknown cell"):
        load_map(write(tmp_path, goal=[0.25, 2.75]))


@pytest.mark.parametrize("fields,field", [
    ({"resolution": -0.1}, "resolution"),
    ({"resolution": "fine"}, "resolution"),
    ({"origin": [0.0, 0.0]}, "origin"),
    ({"origin": [0.0, 0.0, 0.5]}, "origin"),
    ({"negate": 2}, "negate"),
    ({"occupied_thresh": 1.5}, "occupied_thresh"),
    ({"free_thresh": 0.9}, "free_thresh"),
    ({"mode": "fancy"}, "mode"),
    ({"image": "missing.pgm"}, "image"),
    ({"free_thresh": None}, "free_thresh"),
])
def test_malformed_files_name_the_file_and_the_field(tmp_path, fields, field):
    path = write(tmp_path, **fields)
    if field == "image":
        (tmp_path / "missing.pgm").unlink()
    with pytest.raises(MapFileError, match=f"{path}.*'{field}'"):
        load_map(path)


def test_unreadable_files_name_the_file(tmp_path):
    with pytest.raises(MapFileError, match="nothing.yaml cannot be read"):
        load_map(tmp_path / "nothing.yaml")
    (tmp_path / "bad.yaml").write_text("image: [unclosed")
    with pytest.raises(MapFileError, match="bad.yaml is not valid YAML"):
        load_map(tmp_path / "bad.yaml")
    (tmp_path / "junk.pgm").write_text("not an image")
    with pytest.raises(MapFileError, match="'image' = .*junk.pgm' cannot be read as an image"):
        load_map(write(tmp_path, pixels=None, image="junk.pgm"))


def test_save_then_load_round_trips(tmp_path):
    data = np.zeros((5, 7), np.int8)
    data[2, 3] = 100
    data[0, :2] = -1
    occupied = data == 100
    grid = OccupancyGrid.from_occupied(occupied, 0.1, origin_x=1.0, origin_y=-2.0, unknown=data == -1)
    path = save_map(tmp_path / "saved.yaml", grid, start=(1.25, -1.95, 0.0), goal=(1.65, -1.55))
    loaded = load_map(path)
    assert loaded.grid.data.tolist() == grid.data.tolist()
    assert loaded.grid.geometry == grid.geometry
    assert loaded.start == (1.25, -1.95, 0.0) and loaded.goal == (1.65, -1.55)
