"""``fewshot show-episode``: end to end on real Omniglot, the PNG grid equals the episode
tensors."""
import numpy as np
import pytest
import torch
from PIL import Image

from episodes import EpisodeSampler, GridLayout, load_split
from fewshot.cli import main


def test_show_episode_real_omniglot(omniglot_root, tmp_path, capsys):
    out = tmp_path / "episode.png"
    argv = ["show-episode", "omniglot", "--split", "val", "--ways", "4", "--shots", "2",
            "--queries", "3",
            "--seed", "5", "--root", str(omniglot_root), "--scale", "2", "--out", str(out)]
    assert main(argv) == 0
    assert "wrote" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode.png"]  # no temp file left behind
    image = Image.open(out)
    assert image.mode == "L"
    pixels = torch.from_numpy(np.asarray(image).copy())

    split = load_split("omniglot", "val", root=omniglot_root)
    batch = EpisodeSampler(split, 4, 2, 3, seed=5).sample(1)
    th = tw = 56
    pad, gap = 2, 8  # render_episode defaults
    width, height = image.size
    assert height == pad + 4 * (th + pad)
    label_w = width - (pad + 5 * (tw + pad) + gap)
    assert label_w > 2 * pad  # a label column with text
    layout = GridLayout(4, 2, 3, th, tw, pad, gap, label_w)
    task = batch.task(0)
    for row in range(4):
        imgs = list(task.support_x[task.support_y == row]) + list(task.query_x[task.query_y == row])
        for col, img in enumerate(imgs):
            x0, y0 = layout.tile_origin(row, col)
            want = (img[0] * 255).round().to(torch.uint8).repeat_interleave(2,
                                                                            0).repeat_interleave(2,
                                                                                                 1)
            assert torch.equal(pixels[y0 : y0 + th, x0 : x0 + tw], want)
    # a different seed draws a different episode
    out2 = tmp_path / "other.png"
    assert main(argv[:-1] + [str(out2)]) == 0
    assert out2.read_bytes() == out.read_bytes()
    argv[argv.index("--seed") + 1] = "6"
    assert main(argv[:-1] + [str(out2)]) == 0
    assert out2.read_bytes() != out.read_bytes()


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--ways", "700"], "ways=700 > 688 classes"),
        (["--shots", "15", "--queries", "10"], "shots+queries=25 > 20 examples"),
        (["--shots", "0"], "shots must be >= 1"),
        (["--split", "nope"], "unknown omniglot split 'nope'"),
    ],
)
def test_show_episode_bad_input_one_line_error(omniglot_root, tmp_path, capsys, extra, message):
    out = tmp_path / "e.png"
    argv = ["show-episode", "omniglot", "--split", "val", "--root", str(omniglot_root), "--out",
            str(out), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


def test_show_episode_unknown_dataset_and_bad_out(tmp_path, capsys):
    assert main(["show-episode", "imagenet-22k", "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown dataset 'imagenet-22k'" in capsys.readouterr().err
    assert main(["show-episode", "omniglot", "--out", str(tmp_path / "missing" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["show-episode", "omniglot", "--out", str(tmp_path / "x.jpg")]) == 2
    assert "must end in .png" in capsys.readouterr().err


def test_show_episode_huge_scale_is_one_line(omniglot_root, tmp_path, capsys):
    out = tmp_path / "e.png"
    argv = ["show-episode", "omniglot", "--root", str(omniglot_root), "--out", str(out), "--scale",
            "100000"]
    assert main(argv) == 2  # used to run out of memory
    err = capsys.readouterr().err
    assert err.startswith("error: the episode picture at scale 100000 would be ") and err.count(
        "\n") == 1
    assert "over the limit of 67,108,864: use scale " in err
    assert not out.exists()
    assert main(argv[:-1] + ["0"]) == 2
    assert "--scale must be >= 1, got 0: pass e.g. --scale 2" in capsys.readouterr().err


def test_full_disk_while_writing_the_png_says_so(tmp_path):
    """Issue 14: a full disk says to free space (not to pick a writable folder) and leaves no temp
    file."""
    import errno

    from fewshot.commands.show_episode import write_png
    from fewshot.errors import ConfigError

    class FullDisk:
        def save(self, fh, format):
            fh.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "e.png"
    with pytest.raises(ConfigError) as info:
        write_png(FullDisk(), out)
    assert str(info.value) == (
        f"no space left on the disk to write {out} (No space left on device): free disk space "
        "or choose another --out")
    assert list(tmp_path.iterdir()) == []
