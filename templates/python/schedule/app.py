"""{{name}}: a scheduled job (cron and rate triggers in wasmfn.toml's `[schedules.NAME]`).

It logs each run; raising `componentize_py_types.Err("why")` marks the run failed. Edit
`handle`. The world is wit/world.wit: add imports there to use the platform services.
"""

from wit_world import exports
from wit_world.exports.schedule_handler import ScheduledEvent
from wit_world.imports import logging


class ScheduleHandler(exports.ScheduleHandler):
    def handle(self, event: ScheduledEvent) -> None:
        late = event.fire_time - event.scheduled_time
        logging.log(
            logging.Level.INFO,
            "{{name}}",
            f"{event.schedule} ({event.expression}) ran {late} ms after its due time",
        )
