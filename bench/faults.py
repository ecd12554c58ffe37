"""Real faults on a real filesystem: a full disk during `run` and `export`, then the same workspace read-only.

    sudo python bench/faults.py        # needs root: it mounts a small tmpfs (and remounts it read-only)

tests/test_faults.py covers the same paths in the suite with the fault injected in-process (no root there);
this script is the check against the kernel's own ENOSPC and EROFS. It prints one line per case and exits 1 if
any case did not end as it should (exit 2 with `error:` and a hint, the workspace still readable).
"""

from __future__ import annotations

import os
import sys

# run as `python bench/x.py`: import from the repo root, not bench/ (bench/select.py would shadow the stdlib `select`)
sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate_core", *args], cwd=REPO, capture_output=True, text=True)


def line(ok: bool, what: str, r: subprocess.CompletedProcess | None = None) -> bool:
    said = (r.stderr.strip().splitlines() or [""])[0][:110] if r is not None else ""
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f"  [exit {r.returncode}] {said}" if r is not None else ""))
    return ok


def main() -> int:
    from curate_core import Workspace

    mnt = Path(tempfile.mkdtemp(prefix="curate-faults-"))
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mnt)], capture_output=True).returncode:
        print("skipped: mounting a tmpfs needs root (run with sudo)")
        return 0
    results = []
    try:
        ws_path = mnt / "ws"
        rng = pd.Series(range(12_000))
        with Workspace(ws_path) as ws:
            ws.ingest(pd.DataFrame({"text": "order " + rng.astype(str) + " of card payments and refunds",
                                    "label": (rng % 7).astype(str)}))
        t0 = time.monotonic()
        r = cli("run", "--workspace", str(ws_path), "--stages", "embed", "--embedder", "tfidf",
                "--param", "embed.dim=256")
        results.append(line(r.returncode == 2 and "disk is full" in r.stderr, f"run fills the disk "
                            f"({time.monotonic() - t0:.1f} s)", r))
        r = cli("info", "--workspace", str(ws_path))
        results.append(line(r.returncode == 0 and "12,000" in r.stdout, "info after the full disk", r))
        filler = mnt / "filler"
        with open(filler, "wb") as f:  # leave no room for an export either
            try:
                while True:
                    f.write(b"\0" * 65536)
            except OSError:
                pass
        r = cli("export", "--workspace", str(ws_path), "--recipe", str(REPO / "assets/recipes/all.json"),
                "--out", str(mnt / "out"))
        left = [p.name for p in (mnt / "out").iterdir()] if (mnt / "out").exists() else []
        results.append(line(r.returncode == 2 and "disk is full" in r.stderr and not left,
                            f"export onto the full disk leaves {left or 'nothing'}", r))
        filler.unlink()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        out = Path(tempfile.mkdtemp(prefix="curate-ro-out-"))
        for verb in (["info"], ["select", "--recipe", str(REPO / "assets/recipes/all.json")],
                     ["export", "--recipe", str(REPO / "assets/recipes/all.json"), "--out", str(out / "e")],
                     ["check"]):
            r = cli(*verb, "--workspace", str(ws_path))
            results.append(line(r.returncode == 0, f"read-only mount: {verb[0]}", r))
        r = cli("select", "--workspace", str(ws_path), "--recipe", str(REPO / "assets/recipes/all.json"),
                "--save-selection", "x")
        results.append(line(r.returncode == 2 and "read-only here" in r.stderr, "read-only mount: a write", r))
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)
        os.rmdir(mnt)
    print(f"{sum(results)} of {len(results)} cases as they should be")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
