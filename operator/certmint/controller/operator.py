"""kopf wiring: the operator's life cycle (start-up, login, signals, clean shutdown) and the
watches of Issuers and ClusterIssuers, which feed the controller; kopf writes nothing.

Only raw event handlers are registered, so kopf keeps no progress or diff-base
annotations and adds no finalizers: the API writes are the controller's own.
Certificates, which come by the thousand, are watched by the controller itself
(see Controller.certificate_reflectors).
"""
from __future__ import annotations

import asyncio
import logging
import os

import kopf

from certmint.controller.core import Controller
from certmint.controller.options import Options
from certmint.kube.api import Api, load_configuration
from certmint.kube.resources import GROUP, VERSION
from certmint.metrics import serve

log = logging.getLogger(__name__)


def build_registry(controller: Controller, options: Options) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    async def configure(settings: kopf.OperatorSettings, **_) -> None:
        settings.posting.enabled = False  # events are recorded by the controller, with our reasons
        settings.scanning.disabled = True  # no CRD/namespace discovery watches: fixed resources only
        settings.watching.server_timeout = 300
        settings.watching.client_timeout = 330
        serve(controller.metrics, options.metrics_port, controller.started.is_set, options.metrics_host)
        await asyncio.to_thread(controller.start)

    @kopf.on.cleanup(registry=registry)
    async def shutdown(**_) -> None:
        controller.stop()

    @kopf.on.login(registry=registry)
    def login(**kwargs):
        return kopf.login_via_client(**kwargs)

    for kind, plural in (("Issuer", "issuers"), ("ClusterIssuer", "clusterissuers")):
        def on_event(event: kopf.RawEvent, _kind: str = kind, **_) -> None:
            obj = event["object"]
            obj.setdefault("kind", _kind)
            controller.object_event(event["type"], obj)

        kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"watch-{plural}")(_as_async(on_event))
    return registry


def _as_async(fn):
    """kopf runs sync handlers in a thread pool; ours only touch in-memory state, so run them inline."""
    async def handler(**kwargs):
        fn(**kwargs)
    handler.__name__ = fn.__name__
    return handler


def run(options: Options) -> None:
    if options.kubeconfig:
        os.environ["KUBECONFIG"] = options.kubeconfig  # kopf's login reads the same file as our client
    api = Api(load_configuration(options.kubeconfig, pool_size=options.workers + 4))
    controller = Controller(api, options)
    api.on_request = lambda verb: controller.metrics.api_requests.labels(verb).inc()
    registry = build_registry(controller, options)
    kopf.run(registry=registry, standalone=True, clusterwide=not options.namespaces,
             namespaces=list(options.namespaces))
