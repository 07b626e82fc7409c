"""Imports every third-party module the Python tests name (found by reading their import statements) and every
package of tests/python/requirements.txt, and fails naming each one this Python cannot import: run in a brand-new
virtual environment after `pip install -r tests/python/requirements.txt`, a requirement missing from that file
fails here, at once, instead of as a ModuleNotFoundError deep inside a test run."""

import argparse
import ast
import importlib
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests" / "python"
# A distribution whose module has another name.
MODULE_OF = {"pyyaml": "yaml", "pillow": "PIL", "prometheus-client": "prometheus_client", "adbc-driver-flightsql": "adbc_driver_flightsql"}


def imported(path):
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def project_name(folder):
    """The `[project] name` of the pyproject.toml in `folder`."""
    with open(folder / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["name"].lower()


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--tests", type=pathlib.Path, default=TESTS, help="the folder of the tests")
    args = args.parse_args()
    tests = args.tests.resolve()
    local = {p.stem for p in tests.glob("*.py")}
    wanted = {}
    for path in sorted(tests.glob("*.py")):
        for name in imported(path):
            if name not in sys.stdlib_module_names and name not in local:
                wanted.setdefault(name, f"imported by {path.name}")
    for line in (tests / "requirements.txt").read_text().splitlines():
        dist = re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
        if dist.startswith(("./", "../", "/")):
            # A project of this repository (a path pip takes from the root, where CI runs it): its package name.
            dist = project_name(ROOT / dist)
        if dist and not dist.startswith("#"):
            module = MODULE_OF.get(dist, dist.replace("-", "_"))
            wanted.setdefault(module, f"listed in tests/python/requirements.txt as {dist}")
    missing = []
    for module, why in sorted(wanted.items()):
        try:
            importlib.import_module(module)
        except ImportError as e:
            missing.append(f"{module} ({why}): {e}")
    if missing:
        print("the Python tests need modules this environment cannot import; add them to "
              f"{tests / 'requirements.txt'}:", file=sys.stderr)
        for m in missing:
            print("  " + m, file=sys.stderr)
        sys.exit(1)
    print(f"python imports: all {len(wanted)} modules the tests need import")


if __name__ == "__main__":
    main()
