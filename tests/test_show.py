import re

import numpy as np
from PIL import Image

from dali_mixup import show
from dali_mixup.photos import color_photos


def test_show_writes_a_png_grid_of_mixed_photos(tmp_path, capsys):
    out = tmp_path / "grid.png"
    show.main(["--out", str(out), "--device", "cpu", "--size", "48", "--alpha", "1.0"])
    grid = Image.open(out)
    assert grid.format == "PNG"
    assert grid.width > 5 * 48 and grid.height > 2 * 48  # ten photos, five a row
    # One line per photo, "  0.63 astronaut + 0.37 coffee": with α = 1 most are real blends of two photos.
    pairs = re.findall(r"^  (\d\.\d\d) (\w+) \+ (\d\.\d\d) (\w+)$", capsys.readouterr().out, re.MULTILINE)
    names = [name for name, _ in color_photos()]
    assert [pair[1] for pair in pairs] == names
    blends = [pair for pair in pairs if 0.05 < float(pair[0]) < 0.95 and pair[1] != pair[3]]
    assert len(blends) >= 5, pairs
    # A blended tile of the first row is not its photo alone: the partner shows through.
    k = next(k for k, pair in enumerate(pairs[:5]) if pair in blends)
    x = 8 + k * (48 + 8)
    tile = np.asarray(grid.convert("RGB"), np.float32)[8 : 8 + 48, x : x + 48]
    alone = np.asarray(Image.fromarray(dict(color_photos())[pairs[k][1]]).resize((48, 48), Image.BILINEAR), np.float32)
    assert np.abs(tile - alone).mean() > 5, pairs[k]
