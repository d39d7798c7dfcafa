"""{{name}}: a change-stream consumer (key-value / SQL change records, blob object events).

It logs each event; raising `componentize_py_types.Err(BatchFailure(...))` retries from the
failed record. Edit `handle`. The world is wit/world.wit: add imports there to use the platform
services.
"""

from wit_world import exports
from wit_world.exports.stream_handler import StreamEvent, StreamEvent_Change
from wit_world.imports import logging


def size(image) -> int:
    return len(image) if image is not None else 0


class StreamHandler(exports.StreamHandler):
    def handle(self, events: list[StreamEvent]) -> None:
        for event in events:
            e = event.value
            if isinstance(event, StreamEvent_Change):
                line = (
                    f"{e.source} {e.operation.name} {e.key} "
                    f"(old {size(e.old_image)} bytes, new {size(e.new_image)} bytes)"
                )
            else:
                line = f"{e.source} {e.kind.name} {e.key} ({e.size} bytes)"
            logging.log(logging.Level.INFO, "{{name}}", line)
