// {{name}}: a queue consumer in C. It handles a batch and reports the messages it could not
// process: here, those whose body contains `fail`, so partial failure can be seen (the host
// retries them alone, then parks them in the dead-letter queue). Edit the handler.
//
// `wasmfn build` generates `gen/guest.h` from wit/world.wit (add imports there to use the
// platform services) and compiles this file with clang for wasm32-wasi.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"

static void log_info(const char *message) {
  guest_string_t context, text;
  guest_string_dup(&context, "{{name}}");
  guest_string_dup(&text, message);
  wasi_logging_logging_log(WASI_LOGGING_LOGGING_LEVEL_INFO, &context, &text);
  guest_string_free(&context);
  guest_string_free(&text);
}

static bool contains(const guest_list_u8_t *body, const char *word) {
  size_t n = strlen(word);
  for (size_t i = 0; i + n <= body->len; i++) {
    if (memcmp(body->ptr + i, word, n) == 0) return true;
  }
  return false;
}

bool exports_wasmfn_platform_queue_handler_handle(exports_wasmfn_platform_queue_handler_batch_t *batch,
                                                   exports_wasmfn_platform_queue_handler_list_message_failure_t *ret,
                                                   guest_string_t *err) {
  size_t count = batch->messages.len;
  ret->ptr = calloc(count ? count : 1, sizeof(exports_wasmfn_platform_queue_handler_message_failure_t));
  ret->len = 0;
  for (size_t i = 0; i < count; i++) {
    exports_wasmfn_platform_queue_handler_message_t *m = &batch->messages.ptr[i];
    if (!contains(&m->body, "fail")) continue;
    exports_wasmfn_platform_queue_handler_message_failure_t *f = &ret->ptr[ret->len++];
    guest_string_dup_n(&f->id, (const char *)m->id.ptr, m->id.len);
    char reason[64];
    snprintf(reason, sizeof reason, "body asks to fail (attempt %u)", m->attempt);
    guest_string_dup(&f->reason, reason);
  }
  char line[160];
  snprintf(line, sizeof line, "queue %.*s: %zu messages, %zu failed", (int)batch->queue.len,
           (const char *)batch->queue.ptr, count, ret->len);
  log_info(line);
  exports_wasmfn_platform_queue_handler_batch_free(batch);
  return true;
}
