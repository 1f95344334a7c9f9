"""The documentation runs and is complete.

- ``docs/tutorial.md``: every ```python block, in order, in one namespace, as one
  script, in a temporary working directory (needs the blood-cell data; skipped
  without it).
- ``README.md``: its ```python block (the taste of the API) runs.
- ``docs/index.md`` and ``docs/im2col.md``: their ```python blocks run, and where a
  ```text block follows a python block directly, it is exactly what the block prints.
- The API reference is generated from the docstrings (``docs/api.py``, pdoc), so
  every public name of the library has a docstring: a new public function,
  class, method or constant without one fails here. pdoc renders the whole
  package without an error or a warning.
"""
import ast
import contextlib
import importlib
import importlib.util
import inspect
import io
import pkgutil
import re
import time
import warnings
from pathlib import Path

import pytest

from numcnn.testing import load_script

import numcnn

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = REPO_ROOT / "docs"

PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
#: A python block, then (after blank lines only) a text block: the output it shows.
BLOCK_AND_OUTPUT = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*\n"
                              r"(?:\s*\n)?^```text[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path):
    """The ```python code blocks of a Markdown file, in order."""
    return PYTHON_BLOCK.findall(Path(path).read_text(encoding="utf-8"))


def shown_outputs(path):
    """{python block: the ```text block right after it} of a Markdown file."""
    return dict(BLOCK_AND_OUTPUT.findall(Path(path).read_text(encoding="utf-8")))


def run_blocks(path, blocks, check_outputs=None):
    """Execute the blocks one after the other in one namespace, as one script.

    ``check_outputs`` maps a block to the text it must print, exactly.
    """
    namespace = {"__name__": "__docs__"}
    for i, block in enumerate(blocks, start=1):
        where = f"{path.relative_to(REPO_ROOT)} (python block {i})"
        code = compile(block, where, "exec")
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(code, namespace)  # noqa: S102 - running our own documentation
        if check_outputs and block in check_outputs:
            assert printed.getvalue() == check_outputs[block], \
                f"{where} prints something else than the page shows:\n{printed.getvalue()}"
    return namespace


# ---------------------------------------------------------------------------
# The code in the docs runs
# ---------------------------------------------------------------------------
def test_tutorial_runs_as_one_script(bloodcells_dir, tmp_path, monkeypatch):
    path = DOCS / "tutorial.md"
    blocks = python_blocks(path)
    assert len(blocks) >= 10, "the tutorial lost its code blocks"
    monkeypatch.setenv("NUMCNN_BLOODCELLS", str(bloodcells_dir))
    monkeypatch.setenv("NUMCNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    backend = numcnn.get_backend()
    began = time.perf_counter()
    namespace = run_blocks(path, blocks)
    seconds = time.perf_counter() - began
    assert numcnn.get_backend() == backend, "the tutorial left another backend switched on"
    assert (tmp_path / "bloodcells-tutorial.npz").is_file()
    assert namespace["model"].epoch == namespace["epochs"]
    assert namespace["scores"]["accuracy"] > 0.4, "the tutorial's network learned nothing"
    assert seconds < 60, f"the tutorial took {seconds:.0f} s; keep it well under a minute"


def test_readme_example_runs(tmp_path, monkeypatch):
    path = REPO_ROOT / "README.md"
    blocks = python_blocks(path)
    assert blocks, "README.md has no ```python block"
    monkeypatch.chdir(tmp_path)
    namespace = run_blocks(path, blocks)
    assert (tmp_path / "model.npz").is_file()
    assert namespace["probabilities"].shape == (5, 10)              # ten digits
    test = namespace["test"]
    assert namespace["model"].evaluate(test.x, test.y)["accuracy"] > 0.9   # it learned them


@pytest.mark.parametrize("page", ["index.md", "im2col.md"])
def test_doc_examples_run_and_print_what_they_show(page, tmp_path, monkeypatch):
    path = DOCS / page
    blocks = python_blocks(path)
    assert blocks, f"{page} has no ```python block"
    monkeypatch.chdir(tmp_path)
    run_blocks(path, blocks, check_outputs=shown_outputs(path))


def github_anchors(text):
    """The anchors GitHub gives the headings of a Markdown text (code blocks skipped)."""
    anchors, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def test_doc_links_point_at_files_and_headings():
    """Relative links in docs/*.md and README.md lead to files (and headings) that exist."""
    link = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]*))?\)")
    # performance.md, bloodcells.md and pbc.md are written separately; they may not exist yet.
    elsewhere = ("performance.md", "bloodcells.md", "pbc.md")
    broken = []
    for page in [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = page.read_text(encoding="utf-8")
        for target, anchor in link.findall(text):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = page.parent / target if target else page
            if not path.exists():
                if not target.endswith(elsewhere):
                    broken.append(f"{page.name}: {target}")
                continue
            if anchor and path.suffix == ".md" and \
                    anchor not in github_anchors(path.read_text(encoding="utf-8")):
                broken.append(f"{page.name}: {target}#{anchor}")
    assert not broken, f"broken relative links: {broken}"


# ---------------------------------------------------------------------------
# Every public name has a docstring (the API reference is built from them)
# ---------------------------------------------------------------------------
def library_modules():
    """numcnn and every module under it (the numba kernels only when numba imports)."""
    modules = [numcnn]
    for info in pkgutil.walk_packages(numcnn.__path__, prefix="numcnn."):
        try:
            modules.append(importlib.import_module(info.name))
        except ImportError:
            if info.name != "numcnn.kernels.jit":  # optional: numba may be missing
                raise
    return modules


def is_public(name):
    return not name.startswith("_")


def public_names(module):
    """``__all__`` plus the functions and classes the module itself defines."""
    names = set(getattr(module, "__all__", ()))
    for name, value in vars(module).items():
        if not is_public(name) or inspect.ismodule(value):
            continue
        if (inspect.isclass(value) or callable(value)) and \
                getattr(value, "__module__", "").startswith(module.__name__):
            names.add(name)
    return names


def is_method(value):
    return isinstance(value, (staticmethod, classmethod, property)) or inspect.isfunction(value)


def public_methods(cls):
    """Public methods, class methods and properties that ``cls`` itself defines (overrides too)."""
    return {name for name, value in vars(cls).items() if is_public(name) and is_method(value)}


def has_text(doc):
    return isinstance(doc, str) and bool(doc.strip())


def method_documented(cls, name):
    """``cls.name`` has a docstring, or overrides a base class's method that has one."""
    for klass in cls.__mro__:
        value = vars(klass).get(name)
        if value is None or not is_method(value):
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if has_text(value.__doc__):
            return True
    return False


def documented_constants(module):
    """``{name: has a docstring}`` for the module-level assignments of ``module``."""
    try:
        return constants_documented_in(inspect.getsource(module))
    except (OSError, TypeError):
        return {}


def constants_documented_in(source):
    """``{name: has a docstring}`` for the top-level assignments of a module's source.

    A constant's docstring is the string literal right after its assignment,
    which is what pdoc (and Sphinx) show; a ``#:`` comment above it is not.
    """
    body = ast.parse(source).body
    found = {}
    for statement, following in zip(body, body[1:] + [None]):
        if isinstance(statement, ast.Assign):
            targets = [target.id for target in statement.targets if isinstance(target, ast.Name)]
        elif isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            targets = [statement.target.id]
        else:
            continue
        docstring = (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                     and has_text(following.value.value))
        for target in targets:
            found[target] = docstring
    return found


def public_api():
    """``{label: documented?}`` for every public module, function, class, method and constant."""
    modules = library_modules()
    assigned = {module.__name__: documented_constants(module) for module in modules}
    api, classes = {}, {}
    for module in modules:
        api[module.__name__] = has_text(module.__doc__)
        for name in public_names(module):
            label = f"{module.__name__}.{name}"
            value = getattr(module, name, None)
            if inspect.ismodule(value):
                continue                          # a module is checked as a module
            if inspect.isclass(value):
                api[label] = has_text(vars(value).get("__doc__"))
                if value.__module__.startswith("numcnn"):
                    classes[f"{value.__module__}.{value.__qualname__}"] = value
            elif callable(value):
                api[label] = has_text(getattr(value, "__doc__", None))
            elif name in assigned[module.__name__]:
                api[label] = assigned[module.__name__][name]
            else:                                 # imported: documented where it is assigned
                api[label] = any(documents.get(name) for documents in assigned.values())
    for label, cls in classes.items():
        for method in public_methods(cls):
            api[f"{label}.{method}"] = method_documented(cls, method)
    return api


def test_every_public_name_has_a_docstring():
    api = public_api()
    assert len(api) > 300, "the enumeration of public names found too little"
    for must in ("numcnn.training.Trainer.fit", "numcnn.training.Trainer.train_step",
                 "numcnn.model.Sequential.param_slots", "numcnn.datasets.bloodcells.load_data",
                 "numcnn.datasets.pbc.load_data", "numcnn.datasets.pbc.CITATION",
                 "numcnn.data.CentreCrop", "numcnn.explain.grad_cam", "numcnn.layers.Conv2D",
                 "numcnn.gradcheck", "numcnn.load", "numcnn.__version__", "numcnn.data.cache"):
        assert must in api, f"the enumeration missed {must}"
    missing = sorted(label for label, documented in api.items() if not documented)
    assert not missing, ("public names without a docstring (the API reference is built from "
                         f"them; a constant's docstring is a string right after it): {missing}")


def test_docstring_check_is_strict():
    class Base:
        def documented(self):
            """Has a docstring."""

        def bare(self):
            pass

    class Child(Base):
        def documented(self):               # an override inherits the base's docstring
            pass

        def bare(self):
            pass

        @property
        def size(self):
            return 1

    assert method_documented(Child, "documented")
    assert not method_documented(Child, "bare")
    assert not method_documented(Child, "size")
    assert not has_text(vars(Child).get("__doc__")) and not has_text("  \n ")
    source = ('A = 1\n"""Documented."""\n#: a comment is not a docstring\nB = 2\n'
              'C: int = 3\n"""  """\nD = E = 4\n"""Both."""\n')
    assert constants_documented_in(source) == {"A": True, "B": False, "C": False, "D": True,
                                               "E": True}
    assert documented_constants(numcnn)["__version__"] is True


def test_api_reference_renders(tmp_path):
    """pdoc builds the HTML reference of every module, without an error or a warning."""
    pytest.importorskip("pdoc")
    api = load_doc_script("api")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = api.render(tmp_path / "api")
    raised = [f"{w.category.__name__}: {w.message}" for w in caught
              if not issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning))]
    assert not raised, f"pdoc warned while rendering the reference: {raised}"
    assert (out / "index.html").is_file()
    pages = [out / (module.__name__.replace(".", "/") + ".html") for module in library_modules()]
    missing = [str(page.relative_to(out)) for page in pages if not page.is_file()]
    assert not missing, f"the reference has no page for: {missing}"
    text = (out / "numcnn" / "training.html").read_text(encoding="utf-8")
    assert "initial_epoch" in text and "Parameters" in text
    navigation = (out / "numcnn" / "data.html").read_text(encoding="utf-8")
    assert 'href="data/cache.html"' in navigation, "the navigation misses submodules"


# ---------------------------------------------------------------------------
# The generated parts of docs/im2col.md are what their scripts generate
# ---------------------------------------------------------------------------
def load_doc_script(name):
    return load_script(DOCS / f"{name}.py", f"docs_{name}")


def test_im2col_memory_table_is_current():
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        load_doc_script("im2col_memory").main()
    page = (DOCS / "im2col.md").read_text(encoding="utf-8")
    rows = [line for line in printed.getvalue().splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 9
    stale = [row for row in rows if row not in page]
    assert not stale, f"docs/im2col.md has an outdated memory table; rerun docs/im2col_memory.py: {stale}"


def test_im2col_figure_script_runs(tmp_path):
    pytest.importorskip("matplotlib")
    assert (DOCS / "img" / "im2col.png").is_file()
    path = load_doc_script("draw_im2col").main(tmp_path / "im2col.png")
    assert path.is_file() and path.stat().st_size < 150_000
