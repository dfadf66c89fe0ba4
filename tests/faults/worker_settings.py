"""Settings of the Celery worker the kill campaign starts: the product's settings, with a short
lease so that a worker killed while holding it delays the next tick by one second, not
``LOOP_LEASE_S``'s 10 (scaling.loop.Lease: renewed during a tick, so a tick may last longer)."""

from controlplane.settings import *  # noqa: F403
from controlplane.settings import CELERY_BROKER_TRANSPORT_OPTIONS, REDIS_URL

LOOP_LEASE_S = 1.0
if not REDIS_URL:  # the filesystem broker is polled: look every 50 ms, not every second
    CELERY_BROKER_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS | {"polling_interval": 0.05}
# A killed pool process's task is declared lost (and redelivered) after this wait; Celery's 10 s
# default would make each of the campaign's 50 rounds wait 10 s for nothing.
CELERY_WORKER_LOST_WAIT = 0.5
