"""The README stays true: its results table is what the manifests say, its commands are what CI runs."""
import re
from pathlib import Path

from fewshot.pretrained import package_dir
from fewshot.training.publish import results_table

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def shipped_models() -> list[str]:
    return sorted(p.name for p in package_dir().iterdir() if (p / "manifest.json").is_file())


def test_results_table_is_generated_from_the_manifests():
    block = re.search(r"<!-- results:start -->\n(.*?)<!-- results:end -->", README, re.S)
    assert block, "README lacks the <!-- results:start/end --> markers"
    assert shipped_models(), "no pretrained manifests shipped"
    expected = results_table(shipped_models())
    assert block.group(1).strip() == expected.strip(), (
        "README results table is stale: replace it with the output of `fewshot pretrained table`")
    for name in shipped_models():
        assert f"| {name} |" in block.group(1)


def test_ci_runs_the_readme_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    install = re.search(r"## Install\s+```bash\n(.+?)\n```", README, re.S).group(1).strip()
    test = re.search(r"## Test\s+```bash\n(.+?)\n```", README, re.S).group(1).strip()
    assert install in ci.splitlines()
    assert test in ci.splitlines()
