// {{name}}: a queue consumer. It handles a batch and reports the messages it could not process:
// here, those whose body contains `fail`, so partial failure can be seen (the host retries them
// alone, then parks them in the dead-letter queue). Edit `handle`.
//
// The world is wit/world.wit: add imports there to use the platform services.

import { log } from 'wasi:logging/logging@0.1.0-draft';

const decoder = new TextDecoder();

export const queueHandler = {
  handle(batch) {
    const failed = batch.messages
      .filter((m) => decoder.decode(m.body).includes('fail'))
      .map((m) => ({ id: m.id, reason: `body asks to fail (attempt ${m.attempt})` }));
    log('info', '{{name}}', `queue ${batch.queue}: ${batch.messages.length} messages, ${failed.length} failed`);
    return failed;
  },
};
