// {{name}}: a change-stream consumer in Go (key-value / SQL change records, blob object events).
// It logs each event; returning witTypes.Err(BatchFailure{...}) retries from the failed record.
// Edit Handle.
//
// `wasmfn build` generates the bindings for wit/world.wit into gen/ (add imports there to use
// the platform services) and builds this package, the world's export, with Go for wasip1.
package export_wasmfn_platform_stream_handler

import (
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	logging "wit_component/wasi_logging_logging"
	stream "wit_component/wasmfn_platform_stream_handler"
)

var operations = []string{"Insert", "Modify", "Remove"}
var kinds = []string{"Created", "Deleted"}

func size(image witTypes.Option[[]uint8]) int {
	return len(image.SomeOr(nil))
}

func Handle(events []stream.StreamEvent) witTypes.Result[witTypes.Unit, stream.BatchFailure] {
	for _, event := range events {
		var line string
		if event.Tag() == stream.StreamEvent_Change {
			c := event.Change()
			line = fmt.Sprintf("%s %s %s (old %d bytes, new %d bytes)", c.Source, operations[c.Operation], c.Key,
				size(c.OldImage), size(c.NewImage))
		} else {
			o := event.Object()
			line = fmt.Sprintf("%s %s %s (%d bytes)", o.Source, kinds[o.Kind], o.Key, o.Size)
		}
		logging.Log(logging.Level_Info, "{{name}}", line)
	}
	return witTypes.Ok[witTypes.Unit, stream.BatchFailure](witTypes.Unit{})
}
