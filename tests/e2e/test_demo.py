"""The main job end to end, as ``make demo`` runs it, on small data.

Sample data -> catalog -> POST /events on the local gateway (a real child process) ->
Kinesis on the local AWS -> the poller and the real ingest handler -> S3 and history ->
the retraining pipeline -> the gateway serving the promoted version -> recommendations.
Then stopping ends the gateway and the poller it started and leaves the session's moto
server, which it did not start, running.
"""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from learnrec.events.archive import read_events
from learnrec.stages import ResourceNames
from learnrec_dev.local.aws import LocalAws, is_listening
from learnrec_dev.local.demo import DemoOptions, run_demo, stop_demo


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_demo_runs_the_main_job_end_to_end(local_aws_server: LocalAws, tmp_path: Path) -> None:
    stage = f"t{uuid.uuid4().hex[:10]}"
    options = DemoOptions(
        out=tmp_path / "demo",
        users=150,
        items=60,
        events=3000,
        seed=5,
        port=_free_port(),
        stage=stage,
        shown=2,
        epochs=3,
    )
    lines: list[str] = []
    try:
        result = run_demo(options, log=lines.append)
    finally:
        stopped = stop_demo(options.out)

    # Everything it started is stopped again; the session's local AWS is not its to stop.
    assert sorted(stopped) == ["gateway", "poller"]
    assert is_listening()

    # Every accepted event went through Kinesis and the ingest handler into the archive.
    sent = len((options.out / "data" / "events.jsonl").read_text().splitlines())
    assert result.events_sent == sent > 1000
    assert result.events_ingested == sent
    names = ResourceNames(stage)
    now = datetime.now(UTC)
    archived = list(
        read_events(
            local_aws_server.client("s3"),
            names.data_bucket,
            now - timedelta(hours=2),
            now + timedelta(hours=1),
        )
    )
    assert len(archived) == sent
    assert len({e["event_id"] for e in archived}) == sent
    assert not any(e["user_id"].startswith("u0") for e in archived)  # hashed, never raw

    # The pipeline promoted a version and the gateway served it, with reasons.
    assert result.model_version is not None
    assert result.report is not None and "candidate" in result.report.read_text()
    assert set(result.recommendations) == {"u00000", "u00001"}
    for body in result.recommendations.values():
        assert body["model_version"] == result.model_version
        assert body["fallback"] is None
        assert body["items"] and all(item["reason"] for item in body["items"])

    text = "\n".join(lines)
    assert "curl -H" in text and "make stop" in text
    assert (options.out / "token.txt").read_text().strip() == result.learner_token
