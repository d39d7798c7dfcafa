// {{name}}: an HTTP function (the standard wasi:http incoming handler) in C. It echoes the
// request: the status comes from `?status=NNN` (default 200), request headers named `x-*`
// come back with `x-method` and `x-path`, and the body is streamed back. Edit
// `exports_wasi_http_incoming_handler_handle` to do real work.
//
// `wasmfn build` generates `gen/guest.h` from wit/world.wit (add imports there to use the
// platform services) and compiles this file with clang for wasm32-wasi.

#include <stdlib.h>
#include <string.h>

#include "guest.h"

static const char *METHODS[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};

// The value of `name` in the query of `path` (not decoded), or NULL.
static const char *query_param(const char *path, const char *name, char *out, size_t cap) {
  const char *q = strchr(path, '?');
  size_t n = strlen(name);
  while (q) {
    q++;
    if (strncmp(q, name, n) == 0 && q[n] == '=') {
      const char *v = q + n + 1;
      size_t len = strcspn(v, "&");
      if (len >= cap) len = cap - 1;
      memcpy(out, v, len);
      out[len] = 0;
      return out;
    }
    q = strchr(q, '&');
  }
  return NULL;
}

static void push_header(wasi_http_types_list_tuple2_field_name_field_value_t *list, const char *name,
                        const uint8_t *value, size_t len) {
  wasi_http_types_tuple2_field_name_field_value_t *h = &list->ptr[list->len++];
  guest_string_dup(&h->f0, name);
  h->f1.ptr = malloc(len ? len : 1);
  memcpy(h->f1.ptr, value, len);
  h->f1.len = len;
}

void exports_wasi_http_incoming_handler_handle(exports_wasi_http_incoming_handler_own_incoming_request_t request,
                                               exports_wasi_http_incoming_handler_own_response_outparam_t response_out) {
  wasi_http_types_borrow_incoming_request_t req = wasi_http_types_borrow_incoming_request(request);

  // Method and path.
  wasi_http_types_method_t method;
  wasi_http_types_method_incoming_request_method(req, &method);
  const char *method_name = method.tag < 9 ? METHODS[method.tag] : NULL;
  guest_string_t path_str = {0};
  wasi_http_types_method_incoming_request_path_with_query(req, &path_str);
  char *path = calloc(path_str.len + 1, 1);
  memcpy(path, path_str.ptr, path_str.len);

  // Response headers: the request's x-* headers, then x-method and x-path.
  wasi_http_types_own_headers_t in_headers = wasi_http_types_method_incoming_request_headers(req);
  wasi_http_types_list_tuple2_field_name_field_value_t entries;
  wasi_http_types_method_fields_entries(wasi_http_types_borrow_fields(in_headers), &entries);
  wasi_http_types_list_tuple2_field_name_field_value_t out = {
      .ptr = calloc(entries.len + 2, sizeof(wasi_http_types_tuple2_field_name_field_value_t)), .len = 0};
  for (size_t i = 0; i < entries.len; i++) {
    guest_string_t *name = &entries.ptr[i].f0;
    if (name->len >= 2 && memcmp(name->ptr, "x-", 2) == 0) {
      char *n = calloc(name->len + 1, 1);
      memcpy(n, name->ptr, name->len);
      push_header(&out, n, entries.ptr[i].f1.ptr, entries.ptr[i].f1.len);
      free(n);
    }
  }
  if (method_name) {
    push_header(&out, "x-method", (const uint8_t *)method_name, strlen(method_name));
  } else {
    push_header(&out, "x-method", method.val.other.ptr, method.val.other.len);
  }
  push_header(&out, "x-path", (const uint8_t *)path, strlen(path));
  wasi_http_types_list_tuple2_field_name_field_value_free(&entries);
  wasi_http_types_fields_drop_own(in_headers);
  wasi_http_types_method_free(&method);

  wasi_http_types_own_fields_t headers;
  wasi_http_types_header_error_t header_error;
  if (!wasi_http_types_static_fields_from_list(&out, &headers, &header_error)) abort();
  wasi_http_types_list_tuple2_field_name_field_value_free(&out);

  char status_text[8];
  int status = 200;
  if (query_param(path, "status", status_text, sizeof status_text)) status = atoi(status_text);
  free(path);
  guest_string_free(&path_str);

  wasi_http_types_own_outgoing_response_t response = wasi_http_types_constructor_outgoing_response(headers);
  wasi_http_types_borrow_outgoing_response_t resp = wasi_http_types_borrow_outgoing_response(response);
  wasi_http_types_method_outgoing_response_set_status_code(resp, (uint16_t)status);
  wasi_http_types_own_outgoing_body_t out_body;
  if (!wasi_http_types_method_outgoing_response_body(resp, &out_body)) abort();
  wasi_http_types_result_own_outgoing_response_error_code_t result = {.is_err = false, .val = {.ok = response}};
  wasi_http_types_static_response_outparam_set(response_out, &result);

  // The body, streamed from the request to the response.
  wasi_http_types_own_incoming_body_t in_body;
  if (!wasi_http_types_method_incoming_request_consume(req, &in_body)) abort();
  wasi_http_types_own_input_stream_t input;
  if (!wasi_http_types_method_incoming_body_stream(wasi_http_types_borrow_incoming_body(in_body), &input)) abort();
  wasi_http_types_own_output_stream_t output;
  if (!wasi_http_types_method_outgoing_body_write(wasi_http_types_borrow_outgoing_body(out_body), &output)) abort();
  for (;;) {
    uint64_t moved;
    wasi_io_streams_stream_error_t err;
    if (!wasi_io_streams_method_output_stream_blocking_splice(wasi_io_streams_borrow_output_stream(output),
                                                              wasi_io_streams_borrow_input_stream(input), 1 << 20,
                                                              &moved, &err)) {
      if (err.tag == WASI_IO_STREAMS_STREAM_ERROR_CLOSED) break;
      abort();
    }
  }
  wasi_io_streams_stream_error_t flush_err;
  wasi_io_streams_method_output_stream_blocking_flush(wasi_io_streams_borrow_output_stream(output), &flush_err);
  wasi_io_streams_input_stream_drop_own(input);
  wasi_io_streams_output_stream_drop_own(output);
  wasi_http_types_future_trailers_drop_own(wasi_http_types_static_incoming_body_finish(in_body));
  wasi_http_types_incoming_request_drop_own(request);
  wasi_http_types_error_code_t finish_err;
  wasi_http_types_static_outgoing_body_finish(out_body, NULL, &finish_err);
}
