"""The embedded Celery broker for a machine without services: kombu's filesystem transport
with atomic message writes.

kombu's own writer creates the message file and then fills it; a worker listing the folder in
between takes the empty file and dies on it (JSONDecodeError, "Unrecoverable error"). Here a
message is written under a name the reader ignores and renamed into place, which is atomic.
"""

import os
import uuid
from time import monotonic
from typing import Any

from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{name}.part")
        with open(partial, "wb") as handle:
            handle.write(str_to_bytes(dumps(payload)))  # type: ignore[call-arg]  # wrong stubs
        os.replace(partial, final)


class Transport(filesystem.Transport):
    Channel = Channel
