// Outbound HTTP (`wasi:http/outgoing-handler`) through the Worker's `fetch`, behind the
// manifest's `allowed-outbound-hosts` (the same rules as the host, `host/src/outbound.rs`). The
// request itself is preview2-shim's: its pollables and body reads return Promises, which JSPI
// turns into blocking calls for the guest.

import { outgoingHandler as shimHandler } from '../shim/http.js';
import { structured, tables } from './platform.js';

/** The allow-list: the var named in the generated tables holds its patterns. */
const allowed = () => structured(tables().outbound) ?? [];

/** Whether `pattern` ({scheme, host, port: "default" | "any" | number}) allows the request. */
function allows(pattern, scheme, host, port) {
  if (pattern.host === '*' && !pattern.scheme && pattern.port === 'default') return true;
  if (pattern.scheme && pattern.scheme !== scheme) return false;
  let hostOk;
  if (pattern.host === '*') hostOk = true;
  else if (pattern.host.startsWith('*.')) {
    const suffix = pattern.host.slice(2);
    hostOk = host.length > suffix.length + 1 && host.endsWith(`.${suffix}`);
  } else hostOk = host === pattern.host;
  const portOk =
    pattern.port === 'any' ||
    (pattern.port === 'default' ? port === (scheme === 'https' ? 443 : 80) : pattern.port === port);
  return hostOk && portOk;
}

function schemeOf(request) {
  const s = request.scheme();
  if (!s || s.tag === 'HTTPS') return 'https';
  if (s.tag === 'HTTP') return 'http';
  return String(s.val).toLowerCase();
}

export const outgoingHandler = {
  handle(request, options) {
    const scheme = schemeOf(request);
    const authority = (request.authority() ?? '').toLowerCase();
    const url = new URL(`${scheme}://${authority}`);
    const port = url.port ? Number(url.port) : scheme === 'https' ? 443 : 80;
    if (!allowed().some((p) => allows(p, scheme, url.hostname, port))) {
      console.warn(
        `wasmfn: outbound request to ${scheme}://${authority} denied: add "${url.host}" to allowed-outbound-hosts in wasmfn.toml`,
      );
      throw { tag: 'HTTP-request-denied' };
    }
    return shimHandler.handle(request, options);
  },
};
