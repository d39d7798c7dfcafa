"""{{name}}: a queue consumer.

It handles a batch and reports the messages it could not process: here, those whose body
contains `fail`, so partial failure can be seen (the host retries them alone, then parks them
in the dead-letter queue). Edit `handle`. The world is wit/world.wit: add imports there to use
the platform services.
"""

from wit_world import exports
from wit_world.exports.queue_handler import Batch, MessageFailure
from wit_world.imports import logging


class QueueHandler(exports.QueueHandler):
    def handle(self, batch: Batch) -> list[MessageFailure]:
        failed = [
            MessageFailure(id=m.id, reason=f"body asks to fail (attempt {m.attempt})")
            for m in batch.messages
            if b"fail" in bytes(m.body)
        ]
        logging.log(
            logging.Level.INFO,
            "{{name}}",
            f"queue {batch.queue}: {len(batch.messages)} messages, {len(failed)} failed",
        )
        return failed
