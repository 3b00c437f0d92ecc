"""``anigenre web`` in a real browser: Debian's Chromium driven by Playwright.

Playwright's own browser download cannot work offline, so the test launches
/usr/bin/chromium (``apt-get install -y chromium``; .ci/run installs it). It fails, never
skips, without it. Screenshots go to the test's temporary folder; with
``WEB_SCREENSHOTS=DIR`` they are also written, palette-reduced, to DIR (build products:
none is committed).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from anigenre.core.genres import GENRES
from anigenre.jobs import stages
from anigenre.jobs.runs.index import load_plan
from PIL import Image

from tests.procs import ROOT, free_port, own_redis, run_cli
from tests.synthetic import poster_folder, poster_png
from tests.test_jobs import _clean_env, trained  # noqa: F401 - fixture
from tests.test_web import shared_inbox

CHROMIUM = Path("/usr/bin/chromium")
WIDE = {"width": 1400, "height": 900}
NARROW = {"width": 420, "height": 900}
START_S = 120  # Streamlit start on a busy two-core machine
UPLOAD_S = 60  # the bound: genres within a minute of the upload
# Nothing still drawing: no skeletons, no script running, every image loaded.
SETTLED = """() => !document.querySelector('[data-testid=stSkeleton]')
  && !document.querySelector('[data-testid=stStatusWidgetRunningIcon]')
  && [...document.images].every(i => i.complete)"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: the browser test needs Debian's chromium "
            "(apt-get install -y chromium; .ci/run installs it)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM))
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def server(trained, shared_dir, tmp_path_factory):  # noqa: F811 - fixture
    """``anigenre web --port P --model latest --broker URL`` (our own Redis) over a data
    dir with two runs: the demo's (real posters with labels, a report) and a later one."""
    settings, _ = trained
    work = tmp_path_factory.mktemp("web-browser")
    demo = stages.plan_prediction(
        settings,
        [shared_inbox(shared_dir, work / "inbox", n=12) / "images"],
        model_id="latest",
        out_dir=None,
        chunk_size=6,
    )
    stages.predict_in_process(settings, demo)
    stages.report_run(settings, demo.run_id)
    (work / "later").mkdir()
    (work / "later" / "a.png").write_bytes(poster_png(9))
    later = stages.plan_prediction(settings, [work / "later"], model_id="latest", out_dir=None)
    stages.predict_in_process(settings, later)

    poster_folder(work / "queue", 5, 500, "q{i}")
    with own_redis(work / "redis") as (broker, _):
        yield from _serve(settings, work, broker, demo.run_id, later.run_id)


def _serve(settings, work: Path, broker: str, *run_ids: str, **extra_env: str):
    port = free_port()
    env = {**_clean_env(), "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra_env}
    log = open(work / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "anigenre.jobs.cli", "--data-dir", str(settings.data_dir), "web"]
        + ["--port", str(port), "--model", "latest", "--broker", broker],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    (work / "server.pid").write_text(str(proc.pid))  # the server itself: the CLI execs it
    try:
        _wait_healthy(url, proc, work / "server.log")
        yield settings, url, work, *run_ids
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _wait_healthy(url: str, proc, log: Path) -> None:
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"anigenre web exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:  # noqa: S310
                if r.read() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"anigenre web not serving after {START_S} s: {log.read_text()[-2000:]}")


def _settle(page) -> None:
    page.wait_for_timeout(300)  # let a rerun that was just triggered begin
    page.wait_for_function(SETTLED, timeout=UPLOAD_S * 1000)
    page.wait_for_timeout(200)


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=path)
    keep = os.environ.get("WEB_SCREENSHOTS")
    if keep:
        # Three-quarter size and a 64-colour palette: tens of kilobytes for the README.
        with Image.open(path) as img:
            size = (img.width * 3 // 4, img.height * 3 // 4)
            small = img.convert("RGB").resize(size, Image.Resampling.LANCZOS)
            small = small.quantize(64, method=Image.Quantize.MEDIANCUT)
            buf = io.BytesIO()
            small.save(buf, format="PNG", optimize=True)
        Path(keep).mkdir(parents=True, exist_ok=True)
        (Path(keep) / f"{name}.png").write_bytes(buf.getvalue())
    return path


def _nav(page, title: str) -> None:
    page.get_by_test_id("stTopNavLink").filter(has_text=title).click()


def _overflows(page) -> bool:
    return page.evaluate(
        """() => { const m = document.querySelector('[data-testid=stMain]');
        return document.documentElement.scrollWidth > window.innerWidth + 1
            || (m && m.scrollWidth > m.clientWidth + 1); }"""
    )


def test_the_page_in_chromium(browser, server, shared_dir, tmp_path):
    settings, url, work, demo_run, later_run = server
    poster = sorted((shared_dir / "data" / "posters" / "images").glob("*.jpg"))[20]
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    uploader = page.get_by_test_id("stFileUploader").locator("input[type=file]")
    uploader.wait_for(state="attached", timeout=START_S * 1000)
    _settle(page)  # the model loads (once) with the first view of the page

    # A real poster: its top genres, read from the page, within a minute.
    start = time.perf_counter()
    uploader.set_input_files(str(poster))
    top = page.get_by_text(f"{poster.name}: top genres")
    top.wait_for(timeout=UPLOAD_S * 1000)
    seconds = time.perf_counter() - start
    names = top.inner_text().split("top genres", 1)[1].strip().split(", ")
    assert len(names) >= 3 and set(names) <= set(GENRES), names
    page.get_by_text("Passes the model's thresholds:").wait_for()
    _settle(page)
    print(f"\nupload to genres in the browser: {seconds:.2f} s")
    _shot(page, tmp_path, "web-try")

    # Not an image: one clear line, and the poster's genres stay on the page.
    uploader.set_input_files(
        {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a poster"}
    )  # added to the uploaded files, as a second drop would be
    message = page.get_by_text("notes.txt is not an image")
    message.wait_for(timeout=UPLOAD_S * 1000)
    assert "upload a JPEG, PNG, WebP, GIF or BMP poster" in message.inner_text()
    assert page.get_by_text("Traceback").count() == 0
    assert top.is_visible()

    # Narrow window: the same page, nothing wider than the screen.
    page.set_viewport_size(NARROW)
    _settle(page)
    assert not _overflows(page)
    _shot(page, tmp_path, "web-try-narrow")
    page.set_viewport_size(WIDE)

    # Runs: both listed, newest open first; open the demo's run from the list.
    _nav(page, "Runs")
    page.get_by_text("2 run(s), newest first").wait_for(timeout=UPLOAD_S * 1000)
    page.get_by_role("heading", name=f"Run {later_run}").wait_for()
    page.get_by_test_id("stSelectbox").filter(has_text="Open a run").click()
    page.get_by_role("option", name=demo_run).click()
    page.get_by_role("heading", name=f"Run {demo_run}").wait_for(timeout=UPLOAD_S * 1000)
    page.get_by_text("complete: 13/13 rows (12 ok, 1 error)").wait_for()
    _settle(page)
    assert f"run={demo_run}" in page.url  # the open run is in the address, to share
    _shot(page, tmp_path, "web-runs")
    page.get_by_role("tab", name="Gallery").click()
    page.get_by_text("true:").first.wait_for()  # the inbox's labels.csv was found
    _settle(page)
    page.get_by_role("tab", name="Gallery").scroll_into_view_if_needed()
    page.mouse.wheel(0, 700)
    _settle(page)
    _shot(page, tmp_path, "web-runs-gallery")

    _nav(page, "Models")
    page.get_by_text("newest first").wait_for(timeout=UPLOAD_S * 1000)
    label = page.get_by_test_id("stExpander").locator("summary").first.inner_text()
    assert label.endswith("latest · served"), label
    _settle(page)
    _shot(page, tmp_path, "web-models")

    # Queue: a folder goes to the broker; the page follows the run as its parts appear.
    _nav(page, "Queue")
    page.get_by_label("Folder of posters (on this machine, or s3://bucket/prefix)").fill(
        str(work / "queue")
    )
    page.get_by_role("button", name="Queue for prediction").click()
    queued = page.get_by_text("5 file(s) in 1 chunk(s) queued on 'predict'")
    queued.wait_for(timeout=UPLOAD_S * 1000)
    run_id = queued.inner_text().split(":")[0].removeprefix("run ")
    page.get_by_text(f"run {run_id}: queued: 0/5 rows").wait_for(timeout=UPLOAD_S * 1000)
    stages.predict_in_process(settings, load_plan(settings.data_dir, run_id))  # a worker's job
    page.get_by_text(f"run {run_id}: complete: 5/5 rows (5 ok, 0 error)").wait_for(
        timeout=UPLOAD_S * 1000
    )
    _settle(page)
    _shot(page, tmp_path, "web-queue")
    page.close()
    shots = sorted(p.name for p in tmp_path.glob("*.png"))
    assert shots == [
        "web-models.png",
        "web-queue.png",
        "web-runs-gallery.png",
        "web-runs.png",
        "web-try-narrow.png",
        "web-try.png",
    ]


# -- Runs that stopped ------------------------------------------------------------------

# The page's ANIGENRE_RUN_STALL_AFTER_S: a queued run nobody takes is stalled after it. Long
# enough that the page, opened after the submit on a busy two-core machine, sees it queued.
STALL_S = 45


def _killed_predict(data_dir: Path, folder: Path, log: Path) -> tuple[int, int]:
    """``anigenre predict FOLDER --chunk-size 2``, SIGKILLed once its first part is
    written: what a crash or the OOM killer leaves. Its pid and the parts it wrote."""
    env = {**_clean_env(), "ANIGENRE_DATA_DIR": str(data_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "anigenre.jobs.cli", "predict", str(folder)]
            + ["--chunk-size", "2"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + START_S
        while not any(data_dir.rglob("part-*.parquet")):
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                pytest.fail(f"predict wrote no part: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()  # reaped: a zombie would still look alive to the lease check
    return proc.pid, len(list(data_dir.rglob("part-*.parquet")))


def test_a_killed_run_reads_interrupted_and_an_untaken_one_queued_then_stalled(
    browser,
    trained,  # noqa: F811 - fixture
    tmp_path,
):
    settings, _ = trained
    data_dir = tmp_path / "data"  # its own: the runs listed are this test's
    shutil.copytree(settings.data_dir / "models", data_dir / "models")
    settings = settings.model_copy(update={"data_dir": data_dir})
    many = poster_folder(tmp_path / "many", 120, 7000, "k{i}")
    pid, parts = _killed_predict(data_dir, many, tmp_path / "predict.log")
    assert 0 < parts < 60, f"{parts} of 60 parts: the run was not stopped mid-way"
    killed_run = next(data_dir.glob("runs/*.json")).stem
    gone = f"its process (pid {pid} on {socket.gethostname()}) is gone"
    cli = {**_clean_env(), "ANIGENRE_DATA_DIR": str(data_dir)}
    listed = run_cli("jobs", "list", env=cli, timeout=60)
    assert f"interrupted: {gone}" in listed.stdout, listed.stdout + listed.stderr

    poster_folder(tmp_path / "untaken", 3, 7500, "u{i}")
    with own_redis(tmp_path / "redis") as (broker, client):
        served = _serve(settings, tmp_path, broker, ANIGENRE_RUN_STALL_AFTER_S=str(STALL_S))
        _, url, *_ = next(served)
        try:
            cli["ANIGENRE_BROKER_URL"] = broker  # and no worker on it
            sent = run_cli("jobs", "submit", "predict", str(tmp_path / "untaken"), env=cli)
            assert sent.returncode == 0, sent.stderr
            queued_run = sent.stdout.split()[0]
            task = run_cli("jobs", "submit", "train", env=cli)
            assert task.returncode == 0, task.stderr
            task_id = task.stdout.split()[0]
            _stopped_runs_in_chromium(browser, url, tmp_path, killed_run, queued_run, gone)
            _tasks_in_chromium(browser, url, tmp_path, task_id)
        finally:
            served.close()


def _stopped_runs_in_chromium(browser, url, tmp_path, killed_run, queued_run, gone) -> None:
    page = browser.new_page(viewport=WIDE)
    page.goto(url)  # and to Runs by its link, as a user goes (the app's layout and menu)
    _nav(page, "Runs")
    page.get_by_text("2 run(s), newest first (updating live)").wait_for(timeout=START_S * 1000)
    # The newest, opened first: queued on the broker, no worker takes it...
    page.get_by_role("heading", name=f"Run {queued_run}").wait_for(timeout=UPLOAD_S * 1000)
    page.get_by_text("queued: 0/3 rows (0 ok, 0 error), 0/1 chunks").wait_for(
        timeout=STALL_S * 1000
    )
    grid = page.get_by_test_id("stDataFrame").first
    # ...so after STALL_S it is stalled, in the list and under the open run, with why.
    page.get_by_text("stalled: 0/3 rows").wait_for(timeout=(STALL_S + 30) * 1000)
    stalled = page.get_by_text(re.compile("^Stalled: no chunk finished since"))
    assert "is a predict worker running" in stalled.inner_text()
    _settle(page)
    # The grid draws on a canvas; the text of its cells in view is in the table it keeps
    # for screen readers (hidden, as a canvas's content is).
    cells = grid.get_by_role("gridcell", include_hidden=True)
    cells.filter(has_text=re.compile("^stalled$")).wait_for(
        state="attached", timeout=UPLOAD_S * 1000
    )
    # The killed run: interrupted, with the note `anigenre jobs status` gives; never running.
    cells.filter(has_text=gone).wait_for(state="attached")
    assert cells.filter(has_text=re.compile("^interrupted$")).count() == 1
    assert cells.filter(has_text=re.compile("^running$")).count() == 0
    page.get_by_test_id("stSelectbox").filter(has_text="Open a run").click()
    page.get_by_role("option", name=killed_run).click()
    page.get_by_role("heading", name=f"Run {killed_run}").wait_for(timeout=UPLOAD_S * 1000)
    page.get_by_text(re.compile(r"^interrupted: \d+/120 rows")).wait_for()
    warning = page.get_by_text(re.compile("^Interrupted: ")).inner_text()
    assert gone in warning and f"jobs resume {killed_run}" in warning, warning
    assert page.get_by_text(re.compile("^running: ")).count() == 0
    _settle(page)
    _shot(page, tmp_path, "web-runs-stopped")
    page.close()


def _tasks_in_chromium(browser, url, tmp_path, task_id) -> None:
    page = browser.new_page(viewport=WIDE)
    page.goto(url)
    _nav(page, "Queue")
    page.get_by_role("heading", name="Tasks").wait_for(timeout=START_S * 1000)
    cells = page.get_by_test_id("stDataFrame").get_by_role("gridcell", include_hidden=True)
    cells.filter(has_text=task_id).wait_for(state="attached", timeout=UPLOAD_S * 1000)
    for text in ("train", "PENDING"):
        assert cells.filter(has_text=text).count() >= 1, text
    _settle(page)
    _shot(page, tmp_path, "web-queue-tasks")
    page.close()
