"""A recording opensearch-py connection over a tiny in-memory cluster.

No OpenSearch can run on these machines, so the adapter is tested on the exact requests
it sends. ``RecordingConnection`` sits where opensearch-py's HTTP connection would: the
real client and transport serialise every request, the connection records it (method,
path, query params, body decoded as JSON or NDJSON) and answers with a response shaped as
OpenSearch 2.x answers it (index creation and deletion, ``_bulk``, aliases, ``_search``,
``_count``, ``_refresh``, the security plugin's roles and role mappings, and JSON errors
raised through the client's own error mapping).

The cluster keeps just enough state (indices, documents, aliases) for multi-step flows;
its k-NN search scores exactly with the plugin's ``innerproduct`` score translation and
understands the ``terms`` filters the adapter emits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from opensearchpy import Connection, OpenSearch
from opensearchpy.exceptions import ConnectionError as OpenSearchConnectionError


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, Any]
    body: Any  # dict for JSON, list of dicts for NDJSON, None without a body


@dataclass
class FakeCluster:
    """Indices, documents and aliases, plus knobs to inject failures."""

    indices: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> create body
    docs: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # index -> id -> doc
    aliases: dict[str, set[str]] = field(default_factory=dict)  # alias -> indices
    fail_ids: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    down: bool = False
    shard_failures: int = 0
    requests: list[Recorded] = field(default_factory=list)
    # The security plugin's REST API: "roles" and "rolesmapping" entities by name, and
    # a (status, message) to refuse every security API call with, as the plugin would.
    security: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {"roles": {}, "rolesmapping": {}}
    )
    security_refusal: tuple[int, str] | None = None
    # How many security API calls to answer 503 first, as a domain whose security index
    # is not up yet does ("OpenSearch Security not initialized.").
    security_unavailable: int = 0


def ip_to_score(ip: float) -> float:
    """The k-NN plugin's innerproduct translation (SpaceType.INNER_PRODUCT, distance -ip)."""
    return 1.0 + ip if ip >= 0 else 1.0 / (1.0 - ip)


class RecordingConnection(Connection):
    """opensearch-py ``Connection`` that records requests and answers from a FakeCluster."""

    def __init__(self, *args: Any, cluster: FakeCluster | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cluster = cluster if cluster is not None else FakeCluster()

    def perform_request(
        self,
        method: str,
        url: str,
        params: Any = None,
        body: bytes | None = None,
        timeout: float | None = None,
        ignore: Any = (),
        headers: Any = None,
    ) -> tuple[int, dict[str, str], str]:
        path = unquote(url)
        decoded = _decode(path, body)
        self.cluster.requests.append(Recorded(method, path, dict(params or {}), decoded))
        if self.cluster.down:
            raise OpenSearchConnectionError(
                "N/A", "connection refused", ConnectionRefusedError(111, "Connection refused")
            )
        status, response = _route(self.cluster, method, path, decoded)
        raw = json.dumps(response)
        if not 200 <= status < 300 and status not in (ignore or ()):
            self._raise_error(status, raw, "application/json")
        return status, {"content-type": "application/json; charset=UTF-8"}, raw


def make_client(cluster: FakeCluster) -> OpenSearch:
    """A real OpenSearch client whose only connection is a RecordingConnection."""
    return OpenSearch(
        hosts=[{"host": "search.test", "port": 443}],
        use_ssl=True,
        connection_class=RecordingConnection,
        cluster=cluster,
        max_retries=0,
    )


def _decode(path: str, body: bytes | None) -> Any:
    if body is None:
        return None
    text = body.decode("utf-8")
    if path.endswith("/_bulk"):
        assert text.endswith("\n"), "a _bulk body must end with a newline"
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)


def _error(status: int, kind: str, reason: str, **extra: Any) -> tuple[int, dict[str, Any]]:
    cause = {"type": kind, "reason": reason, **extra}
    return status, {"error": {"root_cause": [cause], **cause}, "status": status}


def _shards(total: int = 2, failed: int = 0) -> dict[str, int]:
    return {"total": total, "successful": total - failed, "failed": failed}


def _resolve(cluster: FakeCluster, target: str) -> list[str]:
    if target in cluster.indices:
        return [target]
    return sorted(cluster.aliases.get(target, ()))


def _route(cluster: FakeCluster, method: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    parts = [part for part in path.split("/") if part]
    if parts[:3] == ["_plugins", "_security", "api"] and len(parts) == 5:
        return _security(cluster, method, parts[3], parts[4], body)
    if method == "PUT" and len(parts) == 1:
        return _create_index(cluster, parts[0], body)
    if method == "DELETE" and len(parts) == 1:
        return _delete_index(cluster, parts[0])
    if method == "POST" and parts == ["_aliases"]:
        return _update_aliases(cluster, body)
    if method == "GET" and len(parts) == 2 and parts[0] == "_alias":
        return _get_alias(cluster, parts[1])
    if method == "POST" and len(parts) == 2:
        target, endpoint = parts
        indices = _resolve(cluster, target)
        if not indices:
            return _error(
                404, "index_not_found_exception", f"no such index [{target}]", index=target
            )
        if endpoint == "_bulk":
            return _bulk(cluster, target, indices, body)
        if endpoint == "_refresh":
            return 200, {"_shards": _shards(2 * len(indices))}
        if endpoint == "_count":
            count = sum(len(cluster.docs[index]) for index in indices)
            return 200, {"count": count, "_shards": _shards(len(indices))}
        if endpoint == "_search":
            return _search(cluster, indices, body)
    return _error(400, "illegal_argument_exception", f"unsupported request {method} {path}")


def _create_index(cluster: FakeCluster, name: str, body: Any) -> tuple[int, dict[str, Any]]:
    if name in cluster.indices:
        return _error(
            400,
            "resource_already_exists_exception",
            f"index [{name}/abc123] already exists",
            index=name,
        )
    cluster.indices[name] = body
    cluster.docs[name] = {}
    return 200, {"acknowledged": True, "shards_acknowledged": True, "index": name}


def _delete_index(cluster: FakeCluster, name: str) -> tuple[int, dict[str, Any]]:
    if name not in cluster.indices:
        return _error(404, "index_not_found_exception", f"no such index [{name}]", index=name)
    del cluster.indices[name], cluster.docs[name]
    cluster.aliases = {
        alias: held - {name} for alias, held in cluster.aliases.items() if held - {name}
    }
    return 200, {"acknowledged": True}


def _plugin_answer(status: int, message: str) -> tuple[int, dict[str, Any]]:
    """The security plugin's answer shape (Responses.payload): status name and message."""
    names = {
        200: "OK",
        201: "CREATED",
        400: "BAD_REQUEST",
        403: "FORBIDDEN",
        404: "NOT_FOUND",
        503: "SERVICE_UNAVAILABLE",
    }
    return status, {"status": names.get(status, str(status)), "message": message}


def _security(
    cluster: FakeCluster, method: str, kind: str, name: str, body: Any
) -> tuple[int, dict[str, Any]]:
    """``_plugins/_security/api/{roles,rolesmapping}/<name>``: PUT, GET and DELETE."""
    if cluster.security_refusal is not None:
        return _plugin_answer(*cluster.security_refusal)
    if cluster.security_unavailable > 0:
        cluster.security_unavailable -= 1
        return _plugin_answer(503, "OpenSearch Security not initialized.")
    if kind not in cluster.security:
        return _plugin_answer(400, f"unsupported security API {kind}")
    entities = cluster.security[kind]
    if method == "PUT":
        if kind == "rolesmapping" and name not in cluster.security["roles"]:
            return _plugin_answer(404, f"role '{name}' not found.")
        existed = name in entities
        entities[name] = body
        return (
            _plugin_answer(200, f"'{name}' updated.")
            if existed
            else _plugin_answer(201, f"'{name}' created.")
        )
    if name not in entities:
        return _plugin_answer(404, f"'{name}' not found.")
    if method == "GET":
        return 200, {name: entities[name]}
    if method == "DELETE":
        del entities[name]
        return _plugin_answer(200, f"'{name}' deleted.")
    return _plugin_answer(405, f"method {method} not supported")


def _get_alias(cluster: FakeCluster, alias: str) -> tuple[int, dict[str, Any]]:
    holders = cluster.aliases.get(alias)
    if not holders:
        return 404, {"error": f"alias [{alias}] missing", "status": 404}
    return 200, {index: {"aliases": {alias: {}}} for index in sorted(holders)}


def _update_aliases(cluster: FakeCluster, body: Any) -> tuple[int, dict[str, Any]]:
    updated = {alias: set(indices) for alias, indices in cluster.aliases.items()}
    for action in body["actions"]:
        (kind, spec), *_ = action.items()
        index, alias = spec["index"], spec["alias"]
        if index not in cluster.indices:
            return _error(404, "index_not_found_exception", f"no such index [{index}]", index=index)
        if kind == "add":
            updated.setdefault(alias, set()).add(index)
        elif kind == "remove":
            if index not in updated.get(alias, set()):
                return _error(404, "aliases_not_found_exception", f"aliases [{alias}] missing")
            updated[alias].discard(index)
    cluster.aliases = {alias: indices for alias, indices in updated.items() if indices}
    return 200, {"acknowledged": True}


def _bulk(
    cluster: FakeCluster, target: str, indices: list[str], lines: list[dict[str, Any]]
) -> tuple[int, dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for action, document in zip(lines[::2], lines[1::2], strict=True):
        meta = action["index"]
        doc_id = meta["_id"]
        if len(indices) != 1:
            status, error = (
                400,
                {
                    "type": "illegal_argument_exception",
                    "reason": f"no write index is defined for alias [{target}]. The write index "
                    "may be explicitly disabled using is_write_index=false or the alias points "
                    "to multiple indices without one being designated as a write index",
                },
            )
        else:
            status, error = cluster.fail_ids.get(doc_id, (0, {}))
        index = meta.get("_index", indices[0])
        if error:
            items.append(
                {"index": {"_index": index, "_id": doc_id, "status": status, "error": error}}
            )
            continue
        existed = doc_id in cluster.docs[index]
        cluster.docs[index][doc_id] = document
        items.append(
            {
                "index": {
                    "_index": index,
                    "_id": doc_id,
                    "_version": 2 if existed else 1,
                    "result": "updated" if existed else "created",
                    "_shards": _shards(),
                    "_seq_no": len(items),
                    "_primary_term": 1,
                    "status": 200 if existed else 201,
                }
            }
        )
    errors = any("error" in item["index"] for item in items)
    return 200, {"took": 7, "errors": errors, "items": items}


def _matches(document: dict[str, Any], clause: dict[str, Any]) -> bool:
    (field_name, values), *_ = clause["terms"].items()
    present = document.get(field_name)
    present_values = present if isinstance(present, list) else [present]
    return any(value in values for value in present_values if value is not None)


def _search(
    cluster: FakeCluster, indices: list[str], body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    knn = body["query"]["knn"]["vector"]
    query, k = knn["vector"], knn["k"]
    bool_filter = knn.get("filter", {}).get("bool", {})
    scored: list[tuple[float, str, str, dict[str, Any]]] = []
    for index in indices:
        for doc_id, document in cluster.docs[index].items():
            if not all(_matches(document, c) for c in bool_filter.get("must", [])):
                continue
            if any(_matches(document, c) for c in bool_filter.get("must_not", [])):
                continue
            ip = sum(a * b for a, b in zip(query, document["vector"], strict=True))
            scored.append((ip_to_score(ip), index, doc_id, document))
    scored.sort(key=lambda entry: -entry[0])
    top = scored[: min(k, body["size"])]
    hits = [
        {
            "_index": index,
            "_id": doc_id,
            "_score": score,
            "_source": {name: document[name] for name in body["_source"] if name in document},
        }
        for score, index, doc_id, document in top
    ]
    shards: dict[str, Any] = _shards(len(indices) + cluster.shard_failures, cluster.shard_failures)
    if cluster.shard_failures:
        shards["failures"] = [
            {
                "shard": 1,
                "index": indices[0],
                "node": "n1",
                "reason": {"type": "circuit_breaking_exception", "reason": "[knn] memory"},
            }
        ]
    return 200, {
        "took": 3,
        "timed_out": False,
        "_shards": shards,
        "hits": {
            "total": {"value": len(top), "relation": "eq"},
            "max_score": top[0][0] if top else None,
            "hits": hits,
        },
    }
