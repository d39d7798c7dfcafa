// {{name}}: a scheduled job in C (cron and rate triggers in wasmfn.toml's `[schedules.NAME]`).
// It logs each run; returning false with `err` set marks the run failed. Edit the handler.
//
// `wasmfn build` generates `gen/guest.h` from wit/world.wit (add imports there to use the
// platform services) and compiles this file with clang for wasm32-wasi.

#include <inttypes.h>
#include <stdio.h>

#include "guest.h"

bool exports_wasmfn_platform_schedule_handler_handle(exports_wasmfn_platform_schedule_handler_scheduled_event_t *event,
                                                      guest_string_t *err) {
  char line[256];
  snprintf(line, sizeof line, "%.*s (%.*s) ran %" PRIu64 " ms after its due time", (int)event->schedule.len,
           (const char *)event->schedule.ptr, (int)event->expression.len, (const char *)event->expression.ptr,
           event->fire_time - event->scheduled_time);
  guest_string_t context, text;
  guest_string_dup(&context, "{{name}}");
  guest_string_dup(&text, line);
  wasi_logging_logging_log(WASI_LOGGING_LOGGING_LEVEL_INFO, &context, &text);
  guest_string_free(&context);
  guest_string_free(&text);
  exports_wasmfn_platform_schedule_handler_scheduled_event_free(event);
  return true;
}
