"""`fewshot distill`: presets listed, a short run on real MNIST ends with its test accuracy, bad
input is one line, an interrupted run says how to resume it."""
import shlex
import signal

import fewshot.commands.distill as distill_command
from fewshot.cli import main
from fewshot.training.interrupt import TrainingInterrupted


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


def test_an_interrupted_run_names_the_command_that_resumes_it(tmp_path, capsys, monkeypatch):
    seen = []

    def stopped(cfg, out, quiet):
        seen.append(cfg)
        raise TrainingInterrupted(signal.SIGTERM, 7, out / "last.pt")

    monkeypatch.setattr(distill_command, "distill", stopped)
    args = ["mnist-distill-10-soft", "--out", str(tmp_path / "my run"), "--set",
            "per_layer_step_sizes=true", "--set", "step_size=0.02", "--root", str(tmp_path)]
    assert main(["distill", *args]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err.strip()
    assert err.startswith("interrupted by SIGTERM at iteration 7: saved ")
    resume = shlex.split(err.split("resume with: fewshot ", 1)[1])
    # the same command resumes: every override is there again
    assert resume == ["distill", *args]
    assert main(resume) == 128 + signal.SIGTERM and seen[0] == seen[1]
