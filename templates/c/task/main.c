// {{name}}: a workflow task in C (a `Task` state whose `Resource` is `{{name}}`). It answers with
// its input wrapped in {"handledBy", "attempt", "input"}; an input mentioning `reject` fails with
// error `Rejected`, which the workflow's Retry/Catch can match. Edit the handler.
//
// `wasmfn build` generates `gen/guest.h` from wit/world.wit (add imports there to use the
// platform services) and compiles this file with clang for wasm32-wasi.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest.h"

static bool contains(const guest_string_t *text, const char *word) {
  size_t n = strlen(word);
  for (size_t i = 0; i + n <= text->len; i++) {
    if (memcmp(text->ptr + i, word, n) == 0) return true;
  }
  return false;
}

bool exports_wasmfn_platform_task_handler_handle(exports_wasmfn_platform_task_handler_task_context_t *context,
                                                  guest_string_t *input, guest_string_t *ret,
                                                  exports_wasmfn_platform_task_handler_task_error_t *err) {
  char line[256];
  snprintf(line, sizeof line, "%.*s of execution %.*s (attempt %u)", (int)context->state.len,
           (const char *)context->state.ptr, (int)context->execution.len, (const char *)context->execution.ptr,
           context->attempt);
  guest_string_t log_context, text;
  guest_string_dup(&log_context, "{{name}}");
  guest_string_dup(&text, line);
  wasi_logging_logging_log(WASI_LOGGING_LOGGING_LEVEL_INFO, &log_context, &text);
  guest_string_free(&log_context);
  guest_string_free(&text);

  bool ok = !contains(input, "reject");
  if (ok) {
    // The input is JSON, so wrapping its text keeps the result JSON.
    const char *head = "{\"handledBy\":\"{{name}}\",\"attempt\":";
    char attempt[16];
    snprintf(attempt, sizeof attempt, "%u", context->attempt);
    size_t len = strlen(head) + strlen(attempt) + strlen(",\"input\":") + input->len + 1;
    char *out = malloc(len + 1);
    int n = snprintf(out, len + 1, "%s%s,\"input\":%.*s}", head, attempt, (int)input->len, (const char *)input->ptr);
    ret->ptr = (uint8_t *)out;
    ret->len = (size_t)n;
  } else {
    guest_string_dup(&err->error, "Rejected");
    snprintf(line, sizeof line, "%.*s was asked to reject its input", (int)context->state.len,
             (const char *)context->state.ptr);
    guest_string_dup(&err->cause, line);
  }
  exports_wasmfn_platform_task_handler_task_context_free(context);
  guest_string_free(input);
  return ok;
}
