// Queue publishing (`wasmfn:platform/queue-publisher`) to Cloudflare Queues producer bindings,
// and the envelope both sides share.
//
// A Workers queue assigns message ids only at delivery and carries no attributes, so wasmfn
// sends an envelope (`{ wasmfn: 1, id, attributes, body }`, structured-clone encoded): the id the
// publisher returns is the id the consumer sees, and attributes survive. Messages from other
// producers reach the consumer as they are, under Workers' own ids.

import { binding, message } from './platform.js';
import { withTraceAttributes } from './trace.js';

/** Workers Queues' limit on one message. */
const MAX_MESSAGE = 128 * 1024;

function envelope(m) {
  const size = m.body.length + m.attributes.reduce((n, [k, v]) => n + k.length + v.length, 0);
  if (size > MAX_MESSAGE - 256) throw { tag: 'too-large', val: BigInt(MAX_MESSAGE - 256) };
  const id = crypto.randomUUID();
  const attributes = withTraceAttributes(m.attributes);
  const sent = { body: { wasmfn: 1, id, attributes, body: m.body }, contentType: 'v8' };
  if (m.delayMs !== undefined) sent.delaySeconds = Math.min(43200, Math.ceil(Number(m.delayMs) / 1000));
  return [id, sent];
}

function producer(queue) {
  const q = binding('queues', queue);
  if (!q) throw { tag: 'no-such-queue', val: queue };
  return q;
}

/** A delivered message's body, id and attributes, unwrapping wasmfn's envelope. */
export function unwrap(m) {
  const b = m.body;
  if (b && typeof b === 'object' && b.wasmfn === 1 && typeof b.id === 'string') {
    return { id: b.id, body: b.body, attributes: b.attributes ?? [] };
  }
  return { id: m.id, body: b, attributes: [] };
}

export const queuePublisher = {
  async send(queue, m) {
    const q = producer(queue);
    const [id, sent] = envelope(m);
    try {
      await q.send(sent.body, { contentType: sent.contentType, delaySeconds: sent.delaySeconds });
    } catch (error) {
      throw { tag: 'other', val: message(error) };
    }
    return id;
  },
  async sendBatch(queue, messages) {
    const q = producer(queue);
    const sent = messages.map(envelope);
    try {
      await q.sendBatch(sent.map(([, s]) => s));
    } catch (error) {
      throw { tag: 'other', val: message(error) };
    }
    return sent.map(([id]) => id);
  },
};
