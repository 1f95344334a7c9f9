"""Build numcnn's documentation site into docs/_site/ (git-ignored), with Sphinx.

    python docs/build_site.py              build it (then open docs/_site/index.html)
    python docs/build_site.py --no-execute lessons without outputs where none are executed yet

One command, warnings as errors (a broken link, a bad docstring or a missing
page fails the build). What goes in:

- ``docs/index.md`` as the landing page, the guides of ``docs/`` (tutorial,
  layers, im2col, performance and its history, reliability, the two studies)
  and the benchmark report they link to;
- the course (``docs/course/``): its index and every lesson's teacher version
  *with its outputs and figures*, taken from ``docs/course/_build/executed/``
  where ``docs/course/run_lessons.py`` left a current one, otherwise executed
  here (a lesson whose data is missing is shown without outputs, with a note,
  outside CI);
- the API reference, one page per module, from the docstrings (autodoc);
- search (Sphinx's own, in the browser) and maths (MathJax 2, copied from the
  local install of Debian's ``libjs-mathjax``, or from ``$NUMCNN_MATHJAX``).

The site works with no network: no page loads anything from another host
(checked here on the HTML, and by ``tests/test_site.py`` in a browser).
Needs the ``docs`` extra (``pip install -e ".[docs]"``) and
``apt-get install libjs-mathjax``. The sources are staged in
``docs/_build/site-src`` first: links from the guides to files outside
``docs/`` (the code) become plain text there, since the site cannot serve
the repository.
"""
import argparse
import os
import re
import shutil
import sys
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
COURSE = DOCS / "course"
STAGE = DOCS / "_build" / "site-src"
DOCTREES = DOCS / "_build" / "doctrees"
HTML = DOCS / "_build" / "html"      # Sphinx writes here (myst-nb puts its files beside it) ...
OUT = DOCS / "_site"                 # ... and the finished site moves here
DOC_PAGES = ["tutorial.md", "layers.md", "im2col.md", "performance.md", "performance-history.md",
          "reliability.md", "bloodcells.md", "pbc.md", "twolabs.md"]
MATHJAX_PLACES = [os.environ.get("NUMCNN_MATHJAX", ""), "/usr/share/javascript/mathjax",
                  "/usr/share/nodejs/mathjax", "/usr/lib/node_modules/mathjax"]
LINK = re.compile(r"(!?)\[([^\]\n]*)\]\(([^)\s]+)\)")
#: Tags whose src/href a page loads by itself (a plain <a href> to another site is fine).
LOADED = re.compile(r"<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=\"(https?:)?//",
                    re.I)
CSS_LOADED = re.compile(r"(?:@import\s+|url\(\s*)['\"]?(?:https?:)?//", re.I)

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(COURSE))


def find_mathjax():
    """The folder holding MathJax.js (version 2), or a SystemExit saying how to install it."""
    for place in MATHJAX_PLACES:
        if place and (Path(place) / "MathJax.js").is_file():
            return Path(place)
    raise SystemExit("build_site.py: MathJax 2 not found (looked in "
                     f"{', '.join(p for p in MATHJAX_PLACES if p)}): "
                     "`apt-get install libjs-mathjax`, or set NUMCNN_MATHJAX to a folder "
                     "holding MathJax.js")


def rewrite_links(text, source, staged):
    """Links to files the site does not hold become their text; lesson links point at notebooks."""
    def replace(match):
        bang, label, target = match.groups()
        if "://" in target or target.startswith(("mailto:", "#")):
            return match.group(0)
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path).resolve()
        if re.fullmatch(r"\d\d-[a-z0-9-]+\.md", resolved.name) and resolved.parent == COURSE:
            return f"{bang}[{label}]({path[:-3]}.ipynb{'#' + anchor if anchor else ''})"
        if resolved in staged:
            return match.group(0)
        return label if not bang else match.group(0)
    return LINK.sub(replace, text)


def lesson_notebooks(execute, in_ci):
    """``{lesson stem: notebook}``: executed where possible (see the module's docstring)."""
    import nbformat
    import run_lessons
    import versions
    notebooks = {}
    for path in versions.lessons():
        executed = run_lessons.EXECUTED / f"{path.stem}.ipynb"
        if executed.is_file():
            nb = nbformat.read(executed, as_version=4)
            if nb.metadata.get("numcnn_course", {}).get("source") == run_lessons.source_hash(path):
                notebooks[path.stem] = nb
                continue
        missing = run_lessons.missing_data(path)
        if execute and not (missing and not in_ci):
            print(f"executing {path.name} (no current run in {run_lessons.EXECUTED})", flush=True)
            nb, seconds = run_lessons.run_teacher(path)
            run_lessons.save(nb, path)
            print(f"  {seconds:.0f} s")
        else:
            reason = (f"needs {', '.join(name for name, _ in missing)}" if missing
                      else "--no-execute")
            print(f"{path.name}: shown without outputs ({reason})")
            nb = versions.notebook(path, "teacher")
            note = nbformat.v4.new_markdown_cell(
                "```{note}\nThis page was built without running the lesson "
                f"({reason}): run `python docs/course/run_lessons.py {path.stem[:2]}` "
                "and build the site again to see its outputs.\n```")
            nb.cells.insert(1, note)
        notebooks[path.stem] = nb
    return notebooks


def module_names():
    """numcnn and every module under it, as docs/api.py lists them."""
    import pkgutil

    import numcnn
    names = ["numcnn"] + [info.name for info in pkgutil.walk_packages(numcnn.__path__, "numcnn.")]
    return [name for name in names if not name.split(".")[-1].startswith("_")]


def api_pages():
    """``{relative path: text}`` of the API reference: an index and one page per module."""
    import importlib
    pages, rows = {}, []
    for name in module_names():
        module = importlib.import_module(name)
        summary = (module.__doc__ or "").strip().split("\n")[0]
        rows.append(f"| [`{name}`](api/{name}.md) | {summary.replace('|', '/')} |")
        pages[f"api/{name}.md"] = (f"# `{name}`\n\n```{{eval-rst}}\n.. automodule:: {name}\n```\n")
    pages["api.md"] = (
        "# API reference\n\n"
        "Every public module, class and function of numcnn, from its docstring. The "
        "shapes are NCHW (`(N, C, H, W)`) throughout. The same reference is also built "
        "by pdoc: `python docs/api.py -o DIR`.\n\n"
        "| module | what it holds |\n| --- | --- |\n" + "\n".join(rows) + "\n\n"
        "```{toctree}\n:hidden:\n\n"
        + "\n".join(f"api/{name}" for name in module_names()) + "\n```\n")
    return pages


def stage(notebooks):
    """Write the site's sources into STAGE; return the list of staged documents."""
    import nbformat
    if STAGE.exists():
        shutil.rmtree(STAGE)
    (STAGE / "course").mkdir(parents=True)
    shutil.copytree(DOCS / "img", STAGE / "img")
    markdown = {DOCS / "index.md": "index.md", COURSE / "index.md": "course/index.md"}
    markdown.update({DOCS / name: name for name in DOC_PAGES})
    markdown.update({path: f"benchmarks/{path.name}"
                     for path in sorted((DOCS / "benchmarks").glob("*.md"))})
    staged = set(markdown) | {path.resolve() for path in (DOCS / "img").iterdir()} \
        | {DOCS / "api.md"}
    for source, target in markdown.items():
        text = rewrite_links(source.read_text(encoding="utf-8"), source, staged)
        if target == "index.md":
            text += site_navigation(notebooks)
        if target == "performance.md":           # the reports it links to, under it
            text += ("\n```{toctree}\n:hidden:\n\n" + "\n".join(
                f"benchmarks/{p.stem}" for p in sorted((DOCS / "benchmarks").glob("*.md")))
                + "\n```\n")
        (STAGE / target).parent.mkdir(parents=True, exist_ok=True)
        (STAGE / target).write_text(text, encoding="utf-8")
    for stem, nb in notebooks.items():
        nbformat.write(nb, STAGE / "course" / f"{stem}.ipynb")
    for target, text in api_pages().items():
        (STAGE / target).parent.mkdir(parents=True, exist_ok=True)
        (STAGE / target).write_text(text, encoding="utf-8")


def site_navigation(notebooks):
    """The site's table of contents, appended to the landing page (hidden: the page has its own)."""
    def toctree(caption, entries):
        return (f"\n```{{toctree}}\n:hidden:\n:caption: {caption}\n\n"
                + "\n".join(entries) + "\n```\n")
    return (toctree("Course", ["course/index"] + [f"course/{stem}" for stem in notebooks])
            + toctree("Guides", [name[:-3] for name in DOC_PAGES])
            + toctree("Reference", ["api"]))


def check_offline(site):
    """Fail if any page loads a script, style, image or frame from another host (or CSS a font)."""
    offending = []
    for page in site.rglob("*.html"):
        for match in LOADED.finditer(page.read_text(encoding="utf-8", errors="replace")):
            offending.append(f"{page.relative_to(site)}: {match.group(0)[:80]}")
    for sheet in site.rglob("*.css"):
        for match in CSS_LOADED.finditer(sheet.read_text(encoding="utf-8", errors="replace")):
            offending.append(f"{sheet.relative_to(site)}: {match.group(0)[:80]}")
    if offending:
        raise SystemExit("build_site.py: pages load from the network:\n  " + "\n  ".join(offending[:20]))


def build(execute=True):
    from sphinx.cmd.build import build_main
    began = time.perf_counter()
    mathjax = find_mathjax()
    notebooks = lesson_notebooks(execute, in_ci=bool(os.environ.get("CI")))
    stage(notebooks)
    for folder in (HTML, OUT):
        if folder.exists():
            shutil.rmtree(folder)
    status = build_main(["-b", "html", "-W", "--keep-going", "-q", "-c", str(DOCS / "site"),
                         "-d", str(DOCTREES), str(STAGE), str(HTML)])
    if status:
        raise SystemExit(f"build_site.py: Sphinx failed (status {status}); see the warnings above")
    shutil.move(str(HTML), str(OUT))
    shutil.copytree(mathjax, OUT / "_static" / "mathjax", symlinks=False,
                    ignore=shutil.ignore_patterns("unpacked", "test", "*.md", "*.txt"))
    check_offline(OUT)
    pages = len(list(OUT.rglob("*.html")))
    print(f"site built in {OUT} ({pages} pages, {time.perf_counter() - began:.0f} s); "
          f"open {OUT / 'index.html'}")
    return OUT


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-execute", action="store_true",
                        help="do not run lessons that have no current executed copy")
    args = parser.parse_args(argv)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    build(execute=not args.no_execute)
    return 0


if __name__ == "__main__":
    sys.exit(main())
