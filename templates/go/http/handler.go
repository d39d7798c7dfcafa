// {{name}}: an HTTP function in Go (the standard wasi:http incoming handler). It echoes the
// request: the status comes from `?status=NNN` (default 200), request headers named `x-*` come
// back with `x-method` and `x-path`, and the body is streamed back. Edit Handle.
//
// `wasmfn build` generates the bindings for wit/world.wit into gen/ (add imports there to use
// the platform services) and builds this package, the world's export, with Go for wasip1.
package export_wasi_http_incoming_handler

import (
	"net/url"
	"strconv"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	types "wit_component/wasi_http_types"
	streams "wit_component/wasi_io_streams"
)

var methods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

func methodName(m types.Method) string {
	if m.Tag() == types.Method_Other {
		return m.Other()
	}
	return methods[m.Tag()]
}

func Handle(request *types.IncomingRequest, responseOut *types.ResponseOutparam) {
	path := request.PathWithQuery().SomeOr("/")
	headers := []witTypes.Tuple2[string, []uint8]{}
	incoming := request.Headers()
	for _, h := range incoming.Entries() {
		if strings.HasPrefix(h.F0, "x-") {
			headers = append(headers, h)
		}
	}
	incoming.Drop()
	headers = append(headers,
		witTypes.Tuple2[string, []uint8]{F0: "x-method", F1: []uint8(methodName(request.Method()))},
		witTypes.Tuple2[string, []uint8]{F0: "x-path", F1: []uint8(path)})
	status := uint16(200)
	if u, err := url.Parse(path); err == nil {
		if s, err := strconv.Atoi(u.Query().Get("status")); err == nil {
			status = uint16(s)
		}
	}

	fields := types.FieldsFromList(headers).Ok()
	response := types.MakeOutgoingResponse(fields)
	response.SetStatusCode(status)
	outBody := response.Body().Ok()
	types.ResponseOutparamSet(responseOut, witTypes.Ok[*types.OutgoingResponse, types.ErrorCode](response))

	inBody := request.Consume().Ok()
	input := inBody.Stream().Ok()
	output := outBody.Write().Ok()
	for {
		moved := output.BlockingSplice(input, 1<<20)
		if moved.IsErr() {
			if moved.Err().Tag() == streams.StreamError_Closed {
				break
			}
			panic("echo failed")
		}
	}
	output.BlockingFlush()
	input.Drop()
	output.Drop()
	types.IncomingBodyFinish(inBody).Drop()
	request.Drop()
	types.OutgoingBodyFinish(outBody, witTypes.None[*types.Fields]())
}
