// {{name}}: a change-stream consumer in C (key-value / SQL change records, blob object events).
// It logs each event; returning false with `err` (reason, first failed sequence) retries from
// that record. Edit the handler.
//
// `wasmfn build` generates `gen/guest.h` from wit/world.wit (add imports there to use the
// platform services) and compiles this file with clang for wasm32-wasi.

#include <inttypes.h>
#include <stdio.h>

#include "guest.h"

static const char *OPERATIONS[] = {"Insert", "Modify", "Remove"};
static const char *KINDS[] = {"Created", "Deleted"};

#define STR(s) (int)(s).len, (const char *)(s).ptr

bool exports_wasmfn_platform_stream_handler_handle(exports_wasmfn_platform_stream_handler_list_stream_event_t *events,
                                                    exports_wasmfn_platform_stream_handler_batch_failure_t *err) {
  for (size_t i = 0; i < events->len; i++) {
    exports_wasmfn_platform_stream_handler_stream_event_t *e = &events->ptr[i];
    char line[512];
    if (e->tag == EXPORTS_WASMFN_PLATFORM_STREAM_HANDLER_STREAM_EVENT_CHANGE) {
      exports_wasmfn_platform_stream_handler_change_record_t *c = &e->val.change;
      snprintf(line, sizeof line, "%.*s %s %.*s (old %zu bytes, new %zu bytes)", STR(c->source),
               OPERATIONS[c->operation], STR(c->key), c->old_image.is_some ? c->old_image.val.len : 0,
               c->new_image.is_some ? c->new_image.val.len : 0);
    } else {
      exports_wasmfn_platform_stream_handler_object_event_t *o = &e->val.object;
      snprintf(line, sizeof line, "%.*s %s %.*s (%" PRIu64 " bytes)", STR(o->source), KINDS[o->kind], STR(o->key),
               o->size);
    }
    guest_string_t context, text;
    guest_string_dup(&context, "{{name}}");
    guest_string_dup(&text, line);
    wasi_logging_logging_log(WASI_LOGGING_LOGGING_LEVEL_INFO, &context, &text);
    guest_string_free(&context);
    guest_string_free(&text);
  }
  exports_wasmfn_platform_stream_handler_list_stream_event_free(events);
  return true;
}
