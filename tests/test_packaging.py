"""What a user installs: the licence, what the sdist holds, and floors that CI tests.

``tests/packaging.sh`` builds the sdist and the wheel and installs the wheel
alone; ``tests/floors.sh`` runs the kernel and model tests at every floor.
These checks keep the files that drive them consistent with ``setup.cfg``.
"""
import configparser
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def setup_cfg():
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg")
    return parser


def floors():
    """``{distribution: floor}`` from setup.cfg's install_requires."""
    found = {}
    for line in setup_cfg()["options"]["install_requires"].split("\n"):
        if line.strip():
            name, version = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", line.strip()).groups()
            found[name.lower()] = version
    return found


def test_the_licence_is_the_one_setup_cfg_names():
    assert setup_cfg()["metadata"]["license"] == "MIT"
    assert (REPO_ROOT / "LICENSE").read_text().startswith("MIT License")


def test_floors_sh_pins_exactly_the_floors_of_setup_cfg():
    script = (REPO_ROOT / "tests" / "floors.sh").read_text()
    pinned = dict((name.lower(), version) for name, version in
                  re.findall(r"\b([a-z][a-z0-9-]*)==([0-9.]+)", script.split("FLOORS=(")[1]
                             .split(")")[0]))
    for name, floor in floors().items():
        assert name in pinned, f"tests/floors.sh does not test {name}"
        assert pinned[name].startswith(floor), f"{name}: floor {floor}, tested {pinned[name]}"
    assert setup_cfg()["options"]["python_requires"] == ">=3.10" and "python3.10" in script


def test_the_manifest_takes_tests_docs_examples_benchmarks_and_changelog():
    manifest = (REPO_ROOT / "MANIFEST.in").read_text()
    for wanted in ("LICENSE", "CHANGELOG.md", "recursive-include tests",
                   "recursive-include examples", "recursive-include docs",
                   "recursive-include benchmarks"):
        assert wanted in manifest
