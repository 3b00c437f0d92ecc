"""The built wheel, installed as a user installs it: one package in site-packages,
``anigenre``, that predicts from a folder whose own ``models/``, ``core/``, ``jobs/``,
``scraper/`` and ``config.py`` it never imports.

The wheel is built offline from a copy of the source (so the working tree gets no
``build/``) with the virtualenv's own setuptools (``--no-build-isolation``: pyproject asks
for setuptools>=68, which an offline build cannot fetch; the one here reads the
``package-dir`` table all the same), then installed without dependencies into a
fresh virtualenv. The dependencies come from this virtualenv's site-packages through a
``.pth`` line: a directory named in a ``.pth`` file is put on ``sys.path`` but its own
``.pth`` files are not run, so the editable install's finder there stays out and the
only ``anigenre`` the fresh interpreter can see is the wheel's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

from tests.procs import ROOT
from tests.synthetic import poster_folder, trained_tiny_model

pytestmark = pytest.mark.slow

DECOYS = ("models", "core", "jobs", "scraper", "config")
# What a user's folder may hold under our subpackages' names: each says it was imported.
DECOY_CODE = (
    "with open({marker!r}, 'a') as fh:\n"
    "    fh.write(__name__ + '\\n')\n"
    "raise ImportError('the decoy ' + __name__ + ' was imported')\n"
)
SCRIPT = """\
import json, sys
from pathlib import Path

import anigenre

posters = sorted(Path(sys.argv[2]).iterdir())
out = {"anigenre": anigenre.__file__, "version": anigenre.__version__, "rows": {}}
for engine in ("litert", "keras"):
    model = anigenre.load_model("latest", data_dir=sys.argv[1], engine=engine)
    rows = model.predict(posters)
    out["rows"][engine] = {
        "n": len(rows),
        "ok": int((rows["status"] == "ok").sum()),
        "paths": rows["path"].tolist(),
        "model_id": model.model_id,
    }

# A run, then the same run forced: the folder keeps both (history), the view one a poster.
import pandas as pd

data, folder, target = sys.argv[1], sys.argv[2], Path(sys.argv[3])
anigenre.predict(folder, out=target, data_dir=data)
second = anigenre.predict(folder, out=target, force=True, data_dir=data)
current = anigenre.read_predictions(target, data_dir=data).set_index("path")
table = second.table().set_index("path")
single = anigenre.load_model("latest", data_dir=data).predict(posters).set_index("path")
genres = [c for c in table.columns if c.startswith("p_")]
out["runs"] = {
    "history": len(pd.read_parquet(target / "predictions")),
    "current": len(current),
    "current_vs_table": float((current.loc[table.index, genres] - table[genres]).abs().max().max()),
    "model_vs_table": float((single.loc[table.index, genres] - table[genres]).abs().max().max()),
}
out["modules"] = sorted({name.split(".")[0] for name in sys.modules})
out["files"] = sorted({
    getattr(m, "__file__", None) or "" for m in list(sys.modules.values())
})
print(json.dumps(out))
"""


def _package_dirs() -> dict[str, str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["setuptools"]["package-dir"]


def _build_wheel(dest: Path, work: Path) -> Path:
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in set(_package_dirs().values()):
        if not (src / folder).exists():
            shutil.copytree(ROOT / folder, src / folder, ignore=ignore)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(dest), str(src)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dest.glob("anigenre-*.whl")
    return wheel


def _fresh_venv(path: Path, wheel: Path) -> Path:
    """A virtualenv holding only the wheel; the dependencies reached through a .pth line."""
    venv.create(path, with_pip=False, symlinks=True)
    python = path / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
         "--no-index", "--no-compile", "-q", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(purelib)


def test_the_wheel_installs_one_package_that_predicts_beside_a_users_own_folders(
    tmp_path, shared_dir
):
    wheel = _build_wheel(tmp_path / "dist", tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "anigenre",
        wheel.name.split("-py3")[0] + ".dist-info",
    }
    assert "anigenre/py.typed" in names and "anigenre/models/poster_model.py" in names

    purelib = _fresh_venv(tmp_path / "venv", wheel)
    installed = {p.name for p in purelib.iterdir()} - {"_deps.pth", "__pycache__"}
    assert {n for n in installed if not n.endswith(".dist-info")} == {"anigenre"}
    assert not installed & set(DECOYS)

    data = tmp_path / "data"
    data.mkdir()
    trained_tiny_model(data, shared_dir, epochs=1)
    posters = poster_folder(tmp_path / "posters", 40, 7000)

    user = tmp_path / "user"  # the user's project: the script runs from here, beside these
    for name in DECOYS:
        target = user / name / "__init__.py" if name != "config" else user / "config.py"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(DECOY_CODE.format(marker=str(user / "imported.txt")))
    (user / "predict.py").write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "PYTHON"))}
    done = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "predict.py", str(data), str(posters),
         str(tmp_path / "out")],
        cwd=user, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert not (user / "imported.txt").exists(), (user / "imported.txt").read_text()
    out = json.loads(done.stdout)

    assert Path(out["anigenre"]).is_relative_to(purelib), out["anigenre"]
    assert out["version"] == wheel.name.split("-")[1]
    for engine, rows in out["rows"].items():
        assert (rows["n"], rows["ok"]) == (40, 40), engine
        assert rows["paths"] == [str(p) for p in sorted(posters.iterdir())]
    runs = out["runs"]
    assert (runs["history"], runs["current"]) == (80, 40), runs
    assert runs["current_vs_table"] < 1e-4 and runs["model_vs_table"] < 1e-4, runs
    assert not set(DECOYS) & set(out["modules"])
    # Nothing of the source tree: the wheel's modules, and the dependencies only.
    ours = [f for f in out["files"] if f.startswith(str(ROOT)) and "/.venv/" not in f]
    assert ours == [], ours[:5]
    assert any(Path(f).is_relative_to(purelib / "anigenre" / "models") for f in out["files"])
    assert done.stderr == ""  # installed, the API still prints nothing
