"""The README and the docs stay true: their results tables are what the manifests say, their
commands are what CI runs, their code examples run, their links lead somewhere."""
import json
import re
from pathlib import Path

from fewshot.pretrained import distilled_table, package_dir
from fewshot.reporting import results_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


def python_block(text: str, marker: str) -> str:
    """The one ```python block of ``text`` that contains ``marker``."""
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if marker in b]
    assert len(blocks) == 1, f"expected one python block with {marker!r}, found {len(blocks)}"
    return blocks[0]


def shipped_of_kind(kind: str) -> list[str]:
    """The shipped models whose manifest's kind is ``kind``."""
    return sorted(p.name for p in package_dir().iterdir() if (p / "manifest.json").is_file()
                  and json.loads((p / "manifest.json").read_text()).get("kind",
                                                                        "meta-initialization")
                  == kind)


def shipped_models() -> list[str]:
    """The shipped meta-initializations (learned optimizers and distilled data have their own
    tables)."""
    return shipped_of_kind("meta-initialization")


def test_distilled_table_is_generated_from_the_manifests():
    text = (ROOT / "docs" / "bilevel.md").read_text()
    block = re.search(r"<!-- distilled:start -->\n(.*?)<!-- distilled:end -->", text, re.S)
    assert block, "docs/bilevel.md lacks the <!-- distilled:start/end --> markers"
    assert block.group(1).strip() == distilled_table(shipped_of_kind("distilled-data")).strip(), (
        "docs/bilevel.md's distilled table is stale: run python scripts/refresh_tables.py")


def test_results_table_is_generated_from_the_manifests():
    block = re.search(r"<!-- results:start -->\n(.*?)<!-- results:end -->", README, re.S)
    assert block, "README lacks the <!-- results:start/end --> markers"
    assert shipped_models(), "no pretrained manifests shipped"
    expected = results_table(shipped_models())
    assert block.group(1).strip() == expected.strip(), (
        "README results table is stale: replace it with the output of `fewshot pretrained table`")
    for name in shipped_models():
        assert f"| {name} |" in block.group(1)
        assert f"[manifest](pretrained/{name}/manifest.json)" in block.group(1)
    # seven columns: the README's table stays slim
    assert len(block.group(1).splitlines()[0].split("|")) == 9


def test_the_full_results_table_in_docs_is_generated_from_the_manifests():
    text = doc("docs/results.md")
    block = re.search(r"<!-- results-full:start -->\n(.*?)<!-- results-full:end -->", text, re.S)
    assert block, "docs/results.md lacks the <!-- results-full:start/end --> markers"
    assert block.group(1).strip() == results_table(shipped_models(), full=True).strip(), (
        "docs/results.md's table is stale: replace it with the output of `fewshot pretrained table "
        "--full`")
    for name in shipped_models():
        assert f"| {name} |" in block.group(1) and "run clock" in block.group(1)


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    install = re.search(r"## Install\n.*?```bash\n(.+?)\n```", README, re.S).group(1).strip()
    test = re.search(r"## Test\s+```bash\n(.+?)\n```", README, re.S).group(1).strip()
    assert install in ci
    assert "pytest" in test.splitlines()
    contributing = re.search(r"## Test\n.*?```bash\n(.+?)\n```", doc("CONTRIBUTING.md"),
                             re.S).group(1).strip()
    for command in test.splitlines() + contributing.splitlines():
        assert command.strip() in ci, command
    # CI runs CONTRIBUTING's commands in the order written there, after the README's install
    at = [ci.index(c.strip()) for c in contributing.splitlines()]
    assert at == sorted(at) and at[0] > ci.index(install)


def test_learned_optimizer_table_is_generated_from_the_shipped_figures_json():
    from fewshot.pretrained import verify
    from fewshot.reporting.l2o_experiments import EXPERIMENTS, final_table

    block = re.search(r"<!-- l2o-results:start -->\n(.*?)<!-- l2o-results:end -->",
                      doc("docs/l2o.md"), re.S)
    assert block, "docs/l2o.md lacks the <!-- l2o-results:start/end --> markers"
    results = [json.loads((ROOT / "docs" / "l2o" / f"{name}.json").read_text())
               for name in EXPERIMENTS]
    for r in results:  # every figure was made with the weights we ship
        assert r["learned_optimizer"]["sha256"] == verify(r["learned_optimizer"]["name"])[
            "sha256"], r["experiment"]
        assert (ROOT / "docs" / "l2o" / f"{r['experiment']}.png").is_file()
    assert final_table(results).strip() in block.group(1), (
        "docs/l2o.md's table is stale: paste `fewshot l2o experiment all --out docs/l2o`'s table")


def test_the_custom_update_rule_example_runs_and_adapts_by_sign_sgd():
    import torch
    from torch import nn

    block = python_block(doc("docs/learners.md"), "class SignSGD")
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102 - the docs' own example
    torch.manual_seed(0)  # test-only module init
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    learner = namespace["SignMAML"](model, namespace["MAMLConfig"](inner_steps=1))
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    params = learner.adapt(x, y).params
    for name, p in model.named_parameters():
        g = torch.autograd.grad(torch.nn.functional.cross_entropy(model(x), y), p)[0]
        assert torch.allclose(params[name], p - 0.01 * g.sign())


def test_install_section_documents_the_cpu_only_torch_wheels_before_the_package():
    section = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines()]
    cpu = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert cpu in lines and lines.index(cpu) < len(lines) - 1 - lines[::-1].index(
        'pip install -e ".[dev]"')
    assert "5 GB" in section and "python -m fewshot" in section and "fewshot --version" in section

def test_the_your_own_images_example_runs_on_real_omniglot_drawings(fewshot_data, tmp_path,
                                                                    monkeypatch):
    """The README's "Your own images" block, on test-split drawings (105x105 PNGs as a user has
    them): four 5-way tasks of test characters 20 apart, each character's second drawing the query
    in turn."""
    import zipfile

    block = python_block(README, "my_chars/support")
    lines = (fewshot_data / "omniglot" / "splits" / "vinyals" / "test.txt").read_text().split()
    test_chars = [line.rsplit("/", 1)[0] for line in lines if line.endswith("/rot000")]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_chars" / "support").mkdir(parents=True)
    right = total = 0
    with zipfile.ZipFile(fewshot_data / "omniglot" / "images_evaluation.zip") as z:
        names = sorted(z.namelist())
        for first in (0, 100, 200, 300):
            chars = test_chars[first:first + 100:20]
            drawings = [
                [n for n in names if n.startswith(f"images_evaluation/{char}/")
                 and n.endswith(".png")]
                        for char in chars]
            for c in range(5):
                (tmp_path / "my_chars" / "support" / f"{c}.png").write_bytes(z.read(drawings[c][0]))
            for c in range(5):
                (tmp_path / "my_chars" / "query.png").write_bytes(z.read(drawings[c][1]))
                namespace: dict = {}
                exec(block, namespace)  # noqa: S102 - the README's own example
                right += int(namespace["scores"].argmax()) == c
                total += 1
    # the shipped model is ~90% right one image at a time; chance would be 20%
    assert right >= 0.7 * total
    assert namespace["learner20"].model.classifier.weight.shape == (20, 64)


def test_the_maml_in_ten_lines_example_learns_and_its_adapted_model_predicts_one_point_alone(
    capsys):
    """The README's first code block: meta-training must beat the untrained init on new tasks, and
    the ``AdaptedModel`` must give one query point alone the output it gives it in the batch."""
    import torch

    block = python_block(README, "learner.meta_loss(tasks(8))")
    namespace: dict = {}
    exec(block, namespace)  # noqa: S102 - the README's own example
    learner, tasks, adapted, task = (namespace[k] for k in ("learner", "tasks", "adapted", "task"))
    torch.manual_seed(0)  # the block's init, untrained: the bar meta-training must clear
    untrained = namespace["MAML"](
        torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)),
                                  namespace["MAMLConfig"](inner_steps=1, inner_lr=0.1)).eval()
    test = tasks(100)
    trained_mse, untrained_mse = (float(m.evaluate(test)["mse"].mean())
                                  for m in (learner, untrained))
    assert trained_mse < 0.5 * untrained_mse, (trained_mse, untrained_mse)
    assert adapted(task.query_x[0, :1]).shape == (1, 1) and adapted.steps in (0, 1)
    assert torch.allclose(adapted(task.query_x[0, :1]), adapted(task.query_x[0])[:1])
    printed, last = capsys.readouterr().out.splitlines()
    assert printed == f"MSE on 100 new tasks after one step: {float(namespace['mse']):.3f}"
    value, steps = last.split()
    assert float(value) == adapted(task.query_x[0, :1]).item() and int(steps) == adapted.steps


def test_relative_links_in_the_readme_and_docs_lead_to_files():
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not re.match(r"[a-z]+://", target):
                assert (page.parent / target).exists(
                    ), f"{page.relative_to(ROOT)} links to missing {target}"
