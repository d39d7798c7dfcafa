// {{name}}: a workflow task (a `Task` state whose `Resource` is `{{name}}`). It answers with its
// input wrapped in {handledBy, attempt, input}; an input mentioning `reject` fails with error
// `Rejected`, which the workflow's Retry/Catch can match. Edit `handle`.
//
// The world is wit/world.wit: add imports there to use the platform services.

import { log } from 'wasi:logging/logging@0.1.0-draft';

export const taskHandler = {
  handle(context, input) {
    log('info', '{{name}}', `${context.state} of execution ${context.execution} (attempt ${context.attempt})`);
    const data = JSON.parse(input);
    if (input.includes('reject')) {
      // A thrown plain object is the task's error; a thrown Error is a crash (States.TaskFailed).
      throw { error: 'Rejected', cause: `${context.state} was asked to reject its input` };
    }
    return JSON.stringify({ handledBy: '{{name}}', attempt: context.attempt, input: data });
  },
};
