// {{name}}: a workflow task in Go (a `Task` state whose `Resource` is `{{name}}`). It answers
// with its input wrapped in {"handledBy", "attempt", "input"}; an input mentioning `reject` fails
// with error `Rejected`, which the workflow's Retry/Catch can match. Edit Handle.
//
// `wasmfn build` generates the bindings for wit/world.wit into gen/ (add imports there to use
// the platform services) and builds this package, the world's export, with Go for wasip1.
package export_wasmfn_platform_task_handler

import (
	"encoding/json"
	"fmt"
	"strings"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	logging "wit_component/wasi_logging_logging"
	task "wit_component/wasmfn_platform_task_handler"
)

func Handle(context task.TaskContext, input string) witTypes.Result[string, task.TaskError] {
	logging.Log(logging.Level_Info, "{{name}}", fmt.Sprintf("%s of execution %s (attempt %d)",
		context.State, context.Execution, context.Attempt))
	if strings.Contains(input, "reject") {
		return witTypes.Err[string, task.TaskError](task.TaskError{
			Error: "Rejected",
			Cause: context.State + " was asked to reject its input",
		})
	}
	out, err := json.Marshal(map[string]any{
		"handledBy": "{{name}}",
		"attempt":   context.Attempt,
		"input":     json.RawMessage(input),
	})
	if err != nil {
		return witTypes.Err[string, task.TaskError](task.TaskError{Error: "InvalidInput", Cause: err.Error()})
	}
	return witTypes.Ok[string, task.TaskError](string(out))
}
