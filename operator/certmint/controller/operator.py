"""kopf wiring: the operator's life cycle (start-up, login, signals, clean shutdown) and the
watches of Certificates, Issuers and ClusterIssuers, which feed the controller's store.

Only raw event handlers are registered, so kopf writes nothing: no progress or diff-base
annotations, no finalizers. The API writes are the controller's own, through one client
that kopf's login reuses (see docs/architecture.md).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
import kubernetes

from certmint.controller.core import Controller
from certmint.controller.memory import limit_arenas
from certmint.controller.options import Options
from certmint.kube.api import LIST_PAGE_SIZE, Api, load_configuration
from certmint.kube.resources import GROUP, PLURALS, VERSION
from certmint.metrics import serve

log = logging.getLogger(__name__)


def connection_info(config: kubernetes.client.Configuration) -> kopf.ConnectionInfo:
    """kopf's credentials from the one configuration certmint loaded (from --kubeconfig, $KUBECONFIG,
    ~/.kube/config or the service account), so both talk to the same cluster as the same user."""
    if config.refresh_api_key_hook is not None:  # in-cluster: the projected token is re-read when it rotates
        config.refresh_api_key_hook(config)
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=config.host, ca_path=config.ssl_ca_cert, insecure=not config.verify_ssl,
        username=config.username or None, password=config.password or None, scheme=scheme, token=token,
        certificate_path=config.cert_file, private_key_path=config.key_file)


class NoDiffBase(kopf.DiffBaseStorage):
    """No diff base. kopf builds one for every event (a deep copy of the whole object, managedFields
    and status included) to detect changes for on.create/on.update handlers, whether or not any are
    registered. certmint registers only raw event handlers, so the copy would never be read; a
    restart with 3,000 certificates costs about 5% less CPU without it."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: Any) -> None:
        return None


def build_registry(controller: Controller, options: Options) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    configuration = controller.api.client.configuration

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # events are recorded by the controller, with our reasons
        settings.scanning.disabled = True  # no CRD/namespace discovery watches: fixed resources only
        settings.persistence.diffbase_storage = NoDiffBase()
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        settings.watching.chunk_size = LIST_PAGE_SIZE  # list in pages, as certmint does: never 10,000 objects at once
        # kopf starts a task per object with events, holding its raw event (managedFields and all)
        # until handled. At start it lists every object: a bounded number of tasks, each leaving as
        # soon as it is idle, makes the listing wait for them instead of holding thousands at once.
        settings.queueing.worker_limit = 200
        settings.queueing.idle_timeout = 0.02
        serve(controller.metrics, options.metrics_port, controller.started.is_set, options.metrics_host,
              crls=controller.served_crl)
        await asyncio.to_thread(controller.start)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_: Any) -> None:
        await asyncio.to_thread(controller.stop)

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(configuration)

    for kind in PLURALS:  # every kind certmint reconciles
        plural = PLURALS[kind]

        # The handler only updates the store and queues the key: no API call, so it runs inline
        # on kopf's event loop rather than in a thread pool.
        async def on_event(event: kopf.RawEvent, _kind: str = kind, **_: Any) -> None:
            obj = event["object"]
            obj.setdefault("kind", _kind)
            controller.object_event(event["type"], dict(obj))

        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"watch-{plural}")(on_event)
    return registry


def run(options: Options) -> None:
    limit_arenas()  # before any thread starts
    api = Api(load_configuration(options.kubeconfig, pool_size=options.workers + 4))
    controller = Controller(api, options)
    api.on_request = lambda verb: controller.metrics.api_requests.labels(verb).inc()
    registry = build_registry(controller, options)
    kopf.run(registry=registry, standalone=True, clusterwide=not options.namespaces,
             namespaces=list(options.namespaces))
