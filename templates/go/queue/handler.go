// {{name}}: a queue consumer in Go. It handles a batch and reports the messages it could not
// process: here, those whose body contains `fail`, so partial failure can be seen (the host
// retries them alone, then parks them in the dead-letter queue). Edit Handle.
//
// `wasmfn build` generates the bindings for wit/world.wit into gen/ (add imports there to use
// the platform services; each becomes a package `wit_component/<interface>`) and builds this
// package, the world's export, with Go for wasip1.
package export_wasmfn_platform_queue_handler

import (
	"bytes"
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	logging "wit_component/wasi_logging_logging"
	queue "wit_component/wasmfn_platform_queue_handler"
)

func Handle(batch queue.Batch) witTypes.Result[[]queue.MessageFailure, string] {
	failures := []queue.MessageFailure{}
	for _, m := range batch.Messages {
		if bytes.Contains(m.Body, []byte("fail")) {
			failures = append(failures, queue.MessageFailure{
				Id:     m.Id,
				Reason: fmt.Sprintf("body asks to fail (attempt %d)", m.Attempt),
			})
		}
	}
	logging.Log(logging.Level_Info, "{{name}}",
		fmt.Sprintf("queue %s: %d messages, %d failed", batch.Queue, len(batch.Messages), len(failures)))
	return witTypes.Ok[[]queue.MessageFailure, string](failures)
}
