"""`fewshot eval MODEL --data DIR`: a pretrained init scored on a folder of real Omniglot PNGs
(test-split characters, 105x105 originals as a user would have them), with the model's own
preprocessing."""
from __future__ import annotations

import json
import zipfile

import pytest

from fewshot.cli import main

CHARACTERS = 12


@pytest.fixture(scope="module")
def char_folder(fewshot_data, tmp_path_factory):
    """``<tmp>/<Alphabet_characterNN>/*.png``: the first CHARACTERS unrotated test-split characters,
    20 PNGs each."""
    lines = (fewshot_data / "omniglot" / "splits" / "vinyals" / "test.txt").read_text().split()
    chars = [line.rsplit("/", 1)[0] for line in lines if line.endswith("/rot000")][:CHARACTERS]
    root = tmp_path_factory.mktemp("mychars")
    for part in ("background", "evaluation"):
        with zipfile.ZipFile(fewshot_data / "omniglot" / f"images_{part}.zip") as z:
            for name in z.namelist():
                cls = "/".join(name.split("/")[1:3])
                if name.endswith(".png") and cls in chars:
                    folder = root / cls.replace("/", "_")
                    folder.mkdir(exist_ok=True)
                    (folder / name.rsplit("/", 1)[1]).write_bytes(z.read(name))
    assert len(list(root.iterdir())) == CHARACTERS
    return root


def _report(capsys, *argv):
    assert main(["eval", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_folder_eval_is_well_above_chance_and_seeded(char_folder, capsys):
    args = ("omniglot-5w1s-maml", "--data", str(char_folder), "--ways", "5", "--shots", "1",
            "--queries", "5",
            "--episodes", "40", "--seed", "0")
    a = _report(capsys, *args)
    assert a["metric"] == "accuracy" and a["episodes"] == 40 and a["classes"] == CHARACTERS
    assert a["preprocessing"] == {"size": 28, "channels": 1, "invert": True,
                                  "interpolation": "lanczos",
                                  "scale": 255.0}
    assert a["mean"] > 0.6 and a["mean"] - a["ci95"] > 0.2  # chance is 0.2
    assert _report(capsys, *args) == a  # same seed, same episodes, same number
    assert _report(capsys, *args[:-1], "1")["mean"] != a["mean"]
    # the wrong polarity (what a generic loader gives) costs most of the accuracy: preprocessing
    # matters
    assert _report(capsys, *args, "--no-invert")["mean"] < a["mean"] - 0.2


def test_folder_eval_with_more_ways_than_the_head(char_folder, capsys):
    r = _report(capsys, "omniglot-5w1s-maml", "--data", str(char_folder), "--ways", "10",
                "--queries", "2",
                "--episodes", "10", "--steps", "3")
    # chance 0.1; the zero 10-way head of the 5-way init gets ~0.39 on these 10 episodes (20 queries
    # each)
    assert r["ways"] == 10 and r["shots"] == 1 and r["steps"] == 3 and r["mean"] > 0.3
    main(
        ["eval", "omniglot-5w1s-maml", "--data", str(char_folder), "--ways", "10", "--queries", "2",
          "--episodes", "10", "--steps", "3"])
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"pretrained omniglot-5w1s-maml: {char_folder} ({CHARACTERS} classes, "
                           f"{CHARACTERS * 20} images), 10-way 1-shot, 2 queries, 10 episodes, 3 "
                           "steps: accuracy ")


@pytest.mark.parametrize("argv, message", [
    (["--ways", "13"], "ways=13 > 12 classes"),
    (["--queries", "20"], "shots\\+queries=21 > 20 examples"),
    (["--ways", "0"], "--ways must be"),
    (["--split", "val"], "with --data the folder is the data: drop --split"),
])
def test_folder_eval_bad_values_are_one_line_errors(char_folder, capsys, argv, message):
    assert main(["eval", "omniglot-5w1s-maml", "--data", str(char_folder), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert __import__("re").search(message, err), err


def test_folder_flags_without_data_and_regression_models_are_refused(char_folder, capsys):
    assert main(["eval", "omniglot-5w1s-maml", "--ways", "20"]) == 2
    assert "--ways applies to --data DIR only" in capsys.readouterr().err
    assert main(["eval", "sinusoid-maml", "--data", str(char_folder)]) == 2
    assert "not on images: evaluate it without --data" in capsys.readouterr().err


def test_folder_polarity_is_detected_and_forced_with_one_stderr_line(char_folder, capsys):
    """Omniglot's PNGs are dark on white: detected and inverted (the model's recipe), one line on
    stderr; --no-invert forces the other way and the line says it goes against the images."""
    args = ["eval", "omniglot-5w1s-maml", "--data", str(char_folder), "--ways", "5", "--queries",
            "1",
            "--episodes", "1", "--steps", "1"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    (line,) = [ln for ln in err.splitlines() if "polarity" in ln]
    assert line.startswith(
        f"{char_folder}: polarity: borders average 255/255: dark strokes on a light background")
    assert (
        "inverting them so strokes are bright, as the model expects (--no-invert forces the other "
        "way)" in line)
    # singular words for counts of one (the summary said "1 queries")
    assert "5-way 1-shot, 1 query, 1 episode, 1 step: accuracy" in out
    assert main([*args, "--no-invert", "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out.strip().splitlines()[-1])
    pol = report["polarity"]
    assert (pol["detected"], pol["invert"], pol["forced"]) == ("dark-on-light", False,
                                                               True) and pol["border"] > 250
    assert report["preprocessing"]["invert"] is False
    assert "not inverting them as forced (--no-invert), against what the images look like" in err


def test_folder_of_mnist_digits_is_kept_as_it_is(fewshot_data, tmp_path, capsys):
    from tests.episodes.test_polarity import mnist_folder

    mnist_folder(fewshot_data, tmp_path, classes=5, per_class=3)
    report = _report(capsys, "omniglot-5w1s-maml", "--data", str(tmp_path), "--queries", "2",
                     "--episodes", "2",
                     "--steps", "1")
    assert report["polarity"] == {"detected": "light-on-dark", "border": 0.0, "invert": False,
                                  "forced": False}
    assert report["preprocessing"] == {"size": 28, "channels": 1, "invert": False,
                                       "interpolation": "lanczos",
                                       "scale": 255.0}


def test_eval_help_says_which_way_each_flag_converts(capsys):
    with pytest.raises(SystemExit):
        main(["eval", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "95%%" not in text and "mean and 95% CI" in text
    assert (
        "--invert when your images have dark strokes on a light background (like Omniglot's "
        "PNGs)" in text)
    assert "--no-invert when they have light strokes on a dark background (like MNIST)" in text


def test_folder_eval_takes_the_bn_mode_asked_for(char_folder, capsys):
    """--bn-mode applies to --data too: the model's own mode gives the default report exactly,
    batch statistics (transductive) another number; the report says which mode it used (a model far
    from 100%, so that the two modes' means differ)."""
    args = ("omniglot-5w1s-metasgd", "--data", str(char_folder), "--ways", "5", "--queries", "5",
            "--episodes", "20", "--seed", "0")
    default = _report(capsys, *args)
    own = _report(capsys, *args, "--bn-mode", default["bn_mode"])
    trans = _report(capsys, *args, "--bn-mode", "transductive")
    assert default["bn_mode"] != "transductive" and own == default
    assert trans["bn_mode"] == "transductive" and trans["mean"] != default["mean"]
