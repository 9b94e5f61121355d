"""The registry lock across machines: a Prefect global concurrency limit of one slot per model.

``rsft.tracking.registry.registry_lock`` always takes a file lock under the state dir; that
serialises the processes of one machine only. When a Prefect server is configured
(``PREFECT_API_URL``), every machine that runs rsft flows talks to the same server, so a global
concurrency limit ``rsft-registry-<model>`` with one slot serialises registration and alias
moves across all of them. Slots are leases: a process killed while holding one frees it when the
lease expires (``LEASE_SECONDS``, renewed while held). The embedded default (Prefect's ephemeral
server, no URL) keeps the file lock alone — there is only one machine.

The library never imports prefect: this module is plugged in with
``rsft.tracking.registry.engine_lock(registry_engine_lock())``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Callable, ContextManager, Iterator

log = logging.getLogger(__name__)

LEASE_SECONDS = 300.0


def limit_name(model_name: str) -> str:
    """The global concurrency limit of a registered model's lock."""
    return "rsft-registry-" + re.sub(r"[^A-Za-z0-9_.-]", "-", model_name)


def prefect_server_configured() -> bool:
    """Whether flows report to a Prefect server (``PREFECT_API_URL``) rather than an ephemeral one."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def ensure_limit(name: str) -> None:
    """Create the one-slot limit ``name`` if missing; an existing one is set back to one active slot."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, GlobalConcurrencyLimitUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            limit = client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another machine created it first
                pass
            return
        if limit.limit != 1 or not limit.active:
            log.warning("global concurrency limit %s had limit=%s active=%s; the registry lock needs one active "
                        "slot — set back to 1", name, limit.limit, limit.active)
            client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(limit=1, active=True))


@contextlib.contextmanager
def prefect_registry_lock(model_name: str) -> Iterator[None]:
    """Hold the one slot of ``rsft-registry-<model>`` on the Prefect server (waits for it)."""
    from prefect.concurrency.sync import concurrency

    name = limit_name(model_name)
    ensure_limit(name)
    # strict: a limit that cannot be taken fails rather than proceeding unlocked. A lease renewal
    # that fails (the server unreachable for minutes) only warns: aborting between a registration
    # and its decision or between the two alias moves would leave the registry half-written.
    with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS, raise_on_lease_renewal_failure=False):
        yield


def registry_engine_lock() -> Callable[[str], ContextManager[Any]] | None:
    """The engine lock to plug into the registry: the Prefect limit with a server, else None."""
    return prefect_registry_lock if prefect_server_configured() else None
