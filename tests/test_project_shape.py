"""Project shape: the core stays headless, the README's commands are what CI runs, the demo is reproducible."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .conftest import REPO


def test_core_import_does_not_import_streamlit():
    code = "import curate_core, curate_core.cli, curate_core.pipeline, sys; " \
           "curate_core.pipeline.registry(); assert 'streamlit' not in sys.modules, 'streamlit imported'"
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_no_streamlit_import_anywhere_in_core():
    offenders = []
    for path in (REPO / "curate_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "streamlit" or n.startswith("streamlit.") for n in names):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_no_raw_html_in_ui():
    for path in [REPO / "app.py", *(REPO / "pages").glob("*.py"), *(REPO / "curate_ui").glob("*.py")]:
        assert not re.search(r"unsafe_allow_html\s*=\s*True", path.read_text(encoding="utf-8")), path


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)[:2]


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    app_cmd, test_cmd = readme_commands()
    assert "python3 -m venv .venv" in app_cmd and "pip install -r requirements.txt" in app_cmd
    assert "curate_core demo" in app_cmd and "streamlit run app.py" in app_cmd
    assert "pytest" in test_cmd and "tests/requirements.txt" in test_cmd
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert test_cmd.strip() in ci, ".ci/run must run exactly the README's test command"


def test_console_script_is_the_cli():
    """`pip install -e .` (the README's set-up) puts a `curate` command next to the venv's python."""
    curate = Path(sys.executable).parent / "curate"
    assert curate.exists(), "run the README set-up: pip install -e . installs the `curate` command"
    r = subprocess.run([str(curate), "--help"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "usage: curate" in r.stdout, r.stderr
    for cmd in ("ingest", "run", "info", "export", "select", "evaluate", "scores"):
        assert cmd in r.stdout


def test_conftest_does_not_patch_sys_path():
    assert "sys.path" not in (REPO / "tests" / "conftest.py").read_text(encoding="utf-8")


def test_torch_pinned_for_pip():
    reqs = (REPO / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==2\.13\.0$", reqs, flags=re.M)


def test_demo_file_is_the_seeded_flip_of_the_bundled_train_split():
    from curate_core.demo import DEMO_CLEAN, DEMO_NOISY, DEMO_RATE, DEMO_SEED, make_noisy

    clean = pd.read_csv(DEMO_CLEAN, dtype=str, keep_default_na=False)
    shipped = pd.read_csv(DEMO_NOISY, dtype=str, keep_default_na=False)
    again = make_noisy(clean, DEMO_RATE, DEMO_SEED)
    pd.testing.assert_frame_equal(shipped, again)
    flipped = (shipped["label"] != shipped["true_label"]).mean()
    assert abs(flipped - DEMO_RATE) < 1e-3
    assert (REPO / "assets" / "demo" / "ATTRIBUTION.md").exists()
