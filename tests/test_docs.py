"""The documentation runs and is complete.

- ``docs/tutorial.md``: every ```python block, in order, in one namespace, as one
  script, in a temporary working directory (needs the blood-cell data; skipped
  without it).
- ``README.md``: its ```python block (the taste of the API) runs.
- ``docs/index.md`` and ``docs/im2col.md``: their ```python blocks run, and where a
  ```text block follows a python block directly, it is exactly what the block prints.
- ``docs/api.md``: every public name of the library appears in it in backticks,
  so a new public function, class or method without documentation fails here.
"""
import contextlib
import importlib
import importlib.util
import inspect
import io
import pkgutil
import re
import time
from pathlib import Path

import pytest

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
    assert namespace["probabilities"].shape == (5, 2)


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
    # performance.md and bloodcells.md are written separately; they may not exist yet.
    elsewhere = ("performance.md", "bloodcells.md")
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
# docs/api.md documents every public name
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


def inherited_from_numcnn(cls, name):
    """True if a numcnn base class of ``cls`` already defines ``name`` (an override)."""
    return any(name in vars(base) for base in cls.__mro__[1:]
               if base.__module__.startswith("numcnn"))


def public_methods(cls):
    """Methods, class methods and properties that ``cls`` adds to its numcnn bases."""
    methods = set()
    for name, value in vars(cls).items():
        if not is_public(name) or inherited_from_numcnn(cls, name):
            continue
        if isinstance(value, (staticmethod, classmethod, property)) or inspect.isfunction(value):
            methods.add(name)
    return methods


def documented(text, name):
    """``name`` appears as an identifier inside a backtick span of ``text``."""
    pattern = r"`[^`\n]*(?<![\w.])" + r"(?:\w+\.)*" + re.escape(name) + r"(?!\w)[^`\n]*`"
    return re.search(pattern, text) is not None


def api_names():
    """(label, name) pairs that docs/api.md must mention."""
    wanted = set()
    classes = {}
    for module in library_modules():
        for name in public_names(module):
            wanted.add((f"{module.__name__}.{name}", name))
            value = getattr(module, name, None)
            if inspect.isclass(value) and value.__module__.startswith("numcnn"):
                classes[value.__qualname__] = value
    for cls_name, cls in classes.items():
        for method in public_methods(cls):
            wanted.add((f"{cls.__module__}.{cls_name}.{method}", f"{cls_name}.{method}"))
    return sorted(wanted)


def test_api_reference_names_every_public_name():
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    wanted = api_names()
    assert len(wanted) > 100, "the enumeration of public names found too little"
    names = {name for _, name in wanted}
    for must in ("Sequential.fit", "Sequential.train_step", "Sequential.param_slots",
                 "load_bloodcells", "grad_cam", "Conv2D", "gradcheck"):
        assert must in names, f"the enumeration missed {must}"
    missing = [label for label, name in wanted if not documented(text, name)]
    assert not missing, ("public names without an entry in docs/api.md (write them in "
                         f"backticks, methods as `Class.method`): {missing}")


def test_documented_check_is_strict():
    assert documented("`numcnn.data.load_bloodcells(data_dir=None)`", "load_bloodcells")
    assert documented("### `Sequential.fit(x, y, epochs)`", "Sequential.fit")
    assert not documented("load_bloodcells without backticks", "load_bloodcells")
    assert not documented("`load_bloodcells_more`", "load_bloodcells")
    assert not documented("`Softmax`", "softmax")
    assert not documented("`fit`", "Sequential.fit")


# ---------------------------------------------------------------------------
# The generated parts of docs/im2col.md are what their scripts generate
# ---------------------------------------------------------------------------
def load_doc_script(name):
    spec = importlib.util.spec_from_file_location(f"docs_{name}", DOCS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
