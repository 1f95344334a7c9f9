"""numcnn and its examples where Unix's fcntl, resource and termios do not exist (Windows).

A Python of its own, in which importing any of the three fails as it does on
Windows, imports every module of numcnn and of the study package, then runs the
blood-cell study to its end on a small subset: the output folder's lock
(``filelock``) and everything else must do without them.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

WITHOUT_UNIX_MODULES = textwrap.dedent("""
    import importlib.abc, sys

    class WindowsLike(importlib.abc.MetaPathFinder):
        '''Refuses the modules Windows lacks, as Windows would.'''
        def find_spec(self, name, path=None, target=None):
            if name in ("fcntl", "resource", "termios"):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    for name in ("fcntl", "resource", "termios"):
        sys.modules.pop(name, None)
    sys.meta_path.insert(0, WindowsLike())
    """)


def run_without_unix_modules(code, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT / "examples"),
                                                        str(REPO_ROOT)]))
    return subprocess.run([sys.executable, "-c", WITHOUT_UNIX_MODULES + textwrap.dedent(code)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)


def test_every_module_imports_without_fcntl_resource_and_termios(tmp_path):
    run = run_without_unix_modules("""
        import importlib, pkgutil
        import numcnn, cellstudy
        names = []
        for package in (numcnn, cellstudy):
            for info in pkgutil.walk_packages(package.__path__, prefix=package.__name__ + "."):
                if info.name != "numcnn.__main__":
                    importlib.import_module(info.name)
                    names.append(info.name)
        try:
            import fcntl
        except ModuleNotFoundError:
            print(len(names), "imported; fcntl refused")
        """, tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    count, rest = run.stdout.split(" ", 1)
    assert int(count) > 30 and rest.strip() == "imported; fcntl refused"


def test_the_blood_cell_study_runs_to_its_end_without_them(bloodcells_dir, tmp_path):
    out = tmp_path / "out"
    run = run_without_unix_modules(f"""
        import runpy, sys
        sys.argv = ["bloodcells.py", "--data", {str(bloodcells_dir)!r}, "--out", {str(out)!r},
                    "--max-per-class", "40", "--epochs", "1", "--no-plots", "--quiet"]
        try:
            runpy.run_path({str(REPO_ROOT / "examples" / "bloodcells.py")!r},
                           run_name="__main__")
        except SystemExit as stop:
            print("exit status", stop.code)
            raise
        """, tmp_path)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    results = json.loads((out / "results.json").read_text())
    assert "test" in results["seeds"]["0"]
    assert (out / "seed0" / "model.npz").is_file()
