// {{name}}: a scheduled job (cron and rate triggers in wasmfn.toml's `[schedules.NAME]`). It
// logs each run; throwing marks the run failed. Edit `handle`.
//
// The world is wit/world.wit: add imports there to use the platform services.

import { log } from 'wasi:logging/logging@0.1.0-draft';

export const scheduleHandler = {
  handle(event) {
    const late = event.fireTime - event.scheduledTime;
    log('info', '{{name}}', `${event.schedule} (${event.expression}) ran ${late} ms after its due time`);
  },
};
