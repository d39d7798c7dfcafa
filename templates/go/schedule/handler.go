// {{name}}: a scheduled job in Go (cron and rate triggers in wasmfn.toml's `[schedules.NAME]`).
// It logs each run; returning witTypes.Err marks the run failed. Edit Handle.
//
// `wasmfn build` generates the bindings for wit/world.wit into gen/ (add imports there to use
// the platform services) and builds this package, the world's export, with Go for wasip1.
package export_wasmfn_platform_schedule_handler

import (
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	logging "wit_component/wasi_logging_logging"
	schedule "wit_component/wasmfn_platform_schedule_handler"
)

func Handle(event schedule.ScheduledEvent) witTypes.Result[witTypes.Unit, string] {
	logging.Log(logging.Level_Info, "{{name}}", fmt.Sprintf("%s (%s) ran %d ms after its due time",
		event.Schedule, event.Expression, event.FireTime-event.ScheduledTime))
	return witTypes.Ok[witTypes.Unit, string](witTypes.Unit{})
}
