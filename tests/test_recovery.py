"""Recovery without a human: a dead worker's chunks come back by themselves, status says
when chunks are stalled and why, and a killed in-process run reads as interrupted."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from anigenre.config import load_settings
from anigenre.jobs import stages
from anigenre.jobs.queue.app import create_app
from anigenre.jobs.queue.publish import send_chunks
from anigenre.jobs.queue.sweeper import (
    RESENT_PREFIX,
    Sweeper,
    chunk_of_message,
    holdings_key,
    live_holdings,
    publish_holdings,
    unacked_chunks,
)
from anigenre.jobs.runs.index import load_plan, record_run
from anigenre.jobs.runs.lease import LEASE, read_lease
from anigenre.jobs.runs.markers import mark_queued
from anigenre.jobs.runs.plan import plan_run
from anigenre.jobs.runs.stalls import ORPHANED, REQUEUED, SUSPECT, read_stalls
from anigenre.jobs.runs.status import run_status

from tests.procs import ROOT, Worker, own_redis, run_cli
from tests.synthetic import poster_folder
from tests.test_jobs import _clean_env, _exactly_once, _submit, _worker_env, make_folder, trained

__all__ = ["trained"]  # the module-scoped fixture, shared with tests/test_jobs.py


@pytest.fixture
def broker(tmp_path):
    with own_redis(tmp_path / "redis") as db:
        yield db


def small_run(tmp_path, n_chunks: int, *, created: dt.datetime | None = None):
    folder = poster_folder(tmp_path / "in", n_chunks, 3000)
    data = tmp_path / "data"
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=1, now=created)
    record_run(data, plan)
    return data, plan


def cli_env(data, **extra) -> dict:
    return {**_clean_env(), "ANIGENRE_DATA_DIR": str(data), **extra}


# --- the Done-when drill ----------------------------------------------------------------

# Short beats and sweeps keep the drill quick; the defaults (5 s, 30 s) bound the same
# recovery at about 15 s + two sweeps.
DRILL_TIMINGS = {"ANIGENRE_WORKER_HEARTBEAT_S": "1", "ANIGENRE_SWEEP_INTERVAL_S": "2"}


def test_sigkilled_worker_chunks_come_back_without_resume(trained, tmp_path, broker):
    settings, _ = trained
    url, client = broker
    # Chunks of 12 take a tenth of a second on Keras: a kill just after a delivery lands in one.
    n_files = 120
    folder = make_folder(tmp_path / "in", n_files, with_bad=False)
    env = {**_worker_env(settings, url), **DRILL_TIMINGS}  # visibility timeout: 3600 s
    doomed = Worker("doomed", env, tmp_path / "doomed.log").start()
    replacement = waiter = None
    try:
        # Keras, the slower engine: on LiteRT the whole run can be done before the kill lands.
        run_id = _submit(settings, url, folder, tmp_path / "out", 12, "--engine", "keras")
        plan = load_plan(settings.data_dir, run_id)
        deadline = time.monotonic() + 120
        # Its heartbeat must have named a message it held: that is what keeps the sweep off
        # a live worker's chunks.
        listed, before = False, set()
        # Mid-run and mid-chunk: some parts written, and a message just delivered (a chunk
        # killed after its part is written but before its ack has nothing to recover).
        while True:
            assert time.monotonic() < deadline, doomed.log.read_text()[-2000:]
            ready = listed and run_status(plan).chunks_done >= 3
            held = set(unacked_chunks(client.hgetall("unacked")))
            if ready and held - before:
                break
            listed = listed or bool(held & (live_holdings(client) or set()))
            before = held
            time.sleep(0.005)
        doomed.kill()
        killed_at = time.monotonic()
        orphans = set(unacked_chunks(client.hgetall("unacked")).values())
        assert orphans and not plan.manifest_path.exists(), "nothing in flight: proves nothing"
        assert all(not plan.part_path(i).exists() for _, i in orphans)

        replacement = Worker("replacement", env, tmp_path / "replacement.log").start()
        waiter = subprocess.Popen(
            [sys.executable, "-m", "anigenre.jobs.cli", "jobs", "wait", run_id, "--timeout", "230"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        notes = set()
        while waiter.poll() is None:
            assert time.monotonic() - killed_at < 240, "the run did not complete by itself"
            s = run_status(plan)
            if s.state == "stalled":
                notes.add(s.note)
            time.sleep(0.2)
        took = time.monotonic() - killed_at
        out, err = waiter.communicate()
    finally:
        if waiter and waiter.poll() is None:
            waiter.kill()
        for w in (doomed, replacement):
            if w:
                w.stop()
    assert waiter.returncode == 0, err[-2000:]
    assert "[complete]" in out and took < 240
    print(f"\nkill -> run complete: {took:.1f} s ({len(orphans)} chunk(s) orphaned)")
    # make_folder adds a byte-identical copy, which has its own row
    _exactly_once(settings, run_id, n_files + 1)
    chunks = sorted(i for _, i in orphans)
    log = replacement.log.read_text()
    assert f"re-queued {len(chunks)} chunk(s) whose worker is gone {chunks}" in log
    assert log.count("whose worker is gone") == 1, "only the dead worker's chunks"
    # Followers were told why instead of a stale ETA.
    said = f"chunk {chunks[0]}'s worker stopped answering" if len(chunks) == 1 else "stopped"
    assert any(said in n for n in notes), notes
    assert f"stalled: {said}" in err


# --- the sweep, on a real Redis ---------------------------------------------------------


def test_sweep_requeues_a_dead_workers_chunk_never_a_live_ones(tmp_path, broker):
    url, client = broker
    data, plan = small_run(tmp_path, 4)
    app = create_app(load_settings(overrides={"data_dir": data, "broker_url": url}, env={}))
    beat = 0.5  # holdings live 1.5 s; grace 2 s
    sweeper = Sweeper(
        client,
        data,
        lambda p, c: send_chunks(app, p, c),
        interval_s=1,
        max_resends=3,
        heartbeat_s=beat,
    )
    live, dead = holdings_key("live@h", 1), holdings_key("dead@h", 2)

    send_chunks(app, plan)
    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # chunk 0 goes to a live worker, chunk 1 to one about to die; 2 and 3 wait queued.
        m0, m1 = (channel.basic_get("predict", no_ack=False) for _ in range(2))
        assert [chunk_of_message(m._raw)[1] for m in (m0, m1)] == [0, 1]
        held = {m0.delivery_tag}

        def sweep(still_alive=()):
            time.sleep(1.05)  # the previous sweep's lock lapses
            # Published just before the sweep: a loaded machine's sleep can outlast a 1.5 s
            # holding, and a live worker's beat is never that late (CI met it once).
            publish_holdings(client, live, held, beat)
            for key, tags in still_alive:
                publish_holdings(client, key, tags, beat)
            return sweeper.sweep()

        first = sweep(still_alive=[(dead, [m1.delivery_tag])])
        assert first.orphaned == {} and read_stalls(plan) == {}, "both workers answer"
        # The dead worker's key lapses after three beats.
        seen = []
        while not (r := sweep()).orphaned:
            seen.append(r)
            assert len(seen) < 8, "never re-queued"
        assert r.orphaned == {plan.run_id: [1]} and r.requeued == {}
        assert len(seen) >= 2, "re-queued on its first sighting"
        assert not client.hexists("unacked", m1.delivery_tag), "taken out of kombu's hands"
        assert client.zscore("unacked_index", m1.delivery_tag) is None
        assert client.hexists("unacked", m0.delivery_tag), "the live worker keeps its chunk"
        queued = [chunk_of_message(json.loads(m))[1] for m in client.lrange("predict", 0, -1)]
        assert sorted(queued) == [1, 2, 3]
        assert client.hget(RESENT_PREFIX + plan.run_id, "1") == b"1", "counts as a re-send"

        # While it waits in the queue, status says what happened instead of an ETA.
        (mark,) = read_stalls(plan).items()
        assert mark[0] == 1 and (mark[1].kind, mark[1].state) == (ORPHANED, REQUEUED)
        s = run_status(plan)
        assert s.state == "stalled" and s.eta_s is None
        assert s.note.startswith("chunk 1's worker stopped answering; re-queued at ")
        assert s.note.endswith(" by the workers' sweep")
        shown = run_cli("jobs", "status", plan.run_id, env=cli_env(data), timeout=60)
        assert "stalled: chunk 1's worker stopped answering; re-queued at" in shown.stdout
        assert "ETA" not in shown.stdout

        # A slow live worker is never robbed, however many sweeps go by.
        for _ in range(4):
            assert sweep().orphaned == {}
        assert client.hexists("unacked", m0.delivery_tag)

        # The re-queued chunk is taken by a live worker: the mark goes, the ETA is back.
        while True:
            m = channel.basic_get("predict", no_ack=False)
            held.add(m.delivery_tag)
            if chunk_of_message(m._raw)[1] == 1:
                break
        sweep()
        assert read_stalls(plan) == {} and run_status(plan).state == "queued"


def test_sweep_waits_while_a_worker_cannot_say_what_it_holds(tmp_path, broker):
    url, client = broker
    data, plan = small_run(tmp_path, 1)
    app = create_app(load_settings(overrides={"data_dir": data, "broker_url": url}, env={}))
    sweeper = Sweeper(
        client, data, lambda p, c: send_chunks(app, p, c), interval_s=1, max_resends=3,
        heartbeat_s=0.2,
    )  # fmt: skip
    send_chunks(app, plan)
    with app.connection_for_read() as conn:
        message = conn.default_channel.basic_get("predict", no_ack=False)
        for _ in range(4):
            publish_holdings(client, holdings_key("mute@h", 1), None, heartbeat_s=60)
            time.sleep(1.05)
            assert sweeper.sweep().orphaned == {}
        assert client.hexists("unacked", message.delivery_tag)


# --- status: stalled and interrupted ----------------------------------------------------


def test_a_queued_run_with_no_part_for_a_while_is_stalled(tmp_path):
    data, plan = small_run(tmp_path, 2)
    queued = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=200)
    mark_queued(plan, now=queued)
    s = run_status(plan, stall_after_s=300)
    assert s.state == "queued"
    s = run_status(plan, stall_after_s=120)
    assert s.state == "stalled" and s.eta_s is None
    clock = queued.astimezone().strftime("%H:%M:%S")
    assert s.note.startswith(f"no chunk finished since {clock}; is a predict worker running")
    shown = run_cli("jobs", "status", plan.run_id, env=cli_env(data), timeout=60)
    assert "0/2 chunks" in shown.stdout
    assert f"stalled: no chunk finished since {clock}" in shown.stdout
    assert "ETA" not in shown.stdout
    patient = cli_env(data, ANIGENRE_RUN_STALL_AFTER_S="300")
    shown = run_cli("jobs", "status", plan.run_id, env=patient, timeout=60)
    assert "stalled" not in shown.stdout
    assert "queued: no chunk taken by a worker yet" in shown.stdout


def test_a_suspected_orphan_is_told_before_it_is_requeued(tmp_path):
    _, plan = small_run(tmp_path, 3)
    mark_queued(plan)
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)).isoformat(timespec="seconds")
    (plan.run_dir / "_stalled.json").write_text(
        json.dumps({"chunks": {"2": {"kind": ORPHANED, "state": SUSPECT, "at": at}}})
    )
    s = run_status(plan)
    clock = dt.datetime.fromisoformat(at).astimezone().strftime("%H:%M:%S")
    assert s.state == "stalled"
    assert s.note == (
        f"chunk 2's worker stopped answering; the workers' sweep re-queues it after {clock}"
    )


def lease_file(plan, host: str, pid: int, age_s: float) -> None:
    beat = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age_s)
    (plan.run_dir / LEASE).write_text(
        json.dumps({"host": host, "pid": pid, "heartbeat": beat.isoformat()})
    )


def test_in_process_run_states_from_its_lease(tmp_path):
    hour_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    data, plan = small_run(tmp_path, 2, created=hour_ago)
    here = socket.gethostname()
    gone = _dead_pid()

    lease_file(plan, "elsewhere", 4242, age_s=1)
    assert run_status(plan).state == "running", "another host's fresh lease holds"
    lease_file(plan, "elsewhere", 4242, age_s=600)
    s = run_status(plan)
    assert s.state == "interrupted" and s.eta_s is None
    assert s.note == "its process (pid 4242 on elsewhere) has not renewed its lease for 600 s"
    lease_file(plan, here, gone, age_s=1)
    assert run_status(plan).note == f"its process (pid {gone} on {here}) is gone"
    lease_file(plan, here, os.getpid(), age_s=1)
    assert run_status(plan).state == "running"
    (plan.run_dir / LEASE).unlink()
    assert run_status(plan).note == "no process holds it", "planned an hour ago, never run"
    mark_queued(plan)
    assert run_status(plan).state == "queued", "a queued run is the sweeper's, not a lease's"

    _, fresh = small_run(tmp_path / "fresh", 1)
    assert run_status(fresh).state == "running", "just planned: its lease comes in a moment"


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_killed_in_process_run_is_interrupted_in_status_list_and_wait(tmp_path):
    data, plan = small_run(tmp_path, 2)
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sys, time\nfrom jobs.runs.lease import hold_lease\n"
            "with hold_lease(sys.argv[1], refresh_s=0.1):\n    time.sleep(120)\n",
            str(plan.run_dir),
        ],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while read_lease(plan.run_dir) is None:
            assert time.monotonic() < deadline and holder.poll() is None
            time.sleep(0.05)
        first = read_lease(plan.run_dir).heartbeat
        time.sleep(0.5)
        assert read_lease(plan.run_dir).heartbeat > first, "the lease is renewed"
        assert run_status(plan).state == "running"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (plan.run_dir / LEASE).exists(), "a killed process leaves its lease behind"
    s = run_status(plan)
    assert s.state == "interrupted"
    assert s.note == f"its process (pid {holder.pid} on {socket.gethostname()}) is gone"

    env = cli_env(data)
    listed = run_cli("jobs", "list", env=env, timeout=60)
    hint = f"anigenre --data-dir {data} jobs resume {plan.run_id}' finishes it"  # pasteable
    assert f"run {plan.run_id}: 0/2 chunks" in listed.stdout
    assert f"interrupted: its process (pid {holder.pid}" in listed.stdout and hint in listed.stdout
    assert "ETA" not in listed.stdout
    waited = run_cli("jobs", "wait", plan.run_id, "--timeout", "60", env=env, timeout=60)
    assert waited.returncode == 1
    assert f"run {plan.run_id} was interrupted: its process" in waited.stderr
    assert hint in waited.stderr


def test_in_process_predict_holds_its_lease_while_it_runs(trained, tmp_path):
    settings, _ = trained
    folder = make_folder(tmp_path / "in", 4, with_bad=False)
    plan = stages.plan_prediction(
        settings, [folder], model_id="latest", out_dir=tmp_path / "out", chunk_size=2
    )
    leases = []
    stages.predict_in_process(settings, plan, lambda r: leases.append(read_lease(plan.run_dir)))
    assert len(leases) == len(plan.chunks)
    assert all(lease and lease.pid == os.getpid() for lease in leases)
    assert read_lease(plan.run_dir) is None, "released when done"
    assert run_status(load_plan(settings.data_dir, plan.run_id)).state == "complete"
