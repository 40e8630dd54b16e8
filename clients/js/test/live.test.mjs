// Live streams (node --test test/): against scripted WebSocket servers on 127.0.0.1 (handshake
// errors, retries, messages, close reasons), and against the service's own ingress on a fake engine
// when tests/test_sdk_js.py runs them with its address: STT_URL, STT_KEY and STT_PCM (the JFK clip
// as 16 kHz linear16), whose streams are skipped without it.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { test } from 'node:test';

import { WebSocketServer, WebSocket as WS } from 'ws';

import {
  APIConnectionError, BadRequestError, InvalidLicenseError, LicenseExpiredError, QuotaExceededError, RateLimitError,
  RequestTimeoutError, ServiceUnavailableError, SmallestClient, SmallestError,
} from '../src/index.js';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const RESULTS = (text, isFinal) => ({ type: 'Results', is_final: isFinal, speech_final: isFinal, start: 0, duration: 1, channel: { alternatives: [{ transcript: text, confidence: 0.9, words: [{ word: 'hi', start: 0, end: 1, confidence: 0.9, punctuated_word: 'Hi.' }] }] } });

/**
 * A WebSocket server on 127.0.0.1: each handshake is answered with the next scripted refusal
 * [status, body, headers] as HTTP, and once they run out accepted and given to `serve(socket)`.
 * It records every handshake (time, headers, URL) and every message received.
 */
async function scripted(refusals, serve = () => {}) {
  const seen = [];
  const received = [];
  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true, handleProtocols: (offered) => offered.values().next().value ?? false });
  server.on('upgrade', (request, socket, head) => {
    seen.push({ at: Date.now(), headers: request.headers, url: request.url });
    const refusal = refusals.shift();
    if (!refusal) {
      wss.handleUpgrade(request, socket, head, (ws) => {
        ws.on('message', (data, binary) => received.push(binary ? data.length : JSON.parse(data.toString()).type));
        serve(ws, received);
      });
      return;
    }
    const [status, body, headers = {}] = refusal;
    const text = JSON.stringify(body);
    const extra = Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('');
    socket.end(`HTTP/1.1 ${status} Refused\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\n${extra}Connection: close\r\n\r\n${text}`);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`, seen, received,
    close: () => { wss.close(); server.closeAllConnections?.(); server.close(); },
  };
}

/** What a Deepgram server does with CloseStream: the finals, Metadata, close 1000. */
function deepgramLike(ws) {
  ws.on('message', (data, binary) => {
    if (binary) return;
    const { type } = JSON.parse(data.toString());
    if (type === 'Finalize') ws.send(JSON.stringify({ ...RESULTS('Finalized.', true), from_finalize: true }));
    if (type === 'CloseStream') {
      ws.send(JSON.stringify(RESULTS('Last words.', true)));
      ws.send(JSON.stringify({ type: 'Metadata', duration: 2.5, request_id: 'r' }));
      ws.close(1000);
    }
  });
}

test('429 handshakes are retried after the time the server names, then the stream opens', async () => {
  const limited = [429, { error: 'Rate limit exceeded', code: 'RATE_LIMIT_EXCEEDED', retry_after: 0.3 }, { 'Retry-After': '1' }];
  const api = await scripted([limited, limited], deepgramLike);
  try {
    const client = new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS });
    const stream = await client.listen({ encoding: 'linear16', sample_rate: 16000, keyterm: ['Kennedy', 'Boston'], interim_results: true });
    assert.equal(api.seen.length, 3);
    for (let i = 1; i < 3; i += 1) assert.ok(api.seen[i].at - api.seen[i - 1].at >= 280, 'waited the body\'s retry_after each time');
    assert.equal(api.seen[2].headers.authorization, 'Token k');
    assert.equal(api.seen[2].headers['sec-websocket-protocol'], undefined, 'ws sends the key as a header, not a subprotocol');
    assert.equal(api.seen[2].url, '/v1/listen?encoding=linear16&sample_rate=16000&keyterm=Kennedy&keyterm=Boston&interim_results=true');
    stream.abort();
  } finally { api.close(); }
});

test('503 handshakes that stay busy end in ServiceUnavailableError', async () => {
  const busy = [503, { error: 'busy', code: 'SERVICE_UNAVAILABLE', retry_after: 0 }];
  const api = await scripted([busy, busy, busy]);
  try {
    const error = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS, maxRetries: 2 }).listen().catch((e) => e);
    assert.ok(error instanceof ServiceUnavailableError, String(error));
    assert.equal(api.seen.length, 3);
  } finally { api.close(); }
});

for (const [status, body, Cls] of [
  [401, { error: 'Invalid license key', code: 'INVALID_LICENSE', reason: 'malformed' }, InvalidLicenseError],
  [403, { error: 'License expired', code: 'LICENSE_EXPIRED', expires_at: '2024-12-31T23:59:59Z' }, LicenseExpiredError],
  [403, { error: 'Quota exceeded', code: 'QUOTA_EXCEEDED' }, QuotaExceededError],
  [400, { error: 'bad encoding', code: 'INVALID_REQUEST', parameter: 'encoding' }, BadRequestError],
]) {
  test(`a ${status} ${body.code} handshake throws ${Cls.name} at once, as a file call would`, async () => {
    const api = await scripted([[status, body]]);
    try {
      const error = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS }).listen().catch((e) => e);
      assert.ok(error instanceof Cls, String(error));
      assert.equal(error.status, status);
      assert.deepEqual(error.body, body);
      assert.equal(api.seen.length, 1);
    } finally { api.close(); }
  });
}

test('results come as events, as an async iterator and as finals; close() waits for the last final', async () => {
  const api = await scripted([], (ws) => {
    deepgramLike(ws);
    ws.send(JSON.stringify({ type: 'SpeechStarted', channel: [0, 1], timestamp: 0.2 }));
    ws.send(JSON.stringify(RESULTS('Hello', false)));
    ws.send(JSON.stringify(RESULTS('Hello world.', true)));
    ws.send(JSON.stringify({ type: 'UtteranceEnd', channel: [0, 1], last_word_end: 1.0 }));
  });
  try {
    const stream = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS }).listen();
    const events = [];
    stream.on('transcript', (r) => events.push(`${r.isFinal ? 'final' : 'interim'}:${r.text}`));
    for (const name of ['speechStarted', 'utteranceEnd', 'metadata']) stream.on(name, () => events.push(name));
    const iterated = (async () => { const types = []; for await (const m of stream) types.push(m.type); return types; })();
    stream.send(new Uint8Array(3200));
    stream.send(new Uint8Array(0)); // not sent: an empty frame would end a Deepgram stream
    stream.send(new Blob([new Uint8Array(100)]));
    stream.finalize();
    await sleep(200);
    const metadata = await stream.close();
    assert.equal(metadata.duration, 2.5);
    assert.deepEqual(events, ['speechStarted', 'interim:Hello', 'final:Hello world.', 'utteranceEnd', 'final:Finalized.', 'final:Last words.', 'metadata']);
    assert.deepEqual(await iterated, ['SpeechStarted', 'Results', 'Results', 'UtteranceEnd', 'Results', 'Results', 'Metadata']);
    assert.equal(stream.transcript, 'Hello world. Finalized. Last words.');
    assert.deepEqual(api.received, [3200, 100, 'Finalize', 'CloseStream']);
    assert.throws(() => stream.send(new Uint8Array(10)), SmallestError);
  } finally { api.close(); }
});

test('an Error message then close 1008 after the accept is the typed error, and is not retried', async () => {
  const api = await scripted([], (ws) => {
    ws.send(JSON.stringify({ error: 'Invalid license key', code: 'INVALID_LICENSE', reason: 'malformed' }));
    ws.close(1008, 'INVALID_LICENSE: Invalid license key');
  });
  try {
    const stream = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS }).listen();
    const closed = new Promise((resolve) => stream.on('close', resolve));
    const iterated = (async () => { for await (const m of stream) void m; })().catch((e) => e);
    const { code, error } = await closed;
    assert.equal(code, 1008);
    assert.ok(error instanceof InvalidLicenseError, String(error));
    assert.equal(error.status, 401);
    assert.equal(error.body.reason, 'malformed');
    assert.equal(await iterated, error);
    await assert.rejects(stream.close(), InvalidLicenseError);
    assert.equal(api.seen.length, 1);
  } finally { api.close(); }
});

for (const [reason, Cls] of [['SERVICE_UNAVAILABLE: Service temporarily unavailable', ServiceUnavailableError], ['RATE_LIMIT_EXCEEDED: too many', RateLimitError], ['QUOTA_EXCEEDED: Audio quota used up', QuotaExceededError]]) {
  test(`a close with reason "${reason}" alone is ${Cls.name}; an open stream is never retried`, async () => {
    const api = await scripted([], (ws) => setTimeout(() => ws.close(reason.startsWith('SERVICE') ? 1011 : 1008, reason), 50));
    try {
      const stream = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS }).listen();
      await sleep(300);
      const error = await stream.close().catch((e) => e);
      assert.ok(error instanceof Cls, String(error));
      assert.equal(error.message.split(': ').pop(), reason.split(': ').pop());
      assert.equal(api.seen.length, 1);
    } finally { api.close(); }
  });
}

test('an idle stream sends KeepAlive', async () => {
  const api = await scripted([], deepgramLike);
  try {
    const stream = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS }).listen({}, { keepAliveMs: 200 });
    await sleep(700);
    stream.send(new Uint8Array(10));
    await stream.close();
    const keepAlives = api.received.filter((m) => m === 'KeepAlive').length;
    assert.ok(keepAlives >= 2 && keepAlives <= 4, `${keepAlives} KeepAlives in 700 ms`);
  } finally { api.close(); }
});

test('a server out of reach is APIConnectionError after the retries', async () => {
  const api = await scripted([]);
  api.close();
  const client = new SmallestClient({ apiUrl: api.url, licenseKey: 'k', webSocket: WS, maxRetries: 1, backoffMs: 100 });
  await assert.rejects(client.listen(), APIConnectionError);
});

// Against the service's own routes (the ingress on a fake engine that says "Hello world." for
// every utterance, its stream idle timeout 2 s), served by tests/test_sdk_js.py.
const SERVICE = process.env.STT_URL;
const skip = SERVICE ? false : 'needs the service: run by tests/test_sdk_js.py';
const PCM = SERVICE ? readFileSync(process.env.STT_PCM) : null;
const LINEAR16 = { encoding: 'linear16', sample_rate: 16000, language: 'en', interim_results: true };

/** A WebSocket as browsers have it: no headers, so the key goes as the subprotocol. Node 22's
 * global one (Node 20: --experimental-websocket), else `ws` called without headers. */
function BrowserLike(url, protocols) { return globalThis.WebSocket ? new globalThis.WebSocket(url, protocols) : new WS(url, protocols); }
BrowserLike.prototype = {};

async function streamed(webSocket) {
  const client = new SmallestClient({ apiUrl: SERVICE, licenseKey: process.env.STT_KEY, webSocket });
  const stream = await client.listen(LINEAR16);
  let interims = 0;
  stream.on('transcript', (r) => { if (!r.isFinal && r.text) interims += 1; });
  for (let at = 0; at < PCM.length; at += 3200) stream.send(PCM.subarray(at, at + 3200));
  const metadata = await stream.close();
  return { stream, metadata, interims };
}

test('the service: a JFK stream with the key as a header gets its finals before close() resolves', { skip }, async () => {
  const { stream, metadata, interims } = await streamed(WS);
  const said = stream.finals.filter(Boolean); // the stream's end may be a final without words
  assert.ok(said.length >= 1 && said.every((text) => text === 'Hello world.'), stream.finals.join('|'));
  assert.equal(stream.transcript, said.join(' '));
  assert.ok(interims >= 1, 'interim results came');
  assert.ok(Math.abs(metadata.duration - 11.0) < 0.05, String(metadata.duration));
});

test('the service: the key as subprotocol, as a browser sends it', { skip }, async () => {
  const { stream, metadata } = await streamed(BrowserLike);
  assert.ok(stream.finals.includes('Hello world.'), stream.finals.join('|'));
  assert.ok(Math.abs(metadata.duration - 11.0) < 0.05);
});

test('the service: a bad key is InvalidLicenseError, with ws (HTTP refusal) and as a browser (message and close)', { skip }, async () => {
  const bad = { apiUrl: SERVICE, licenseKey: 'stt1.not-a-key', maxRetries: 0 };
  const error = await new SmallestClient({ ...bad, webSocket: WS }).listen(LINEAR16).catch((e) => e);
  assert.ok(error instanceof InvalidLicenseError, String(error));
  assert.equal(error.code, 'INVALID_LICENSE');
  // A browser cannot read a refused handshake: the server accepts it, sends the Error and closes 1008.
  const opened = await new SmallestClient({ ...bad, webSocket: BrowserLike }).listen(LINEAR16);
  const browser = await opened.close().catch((e) => e);
  assert.ok(browser instanceof InvalidLicenseError && browser.code === 'INVALID_LICENSE', String(browser));
  const option = await new SmallestClient({ apiUrl: SERVICE, licenseKey: process.env.STT_KEY, webSocket: WS }).listen({ translate: true }).catch((e) => e);
  assert.ok(option instanceof BadRequestError && option.body.parameter === 'translate', String(option));
});

test('the service: KeepAlive holds an idle stream open past its idle timeout; without it the stream ends', { skip }, async () => {
  const client = new SmallestClient({ apiUrl: SERVICE, licenseKey: process.env.STT_KEY, webSocket: WS });
  const kept = await client.listen(LINEAR16, { keepAliveMs: 500 });
  const dropped = await client.listen(LINEAR16, { keepAliveMs: 0 });
  await sleep(3000); // the server's idle timeout is 2 s here
  kept.send(PCM.subarray(0, 32000 * 3));
  const metadata = await kept.close();
  assert.ok(Math.abs(metadata.duration - 3.0) < 0.05);
  const error = await dropped.close().catch((e) => e);
  assert.ok(error instanceof RequestTimeoutError && error.code === 'STREAM_IDLE_TIMEOUT', String(error));
});
