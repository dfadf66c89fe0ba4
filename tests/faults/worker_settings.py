"""Settings of the Celery worker the kill campaign starts: the product's settings, with a short
lease so that a worker killed while holding it delays the next tick by one second, not 90.

The loop's lease is ``CELERY_TASK_TIME_LIMIT`` seconds (scaling.loop.claim); the campaign's
worker is started with ``--time-limit`` so Celery itself does not enforce one second on a tick.
"""

from controlplane.settings import *  # noqa: F403
from controlplane.settings import CELERY_BROKER_TRANSPORT_OPTIONS, REDIS_URL

CELERY_TASK_TIME_LIMIT = 1
if not REDIS_URL:  # the filesystem broker is polled: look every 50 ms, not every second
    CELERY_BROKER_TRANSPORT_OPTIONS = CELERY_BROKER_TRANSPORT_OPTIONS | {"polling_interval": 0.05}
# A killed pool process's task is declared lost (and redelivered) after this wait; Celery's 10 s
# default would make each of the campaign's 50 rounds wait 10 s for nothing.
CELERY_WORKER_LOST_WAIT = 0.5
