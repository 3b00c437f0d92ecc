"""The HTTP API as a client meets it: ``anigenre serve`` started as a user starts it, on a
free loopback port, and called over HTTP with ``requests``. Its runs go through a real
worker and Redis, or a thread of the server without a broker, into local folders and a
bucket on moto's S3 server; their tables are read back from Parquet."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import requests
from anigenre.core.storage import open_store
from anigenre.jobs.service import runs, views
from anigenre.jobs.service.background import Background

import anigenre
from tests.procs import ROOT, Worker, free_port, own_redis, run_cli
from tests.synthetic import poster_folder, poster_png, trained_tiny_model

TOKEN = "t0ken-for-tests-" + "x" * 16
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BODY_LIMIT = 300_000
STATES = {"queued", "running", "stalled", "interrupted", "complete", "failed"}


class Server:
    """``anigenre serve`` in its own process; its output in ``log``."""

    def __init__(self, env: dict, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "anigenre.jobs.cli", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"anigenre serve did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(self.url + path, headers=AUTH, timeout=60, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, headers=AUTH, timeout=120, **kwargs)

    def wait(self, run_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            view = self.get(f"/v1/runs/{run_id}").json()
            assert view["state"] in STATES, view
            if view["state"] in ("complete", "failed", "interrupted"):
                return view
            assert time.monotonic() < deadline, view
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def _env(data_dir: Path, **extra: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ANIGENRE_", "AWS_"))}
    return {**clean, "ANIGENRE_DATA_DIR": str(data_dir), **extra}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_dir):
    return trained_tiny_model(tmp_path_factory.mktemp("http-data"), shared_dir, epochs=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """The one folder the main server's runs may read and write (besides its bucket)."""
    return tmp_path_factory.mktemp("http-root")


@pytest.fixture(scope="module")
def bucket(s3):
    return s3.new_bucket()


@pytest.fixture(scope="module")
def server(trained, root, bucket, s3, tmp_path_factory):
    settings, _ = trained
    env = _env(
        settings.data_dir,
        ANIGENRE_API_TOKEN=TOKEN,
        ANIGENRE_API_ROOTS=f"{root},{bucket.uri}",
        ANIGENRE_API_MAX_BODY_BYTES=str(BODY_LIMIT),
        **s3.env,
    )
    started = Server(env, tmp_path_factory.mktemp("http-log") / "serve.log")
    yield started
    started.stop()
    # No secret in a log line: the token was sent with every request, right and wrong.
    assert TOKEN not in started.log.read_text()


def _files(*named: tuple[str, bytes]) -> list:
    return [("file", (name, data, "application/octet-stream")) for name, data in named]


# -- the contract ---------------------------------------------------------------------------


def test_healthz_answers_without_a_token_and_every_other_route_needs_it(server, trained):
    health = requests.get(f"{server.url}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "model": trained[1]}
    routes = [
        ("GET", "/v1/models"), ("GET", "/metrics"), ("GET", "/docs"), ("GET", "/openapi.json"),
        ("GET", "/v1/runs"), ("GET", "/v1/runs/x"), ("GET", "/v1/runs/x/predictions"),
        ("GET", "/v1/runs/x/report"), ("POST", "/v1/predict"), ("POST", "/v1/runs"),
        ("GET", "/no/such/route"),
    ]  # fmt: skip
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            answer = requests.request(method, server.url + path, headers=headers, timeout=10)
            assert answer.status_code == 401, (method, path, headers)
            assert answer.headers["www-authenticate"] == "Bearer"
    assert server.get("/docs").status_code == 200
    paths = server.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/runs", "/v1/runs/{run_id}/predictions", "/healthz"} <= set(paths)


def test_predict_gives_the_python_apis_genres_and_a_bad_image_is_an_error_result(server, trained):
    settings, model_id = trained
    good, other = poster_png(11), poster_png(12, genres=("Comedy",))
    answer = server.post(
        "/v1/predict",
        files=_files(("a.png", good), ("page.jpg", b"<html>404</html>"), ("b.png", other)),
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == model_id
    assert [r["file"] for r in body["results"]] == ["a.png", "page.jpg", "b.png"]
    assert [r["status"] for r in body["results"]] == ["ok", "error", "ok"]
    bad = body["results"][1]
    assert bad["error"].startswith("not-an-image") and bad["probabilities"] == {}
    expected = anigenre.load_model(model_id, settings=settings).predict([good, other])
    for result, (_, row) in zip(body["results"][::2], expected.iterrows(), strict=True):
        assert result["predicted"] == list(row["predicted"])
        assert result["top_genres"] == list(row["top_genres"])
        assert abs(result["probabilities"]["Action"] - row["p_action"]) < 1e-4
        assert abs(result["probabilities"]["Slice of Life"] - row["p_slice_of_life"]) < 1e-4
    assert server.post("/v1/predict").status_code == 422  # no file field
    one = server.post("/v1/predict?top_k=2", files=_files(("a.png", good)))
    assert len(one.json()["results"][0]["top_genres"]) == 2


def test_a_body_over_the_limit_is_413_and_the_server_goes_on(server):
    big = server.post("/v1/predict", files=_files(("huge.png", b"\0" * (BODY_LIMIT + 1))))
    assert big.status_code == 413
    # Declared or chunked (no Content-Length), the answer is the JSON of every error.
    assert str(BODY_LIMIT) in big.json()["detail"], big.text
    body, kind = requests.models.RequestEncodingMixin._encode_files(
        _files(("huge.png", b"\0" * (BODY_LIMIT + 1))), {}
    )
    chunks = (body[i : i + 65536] for i in range(0, len(body), 65536))
    chunked = requests.post(
        f"{server.url}/v1/predict", data=chunks, headers={**AUTH, "content-type": kind}, timeout=60
    )
    assert chunked.status_code == 413 and str(BODY_LIMIT) in chunked.json()["detail"]
    assert server.post("/v1/predict", files=_files(("a.png", poster_png(3)))).status_code == 200


def test_200_predict_requests_8_at_a_time_all_succeed(server):
    posters = [poster_png(1000 + i) for i in range(20)]

    def one(i: int) -> tuple[int, str]:
        answer = server.post("/v1/predict", files=_files((f"p{i}.png", posters[i % 20])))
        return answer.status_code, answer.json()["results"][0]["status"]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(one, range(200)))
    assert answers == [(200, "ok")] * 200
    metrics = server.get("/metrics").text
    assert 'anigenre_http_requests_total{method="POST",route="/v1/predict",status="200"}' in metrics
    count = _sample(metrics, 'anigenre_predictions_total{status="ok"}')
    assert count >= 200


def _sample(text: str, series: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(series + " "))
    return float(line.split()[-1])


def test_models_lists_ids_aliases_and_latest(server, trained):
    settings, model_id = trained
    body = server.get("/v1/models").json()
    assert body["latest"] == body["served"] == model_id
    assert [m["model_id"] for m in body["models"]] == [model_id]


# -- runs -------------------------------------------------------------------------------------


def test_a_run_without_a_broker_is_predicted_by_the_server(server, root, trained):
    folder = poster_folder(root / "in", 12, seed=500)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 cut")
    out = root / "out"
    queued = server.post("/v1/runs", json={"inputs": [str(folder)], "out": str(out)})
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["run_id"]
    assert queued.json()["files"] == 13
    final = server.wait(run_id)
    assert (final["state"], final["done"], final["total"], final["ok"]) == ("complete", 13, 13, 12)

    table = pd.read_parquet(io.BytesIO(server.get(f"/v1/runs/{run_id}/predictions").content))
    assert len(table) == 13 and set(table["run_id"]) == {run_id}
    assert (table["status"] == "ok").sum() == 12
    answer = server.get(f"/v1/runs/{run_id}/predictions?format=json")
    rows = answer.json()["rows"]
    assert [r["path"] for r in rows] == table["path"].tolist()
    # What the CLI reads is what the API wrote: one row per poster.
    assert len(pd.read_parquet(out / "predictions")) == 13

    report = server.get(f"/v1/runs/{run_id}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert run_id in report.text and (out / "reports" / run_id / "report.html").exists()

    listed = server.get("/v1/runs?limit=5").json()["runs"]
    assert listed[0]["run_id"] == run_id and listed[0]["out_dir"] == str(out)
    # Only the poster without an ok row is predicted again; then nothing is new.
    again = server.post("/v1/runs", json={"inputs": [str(folder)], "out": str(out)})
    assert (again.json()["files"], again.json()["already_predicted"]) == (1, 12)
    assert server.wait(again.json()["run_id"])["state"] == "complete"
    good = server.post("/v1/runs", json={"inputs": [str(folder / "p0.png")], "out": str(out)})
    assert good.status_code == 200 and good.json()["run_id"] is None, good.text
    metrics = server.get("/metrics").text
    assert _sample(metrics, 'anigenre_runs{state="complete"}') >= 1
    assert _sample(metrics, "anigenre_runs_submitted_total") >= 1
    shown = run_cli("jobs", "status", run_id, "--json", env=_env(trained[0].data_dir))
    cli = json.loads(shown.stdout)
    # A client of both reads the same fields under the same names.
    assert cli.items() <= server.get(f"/v1/runs/{run_id}").json().items(), shown.stdout
    assert cli["state"] == "complete"


def test_paths_outside_the_roots_are_403_and_a_relative_one_400(server, root, tmp_path):
    inside = poster_folder(root / "in-403", 1, seed=7)
    outside = poster_folder(tmp_path / "elsewhere", 1, seed=8)
    sneaky = f"{root}/../{outside.parent.name}/{outside.name}"
    for body in (
        {"inputs": [str(outside)]},
        {"inputs": [sneaky]},
        {"inputs": [str(inside)], "out": str(tmp_path / "out")},
        {"inputs": [str(inside)], "out": "s3://some-other-bucket/out"},
    ):
        answer = server.post("/v1/runs", json=body)
        assert answer.status_code == 403, (body, answer.text)
    (root / "escape").symlink_to(outside)
    assert server.post("/v1/runs", json={"inputs": [str(root / "escape")]}).status_code == 403
    assert server.post("/v1/runs", json={"inputs": ["in"]}).status_code == 400
    assert server.post("/v1/runs", json={"inputs": ["gs://b/x"]}).status_code == 400
    assert server.post("/v1/runs", json={"inputs": []}).status_code == 422
    nope = server.post("/v1/runs", json={"inputs": [str(inside)], "model": "no-such-model"})
    assert nope.status_code == 400 and "no-such-model" in nope.json()["detail"]
    assert not (tmp_path / "out").exists()


def test_an_unknown_run_is_404(server):
    for path in ("/v1/runs/nope", "/v1/runs/nope/predictions", "/v1/runs/nope/report"):
        assert server.get(path).status_code == 404, path


def test_a_run_over_s3(server, bucket, s3):
    for i in range(5):
        bucket.write_bytes(f"posters/p{i}.png", poster_png(800 + i))
    body = {"inputs": [f"{bucket.uri}/posters"], "out": f"{bucket.uri}/results"}
    queued = server.post("/v1/runs", json=body)
    assert queued.status_code == 202, queued.text
    run_id = queued.json()["run_id"]
    assert server.wait(run_id)["state"] == "complete"
    table = pd.read_parquet(io.BytesIO(server.get(f"/v1/runs/{run_id}/predictions").content))
    assert table["status"].tolist() == ["ok"] * 5
    assert all(p.startswith(f"{bucket.uri}/posters/") for p in table["path"])
    store = open_store(f"{bucket.uri}/results", s3.options)
    assert sum(f.path.endswith(".parquet") for f in store.list_files("predictions")) == 1


# -- a real worker and Redis --------------------------------------------------------------------


def test_161_posters_queued_on_a_real_worker_come_back_as_parquet(trained, tmp_path):
    settings, _ = trained
    folder = poster_folder(tmp_path / "in", 161, seed=2000)
    with own_redis(tmp_path / "redis") as (url, _client):
        env = _env(settings.data_dir, ANIGENRE_API_TOKEN=TOKEN, ANIGENRE_BROKER_URL=url)
        api = Server(env, tmp_path / "serve.log")
        worker = None
        try:
            queued = api.post(
                "/v1/runs", json={"inputs": [str(folder)], "out": str(tmp_path / "o")}
            )
            assert queued.status_code == 202, queued.text
            run_id = queued.json()["run_id"]
            assert api.get(f"/v1/runs/{run_id}").json()["state"] in ("queued", "stalled")
            # Not complete: no table that could be taken for the whole run, unless asked.
            early = api.get(f"/v1/runs/{run_id}/predictions")
            assert early.status_code == 409 and "partial=true" in early.json()["detail"]
            so_far = api.get(f"/v1/runs/{run_id}/predictions?partial=true")
            assert so_far.status_code == 200 and so_far.headers["x-run-state"] != "complete"
            assert len(pd.read_parquet(io.BytesIO(so_far.content))) == 0
            worker = Worker("api", env, tmp_path / "worker.log").start()
            final = api.wait(run_id)
            assert (final["state"], final["ok"], final["total"]) == ("complete", 161, 161)
            answer = api.get(f"/v1/runs/{run_id}/predictions")
            assert answer.headers["content-type"] == "application/vnd.apache.parquet"
            table = pd.read_parquet(io.BytesIO(answer.content))
            assert table["status"].tolist() == ["ok"] * 161
            assert table["path"].nunique() == 161
        finally:
            if worker:
                worker.stop()
            api.stop()
        assert TOKEN not in (tmp_path / "serve.log").read_text()


# -- starting and limits -----------------------------------------------------------------------


def test_without_a_token_it_refuses_any_bind_but_loopback(trained):
    env = _env(trained[0].data_dir)
    refused = run_cli("serve", "--host", "0.0.0.0", "--port", str(free_port()), env=env)
    assert refused.returncode == 2
    assert "ANIGENRE_API_TOKEN" in refused.stderr and "127.0.0.1" in refused.stderr
    assert refused.stderr.count("\n") == 1, refused.stderr


def test_a_request_past_the_time_limit_is_504(trained, tmp_path):
    env = _env(trained[0].data_dir, ANIGENRE_API_REQUEST_TIMEOUT_S="0.05")
    api = Server(env, tmp_path / "serve.log")  # no token: loopback only, no header needed
    try:
        many = _files(*((f"p{i}.png", poster_png(3000 + i)) for i in range(150)))
        assert requests.post(f"{api.url}/v1/predict", files=many, timeout=60).status_code == 504
        assert requests.get(f"{api.url}/healthz", timeout=10).status_code == 200
    finally:
        api.stop()


# -- runs in the server's threads -----------------------------------------------------------


def test_runs_past_the_bound_wait_their_turn_queued_and_give_up_when_the_server_stops(
    trained, tmp_path
):
    """In-process runs predict a few at a time (each loads a predictor and takes the
    CPUs); one past that waits holding its run, reads queued here and running (not
    interrupted) to ``jobs status``, and gives up resumable when the server stops."""
    settings, _ = trained
    background = Background(settings, at_once=1)
    background._slots.acquire()  # a run ahead of them all, still going
    queued = [
        runs.submit(settings, [poster_folder(tmp_path / f"in{i}", 3, seed=70 + i)], background)
        for i in range(2)
    ]
    first, second = (q.run_id for q in queued)
    assert background.waiting(first) and background.waiting(second)
    view = views.run_view(runs.status(settings, first), waiting_for=1)
    assert (view["state"], view["done"]) == ("queued", 0) and "1 run(s)" in view["note"]
    assert runs.status(settings, first).state == "running"  # its lease is held, renewed

    background._slots.release()  # the one ahead ends: they go one after the other
    background.close()  # ... and then the server stops: whoever still waits gives up
    background.join(timeout=60)
    states = sorted(runs.status(settings, r).state for r in (first, second))
    assert states in (["complete", "complete"], ["complete", "interrupted"]), states
    for run_id in (first, second):
        if runs.status(settings, run_id).state == "interrupted":
            resumed = run_cli("jobs", "resume", run_id, env=_env(settings.data_dir))
            assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert runs.status(settings, run_id).state == "complete"


def test_sigterm_lets_the_runs_predicted_here_finish(trained, tmp_path):
    """uvicorn raises SIGTERM again once it has stopped serving; with the default handler
    that ended the process in the middle of its runs."""
    settings, _ = trained
    api = Server(_env(settings.data_dir), tmp_path / "serve.log")
    try:
        folder = poster_folder(tmp_path / "in", 300, seed=4000)
        body = {"inputs": [str(folder)], "out": str(tmp_path / "out")}
        run_id = requests.post(f"{api.url}/v1/runs", json=body, timeout=60).json()["run_id"]
    finally:
        api.stop()
    assert api.proc.returncode == 0, api.log.read_text()[-2000:]
    assert runs.status(settings, run_id).state == "complete", api.log.read_text()[-2000:]
