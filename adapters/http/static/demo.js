// The browser demo, on the session-crypto-client library (clients/typescript, served as
// /session-crypto-client.js): a protocol 2 session and one encrypted purchase, with the
// round trips and the server's own steps (Server-Timing) in a table.
import { SessionCrypto } from '/session-crypto-client.js';

const $ = (id) => document.getElementById(id);

/** `Server-Timing: a;dur=1.2, b;dur=0.3` → [[a, 1.2], …] */
function serverTiming(header) {
  return (header || '').split(',').map((part) => {
    const [name, ...params] = part.trim().split(';');
    const dur = params.map((p) => p.trim()).find((p) => p.startsWith('dur='));
    return [name, dur ? Number(dur.slice(4)) : NaN];
  }).filter(([name, dur]) => name && !Number.isNaN(dur));
}

/** A fetch that records each round trip and the server's steps in `rows`. */
function timedFetch(rows) {
  return async (url, init) => {
    const t = performance.now();
    const res = await fetch(url, init);
    const path = new URL(url, location.href).pathname;
    rows.push([`${init?.method ?? 'GET'} ${path}`, 'round trip', performance.now() - t]);
    for (const [name, dur] of serverTiming(res.headers.get('Server-Timing'))) rows.push([`  ${name}`, `server (${path})`, dur]);
    return res;
  };
}

async function timed(rows, step, f) {
  const t = performance.now();
  const value = await f();
  rows.push([step, 'browser, in all', performance.now() - t]);
  return value;
}

async function flow(clientId, payload) {
  const rows = [];
  const fetch = timedFetch(rows);
  const session = await timed(rows, 'SessionCrypto.connect', () =>
    SessionCrypto.connect({ baseUrl: '', clientId, protocol: 2, ttlSec: 1800, fetch }));
  // For the page's test (and the curious): the session, whose keys cannot be exported.
  window.sessionCrypto = session;
  const answer = await timed(rows, 'session.fetch', () => session.fetch('/transaction/purchase', { method: 'POST', body: payload }));
  return { response: await answer.json(), rows, session };
}

function show(rows) {
  $('timings').replaceChildren(...rows.map(([step, where, ms]) => {
    const tr = document.createElement('tr');
    const sub = where.startsWith('server') ? 'sub' : '';
    for (const [text, cls] of [[step.trim(), sub], [where, ''], [ms.toFixed(3), 'num']]) {
      const td = document.createElement('td');
      td.textContent = text;
      if (cls) td.className = cls;
      tr.append(td);
    }
    return tr;
  }));
}

$('run').addEventListener('click', async () => {
  const status = $('status');
  status.className = '';
  status.textContent = 'Running…';
  $('transaction-id').textContent = '—';
  $('response').textContent = '—';
  try {
    const started = performance.now();
    const { response, rows, session } = await flow($('client-id').value, { schemeCode: $('scheme').value, amount: Number($('amount').value) });
    rows.push(['total', 'browser', performance.now() - started]);
    show(rows);
    $('transaction-id').textContent = response.transactionId;
    $('response').textContent = JSON.stringify(response, null, 2);
    status.className = 'ok';
    status.textContent = `Purchase confirmed in protocol ${session.protocol} session ${session.sessionId.slice(0, 10)}… (keys confirmed)`;
  } catch (e) {
    status.className = 'error';
    status.textContent = `Failed: ${e.name}: ${e.message}`;
  }
});
