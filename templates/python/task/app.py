"""{{name}}: a workflow task (a `Task` state whose `Resource` is `{{name}}`).

It answers with its input wrapped in {handledBy, attempt, input}; an input mentioning `reject`
fails with error `Rejected` (raise `componentize_py_types.Err(TaskError(...))`), which the
workflow's Retry/Catch can match. Edit `handle`. The world is wit/world.wit: add imports there
to use the platform services.
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports.task_handler import TaskContext, TaskError
from wit_world.imports import logging


class TaskHandler(exports.TaskHandler):
    def handle(self, context: TaskContext, input: str) -> str:
        logging.log(
            logging.Level.INFO,
            "{{name}}",
            f"{context.state} of execution {context.execution} (attempt {context.attempt})",
        )
        if "reject" in input:
            raise Err(TaskError(error="Rejected", cause=f"{context.state} was asked to reject its input"))
        return json.dumps({"handledBy": "{{name}}", "attempt": context.attempt, "input": json.loads(input)})
