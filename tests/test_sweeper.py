"""The sweeper re-queues chunks whose broker message was lost, on a real Redis."""

from __future__ import annotations

import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from anigenre.config import load_settings
from anigenre.jobs.queue.app import create_app
from anigenre.jobs.queue.publish import send_chunks
from anigenre.jobs.queue.sweeper import (
    Sweeper,
    chunk_of_message,
    confirm,
    holdings_key,
    in_flight,
    publish_holdings,
)
from anigenre.jobs.runs.index import load_plan, record_run
from anigenre.jobs.runs.parts import missing_chunks
from anigenre.jobs.runs.plan import plan_run
from anigenre.jobs.runs.status import run_status

from tests.procs import own_redis, run_cli
from tests.synthetic import poster_folder


@pytest.fixture
def broker(tmp_path):
    with own_redis(tmp_path / "redis") as db:
        yield db


def make_run(tmp_path, n_chunks: int):
    folder = poster_folder(tmp_path / "in", n_chunks, 2000)
    data = tmp_path / "data"
    plan = plan_run([folder], model_id="m", out_dir=tmp_path / "out", chunk_size=1)
    record_run(data, plan)
    return data, plan


def queued_chunks(client) -> list[int]:
    return sorted(chunk_of_message(json.loads(raw))[1] for raw in client.lrange("predict", 0, -1))


def test_confirm_needs_two_sightings():
    lost, suspects = confirm(set(), {("r", 1), ("r", 2)})
    assert lost == set() and suspects == {("r", 1), ("r", 2)}
    lost, suspects = confirm(suspects, {("r", 2), ("r", 3)})
    assert lost == {("r", 2)} and suspects == {("r", 3)}


def test_sweeper_requeues_only_lost_chunks_and_gives_up_on_failing_ones(tmp_path, broker):
    url, client = broker
    data, plan = make_run(tmp_path, 4)
    settings = load_settings(overrides={"data_dir": data, "broker_url": url}, env={})
    app = create_app(settings)
    sent: list[list[int]] = []

    def requeue(p, chunks):
        sent.append(chunks)
        send_chunks(app, p, chunks)

    sweeper = Sweeper(client, data, requeue, interval_s=1, max_resends=1, heartbeat_s=60)

    def sweep():
        time.sleep(1.05)  # the previous sweep's lock lapses
        return sweeper.sweep()

    assert sweeper.sweep().requeued == {}, "a run never queued (in-process) is not watched"
    send_chunks(app, plan)
    assert queued_chunks(client) == [0, 1, 2, 3]
    assert sweep().requeued == {} and sweeper.sweep() is None, "backlog, then the lock"

    with app.connection_for_read() as conn:
        channel = conn.default_channel
        # A worker takes every chunk: 0 and 1 are written, 2 is held unacknowledged (its
        # worker could be mid-predict), 3 is popped and lost before kombu records it.
        held = [channel.basic_get("predict", no_ack=False) for _ in range(3)]
        assert [chunk_of_message(m._raw)[1] for m in held] == [0, 1, 2]  # FIFO
        tags = [m.delivery_tag for m in held]
        publish_holdings(client, holdings_key("w@host", 1), tags, heartbeat_s=60)  # alive
        assert client.rpop("predict") is not None and client.llen("predict") == 0
        plan.parts_dir.mkdir(parents=True, exist_ok=True)
        for i in (0, 1):
            pq.write_table(pa.table({"status": ["ok"]}), plan.part_path(i))
        assert in_flight(client.hvals("unacked")) == {(plan.run_id, i) for i in (0, 1, 2)}
        assert missing_chunks(plan) == [2, 3]
        lost_index = 3

        assert sweep().requeued == {}, "first sighting: could be mid-pop"
        assert sweep().requeued == {plan.run_id: [lost_index]}
        assert queued_chunks(client) == [lost_index], "the held chunk is not sent again"

        client.delete("predict")  # lost again, and again: its task must be failing
        assert sweep().requeued == {}
        outcome = sweep()
        assert outcome.failed == {plan.run_id: [lost_index]} and not outcome.requeued
        status = run_status(load_plan(data, plan.run_id))
        assert status.failed and f"[{lost_index}]" in status.failed
        assert sweep().requeued == {} and sent == [[lost_index]]

    env = {"ANIGENRE_DATA_DIR": str(data), "PATH": os.environ["PATH"]}
    waited = run_cli("jobs", "wait", plan.run_id, env=env, timeout=60)
    assert waited.returncode == 1
    assert f"run {plan.run_id} failed: chunk(s) [3]" in waited.stderr
    assert f"'anigenre --data-dir {data} jobs resume {plan.run_id}'" in waited.stderr  # pasteable
    shown = run_cli("jobs", "status", plan.run_id, env=env, timeout=60)
    assert "2/4 chunks" in shown.stdout and "[failed: chunk(s) [3]" in shown.stdout
