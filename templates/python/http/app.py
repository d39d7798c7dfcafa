"""{{name}}: an HTTP function (the standard wasi:http incoming handler).

It echoes the request: the status comes from `?status=NNN` (default 200), request headers
named `x-*` come back with `x-method` and `x-path`, and the body is sent back. Edit `handle`
to do real work. The world is wit/world.wit: add imports there to use the platform services.
"""

from urllib.parse import parse_qs, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import streams
from wit_world.imports.types import (
    Fields,
    IncomingRequest,
    Method_Other,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)


def method_name(method) -> str:
    if isinstance(method, Method_Other):
        return method.value
    return type(method).__name__.removeprefix("Method_").upper()


def read_body(request: IncomingRequest) -> bytes:
    body = request.consume()
    chunks = []
    with body.stream() as stream:
        while True:
            try:
                chunks.append(stream.blocking_read(65536))
            except Err as e:
                if isinstance(e.value, streams.StreamError_Closed):
                    break
                raise
    return b"".join(chunks)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = request.path_with_query() or "/"
        headers = [(k, v) for k, v in request.headers().entries() if k.startswith("x-")]
        headers.append(("x-method", method_name(request.method()).encode()))
        headers.append(("x-path", path.encode()))
        status = int(parse_qs(urlsplit(path).query).get("status", ["200"])[0])
        body = read_body(request)

        response = OutgoingResponse(Fields.from_list(headers))
        response.set_status_code(status)
        out = response.body()
        ResponseOutparam.set(response_out, Ok(response))
        with out.write() as stream:
            for i in range(0, len(body), 4096):
                stream.blocking_write_and_flush(body[i : i + 4096])
        OutgoingBody.finish(out, None)
