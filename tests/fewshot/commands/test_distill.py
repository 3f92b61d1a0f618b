"""`fewshot distill`: presets listed, a short run on real MNIST ends with its test accuracy, bad
input is one line."""
from fewshot.cli import main


def test_list_presets_and_a_short_run(mnist_root, tmp_path, capsys):
    assert main(["distill", "--list-presets"]) == 0
    listed = capsys.readouterr().out
    assert "mnist-distill-10: 10 images, fixed init, hard labels" in listed
    assert "mnist-distill-100-random: 100 images, random init" in listed
    args = ["distill", "mnist-distill-10", "--out", str(tmp_path), "--root", str(mnist_root),
            "--set", "iterations=2", "--set", "batch_size=32", "--quiet"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("mnist-distill-10: test accuracy ") and "10 distilled images" in out
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "result.json").is_file()


def test_bad_input_is_one_line(capsys):
    assert main(["distill", "mnist-distil-10"]) == 2
    assert "did you mean 'mnist-distill-10'?" in capsys.readouterr().err
    assert main(["distill", "mnist-distill-10", "--set", "lr=-1"]) == 2
    assert "lr must be > 0, got -1" in capsys.readouterr().err
    assert main(["distill"]) == 2
    assert "name a preset" in capsys.readouterr().err
