"""The one door to the Kubernetes API: raw JSON requests through the kubernetes client.

Responses stay plain dicts (no generated model objects): cheaper to parse, and what
the caches keep. Every request is counted by verb, for the metrics and the benchmarks.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from collections import Counter
from typing import Any, Callable, Iterator

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
FIELD_MANAGER = "certmint"
LIST_PAGE_SIZE = 500  # objects per page of a listing (limit/continue)


class ApiError(Exception):
    """A failed API request: status is the HTTP code (0 when the server could not be reached)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float | None = None):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after  # seconds, from a 429's or 503's Retry-After header

    @property
    def unavailable(self) -> bool:
        """The API server could not be reached or could not answer (it is down, starting or its
        storage is failing): worth retrying soon, and a sign to watch for its return."""
        return self.status == 0 or self.status >= 500

    @property
    def transient(self) -> bool:
        """Unavailable, or throttled (429): nothing the user must fix, so worth retrying in moments
        rather than reporting as a failed issuance."""
        return self.unavailable or self.status == 429

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def resource_version(obj: dict) -> int:
    """An object's resourceVersion as a number, to tell our own write's answer from an older watch
    event. Kubernetes calls it opaque; etcd-backed servers issue increasing integers."""
    try:
        return int(obj.get("metadata", {}).get("resourceVersion", "0"))
    except ValueError:
        return 0


def load_configuration(kubeconfig: str | None = None, pool_size: int = 16,
                       context: str | None = None) -> kubernetes.client.Configuration:
    """From --kubeconfig, $KUBECONFIG or ~/.kube/config (its current context, or `context`), else the
    in-cluster service account."""
    config = kubernetes.client.Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG")
    if path or os.path.exists(os.path.expanduser("~/.kube/config")):
        kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=config)
    else:
        kubernetes.config.load_incluster_config(client_configuration=config)
    config.connection_pool_maxsize = pool_size
    return config


class Api:
    def __init__(self, configuration: kubernetes.client.Configuration):
        self.client = kubernetes.client.ApiClient(configuration)
        self.client.user_agent = "certmint"
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()  # by verb: get, list, watch, create, patch, ...
        self.on_request: Callable[[str], None] = lambda verb: None

    def _count(self, verb: str) -> None:
        with self._lock:
            self.requests[verb] += 1
        self.on_request(verb)

    def _call(self, verb: str, method: str, path: str, query: list[tuple[str, Any]] | None = None,
              body: Any = None, content_type: str = JSON, timeout: float | tuple | None = 30):
        """One request; returns the raw urllib3 response (unread) of a 2xx answer, else raises ApiError."""
        self._count(verb)
        headers = {"Accept": JSON, "Content-Type": content_type}
        try:
            request = self.client.param_serialize(method, path, query_params=query or [], header_params=headers,
                                                  body=body, auth_settings=["BearerToken"])
            response = self.client.call_api(*request, _request_timeout=timeout).response
        except ApiException as e:
            raise _api_error(e.status or 0, e.reason or "", e.body, e.headers) from None
        except Exception as e:  # connection errors from urllib3 and the like
            raise ApiError(0, type(e).__name__, str(e)) from None
        if not 200 <= response.status <= 299:
            raise _api_error(response.status, response.reason or "", response.data, response.headers)
        return response

    def request(self, verb: str, method: str, path: str, **kwargs) -> dict:
        response = self._call(verb, method, path, **kwargs)
        data = response.data
        return json.loads(data) if data else {}

    def ready(self) -> bool:
        """Whether the API server answers /readyz: it is up and its storage serves requests."""
        try:
            self._call("get", "GET", "/readyz", timeout=5).release_conn()
            return True
        except ApiError:
            return False

    def get(self, path: str) -> dict:
        return self.request("get", "GET", path)

    def get_or_none(self, path: str) -> dict | None:
        try:
            return self.get(path)
        except ApiError as e:
            if e.not_found:
                return None
            raise

    def list_pages(self, path: str, label_selector: str | None = None,
                   limit: int = LIST_PAGE_SIZE) -> Iterator[tuple[list[dict], str]]:
        """The items page by page, each with the list's resourceVersion (to watch from once done).

        Pages are handed over as they come, so a large listing never sits in memory whole.
        """
        token = None
        while True:
            query: list[tuple[str, Any]] = [("limit", limit)]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = self.request("list", "GET", path, query=query)
            metadata = page.get("metadata", {})
            yield page.get("items") or [], metadata.get("resourceVersion", "")
            token = metadata.get("continue")
            if not token:
                return

    def list(self, path: str, label_selector: str | None = None) -> list[dict]:
        return [item for items, _ in self.list_pages(path, label_selector) for item in items]

    def watch(self, path: str, resource_version: str, label_selector: str | None = None,
              timeout_seconds: int = 300) -> Iterator[dict]:
        """Watch events as dicts ({"type": ..., "object": ...}) until the server closes the stream."""
        query: list[tuple[str, Any]] = [("watch", "true"), ("resourceVersion", resource_version),
                                        ("allowWatchBookmarks", "true"), ("timeoutSeconds", timeout_seconds)]
        if label_selector:
            query.append(("labelSelector", label_selector))
        response = self._call("watch", "GET", path, query=query, timeout=(10, timeout_seconds + 30))
        try:
            buffer = b""
            for chunk in response.stream(amt=None, decode_content=True):  # as the server flushes
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            # the stream broke (an API server restart, a dropped connection): an ordinary API failure
            raise ApiError(0, type(e).__name__, str(e)) from None
        finally:
            response.release_conn()

    def create(self, path: str, body: dict) -> dict:
        return self.request("create", "POST", path, body=body, query=[("fieldManager", FIELD_MANAGER)])

    def merge_patch(self, path: str, patch: dict) -> dict:
        return self.request("patch", "PATCH", path, body=patch, content_type=MERGE_PATCH,
                            query=[("fieldManager", FIELD_MANAGER)])

    def apply(self, path: str, body: dict, force: bool = True) -> dict:
        """Server-side apply as the certmint field manager: one request creates or updates. Without
        force, fields another manager owns are not taken over: the server answers 409 instead."""
        return self.request("apply", "PATCH", path, body=body, content_type=APPLY_PATCH,
                            query=[("fieldManager", FIELD_MANAGER), ("force", "true" if force else "false")])


def _api_error(status: int, reason: str, body: bytes | str | None, headers: Any = None) -> ApiError:
    message = reason
    try:
        answer = json.loads(body or b"")
        message = answer.get("message", message)
        reason = answer.get("reason", reason)
    except (TypeError, ValueError, AttributeError):
        pass
    retry_after = None
    try:
        retry_after = float(str((headers or {}).get("Retry-After")))
    except ValueError:  # absent ("None") or an HTTP date: the rate limiter's own delay applies
        pass
    return ApiError(status, reason, message, retry_after)
