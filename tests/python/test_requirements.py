"""The import check of scripts/check_python_imports.py, which scripts/test.sh runs in the brand-new virtual
environment it makes: a module a test imports, or a package requirements.txt lists, that cannot be imported fails
the check at once, with its name."""

import pathlib
import subprocess
import sys

CHECK = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "check_python_imports.py"


def check(tests):
    return subprocess.run([sys.executable, str(CHECK), "--tests", str(tests)], capture_output=True, text=True,
                          timeout=120)


def test_a_missing_requirement_fails_with_its_name(tmp_path):
    (tmp_path / "requirements.txt").write_text("# nothing\nnumpy>=1\n")
    (tmp_path / "helper.py").write_text("import os\n")
    (tmp_path / "test_x.py").write_text("import helper\nimport json\ndef f():\n    from notamodule_zq.sub import x\n")
    out = check(tmp_path)
    assert out.returncode == 1, out
    assert "notamodule_zq (imported by test_x.py)" in out.stderr, out.stderr
    # The stdlib, the folder's own modules and importable requirements are not named.
    for fine in ("json", "helper", "numpy", "os"):
        assert f"  {fine} " not in out.stderr, out.stderr


def test_a_listed_package_that_does_not_import_fails(tmp_path):
    (tmp_path / "requirements.txt").write_text("numpy>=1\nnot-a-package-zq>=2  # indirectly needed\n")
    (tmp_path / "test_x.py").write_text("import numpy\n")
    out = check(tmp_path)
    assert out.returncode == 1 and "not_a_package_zq (listed in" in out.stderr, out.stderr


def test_the_suite_itself_passes_in_this_environment():
    out = check(CHECK.parents[1] / "tests" / "python")
    assert out.returncode == 0, out.stderr
    assert "modules the tests need import" in out.stdout
