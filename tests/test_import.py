import subprocess
import sys

OPTIONAL = ["torch", "numba", "matplotlib", "sympy", "typer", "rich", "ml_dtypes", "jax", "scipy"]


def test_import_adaopt_loads_only_numpy():
    code = ("import sys, adaopt; adaopt.Adam(lr=1e-3); "
            f"print(','.join(m for m in {OPTIONAL!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_the_probe_would_see_a_heavy_import():
    """The check above can fail: importing the CLI's app does pull in typer."""
    code = "import sys, adaopt.cli.app; print('typer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"
