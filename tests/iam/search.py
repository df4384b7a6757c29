"""OpenSearch for the recorded flows: one in-memory cluster shared through a file.

No OpenSearch runs here, so the code's SigV4-signed client is replaced by a real
opensearch-py client over ``tests/unit/opensearch_recorder.py``'s connection. The jobs
run as separate processes and the pipeline function and the API in this one, yet they
must see one cluster (``build_index`` fills a version's index, ``promote`` moves the
alias, the API queries it): the cluster's state lives in a JSON file, read before and
written after every request. Each request is recorded for IAM as ``es`` ``HTTP <METHOD>``
on its path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from unit.opensearch_recorder import FakeCluster, make_client

from .recorder import OpenSearchRecording, Recorder

ENDPOINT = "https://search.test"


def _load(cluster: FakeCluster, path: Path) -> None:
    state = json.loads(path.read_text()) if path.exists() else {}
    cluster.indices = state.get("indices", {})
    cluster.docs = state.get("docs", {})
    cluster.aliases = {alias: set(names) for alias, names in state.get("aliases", {}).items()}


def _save(cluster: FakeCluster, path: Path) -> None:
    state = {
        "indices": cluster.indices,
        "docs": cluster.docs,
        "aliases": {alias: sorted(names) for alias, names in cluster.aliases.items()},
    }
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(path)


def shared_client(path: Path, recorder: Recorder) -> Any:
    """A client on the cluster stored at ``path``, its requests recorded."""
    cluster = FakeCluster()
    client = make_client(cluster)
    OpenSearchRecording(recorder, "").wrap_all(client)
    for connection in client.transport.connection_pool.connections:
        perform = connection.perform_request

        def perform_request(*args: Any, _perform: Any = perform, **kwargs: Any) -> Any:
            _load(cluster, path)
            try:
                return _perform(*args, **kwargs)
            finally:
                _save(cluster, path)

        connection.perform_request = perform_request
    return client


def use_shared_cluster(path: Path, recorder: Recorder, patch: Any = None) -> None:
    """Every OpenSearch client the code makes is one on the shared cluster: the API, the
    pipeline function and the jobs all get theirs from
    :func:`learnrec.retrieval.opensearch_index.signed_client`. ``patch`` (a pytest
    MonkeyPatch) undoes it after the test."""
    import learnrec.retrieval.opensearch_index as opensearch_index

    def signed_client(endpoint: str, region: str | None = None, **_: Any) -> Any:
        return shared_client(path, recorder)

    if patch is not None:
        patch.setattr(opensearch_index, "signed_client", signed_client)
    else:
        opensearch_index.signed_client = signed_client
