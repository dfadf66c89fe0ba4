"""ETag and If-Match: optimistic concurrency for detail resources.

A detail response carries an ETag; a PUT, PATCH or DELETE that sends ``If-Match`` is applied
only if the object still has that ETag, else it answers 412 (RFC 9110 section 13.1.1, strong
comparison). Without ``If-Match`` the write goes through (last writer wins), as in HTTP.
"""

import hashlib
import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from rest_framework.request import Request

from api.exceptions import PreconditionFailed


def etag_of_representation(data: Any) -> str:
    """A strong ETag from a hash of the object's representation."""
    encoded = json.dumps(data, sort_keys=True, cls=DjangoJSONEncoder).encode()
    return '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def check_if_match(request: Request, current_etag: str) -> None:
    header = request.headers.get("If-Match")
    if header is None:
        return
    candidates = [tag.strip() for tag in header.split(",")]
    # Weak tags never match in a strong comparison, so "W/..." falls through to 412.
    if "*" in candidates or current_etag in candidates:
        return
    raise PreconditionFailed()
