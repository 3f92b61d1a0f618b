"""The package map of docs/architecture.md holds: no import cycles between fewshot's modules, and
the layers import only downwards (config never imports training, training never imports reporting,
...). Every import counts: those inside functions and under ``TYPE_CHECKING`` too."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# layer of each top-level part of fewshot (lower = more basic); a module may import its own layer or
# lower
LAYERS = {
    "errors": 0, "checks": 0, "precision": 0, "func_transforms": 0,
    "functional": 1, "cg": 1, "best_step": 1, "recompute": 1, "schedules": 1, "nn": 1, "rules": 1,
    "bilevel": 1,
    "learners": 1,
    "meta_optimizer": 2, "scoring": 2, "runtime": 2,
    "config": 3,
    "training": 4,
    "pretrained": 5, "l2o": 5,
    "reporting": 6,
    "commands": 7, "cli": 7, "__main__": 7,
}


def _module_imports() -> dict[str, set[str]]:
    """``{module: {fewshot modules it imports}}``, wherever in the module the import is written."""
    mods = {}
    for path in (ROOT / "fewshot").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    deps.add(full if full in mods else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else -1


def test_every_part_of_fewshot_has_a_layer():
    parts = {p.stem if p.is_file() else p.name for p in (ROOT / "fewshot").iterdir()
             if (p.suffix == ".py" and p.stem != "__init__")
             or (p.is_dir() and (p / "__init__.py").exists())}
    assert parts == set(
        LAYERS), "add the new module to LAYERS here and to docs/architecture.md's package map"


def test_layers_import_only_downwards():
    wrong = [f"{m} -> {d}" for m, deps in _module_imports().items() if m != "fewshot"
             for d in deps if d != "fewshot" and _layer(d) > _layer(m)]
    assert wrong == []


def test_no_import_cycles():
    graph, state, cycles = _module_imports(), {}, []

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for dep in graph[node]:
            if state.get(dep) == "open":
                cycle = stack[stack.index(dep):] + [dep]
                if not all(a.startswith(b) or b.startswith(a) for a, b in zip(cycle, cycle[1:])):
                    cycles.append(" -> ".join(cycle))
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [])
    assert cycles == []


APPLICATION = ("runtime", "config", "training", "pretrained", "reporting", "commands", "cli",
               "__main__")
ALGORITHMS = ("errors", "checks", "precision", "func_transforms", "functional", "cg", "best_step",
              "recompute", "schedules", "nn", "rules", "learners", "bilevel", "meta_optimizer",
              "scoring", "l2o")


def test_the_algorithms_import_nothing_of_the_application():
    """The two layers: a module of the algorithms imports no module of the application (wherever the
    import is written)."""
    wrong = [f"{m} -> {d}" for m, deps in _module_imports().items() if m != "fewshot"
             and m.split(".")[1] in ALGORITHMS
             for d in deps if d != "fewshot" and d.split(".")[1] in APPLICATION]
    assert wrong == []


def test_every_part_is_algorithm_or_application():
    assert set(ALGORITHMS) | set(APPLICATION) == set(LAYERS) and not set(ALGORITHMS) & set(
        APPLICATION)


def test_import_fewshot_loads_the_algorithms_alone():
    """``import fewshot`` (and its public names of the algorithms) loads no module of the
    application; the application's names (``fewshot.train``, ``fewshot.TrainConfig``,
    ``fewshot.pretrained``) load on first use."""
    import subprocess
    import sys

    code = ("import sys, fewshot; from fewshot import MAML, InnerLoop, Conv4, SGD; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('fewshot.')))); "
            "fewshot.train, fewshot.TrainConfig, fewshot.pretrained.load; "
            "print(fewshot.load_pretrained.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    loaded, first_use = done.stdout.splitlines()
    assert not [m for m in loaded.split() if m.split(".")[1] in APPLICATION], loaded
    assert first_use == "fewshot.pretrained.registry"
