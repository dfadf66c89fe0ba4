"""System check for the API's own setting (API_THROTTLE_RATE)."""

from typing import Any

from django.conf import settings
from django.core.checks import Error, register

_PERIODS = {"s", "m", "h", "d"}


@register()
def check_throttle_rate(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    rate = getattr(settings, "API_THROTTLE_RATE", None)
    if rate is None:
        return []
    count, _, period = str(rate).partition("/")
    if count.isdigit() and int(count) > 0 and period[:1] in _PERIODS:
        return []
    return [
        Error(
            f"API_THROTTLE_RATE={rate!r} is not a rate.",
            hint='Use requests per period, like "50/s", "1000/min" or "off".',
            id="api.E001",
        )
    ]
