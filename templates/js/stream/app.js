// {{name}}: a change-stream consumer (key-value / SQL change records, blob object events). It
// logs each event; throwing `{ reason, firstFailedSequence }` retries from that record. Edit
// `handle`.
//
// The world is wit/world.wit: add imports there to use the platform services.

import { log } from 'wasi:logging/logging@0.1.0-draft';

const size = (image) => (image ? image.length : 0);

export const streamHandler = {
  handle(events) {
    for (const event of events) {
      const e = event.val;
      const line =
        event.tag === 'change'
          ? `${e.source} ${e.operation} ${e.key} (old ${size(e.oldImage)} bytes, new ${size(e.newImage)} bytes)`
          : `${e.source} ${e.kind} ${e.key} (${e.size} bytes)`;
      log('info', '{{name}}', line);
    }
  },
};
