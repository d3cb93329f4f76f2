from PIL import Image

from dali_mixup import show


def test_show_writes_a_png_grid_of_real_photos(tmp_path, capsys):
    out = tmp_path / "grid.png"
    show.main(["--out", str(out), "--device", "cpu", "--size", "48", "--alpha", "1.0"])
    grid = Image.open(out)
    assert grid.format == "PNG"
    assert grid.width > 5 * 48 and grid.height > 2 * 48  # ten photos, five a row
    printed = capsys.readouterr().out
    assert "astronaut" in printed and "+" in printed
