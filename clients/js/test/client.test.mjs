// Unit tests against a scripted stand-in on 127.0.0.1 (node --test test/).
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';

import {
  APIConnectionError, BadRequestError, InvalidLicenseError, LicenseExpiredError, QuotaExceededError,
  ServiceUnavailableError, SmallestClient, SmallestError,
} from '../src/index.js';

const OK = { text: 'ok', words: [{ word: 'ok', start: 0, end: 1, confidence: 0.9, punctuated_word: 'Ok.' }], confidence: 0.9, duration: 1, language: 'en', request_id: 'r' };
const RATE_LIMITED = [429, { error: 'Rate limit exceeded', code: 'RATE_LIMIT_EXCEEDED', retry_after: 1 }, { 'Retry-After': '1' }];

/** Answers each request with the next scripted [status, body, headers], then 200 OK; records times and headers. */
async function scripted(script) {
  const seen = [];
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      seen.push({ at: Date.now(), headers: req.headers, url: req.url });
      const [status, body, headers] = script.shift() ?? [200, OK, {}];
      res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, seen, close: () => server.close() };
}

test('429 is retried after the time the server names', async () => {
  const api = await scripted([RATE_LIMITED, RATE_LIMITED]);
  try {
    const result = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k' }).transcribeUrl('https://example.com/a.wav');
    assert.equal(result.text, 'ok');
    assert.equal(result.words[0].punctuatedWord, 'Ok.');
    assert.equal(api.seen.length, 3);
    for (let i = 1; i < 3; i += 1) assert.ok(api.seen[i].at - api.seen[i - 1].at >= 950, 'waited about a second each time');
    assert.equal(api.seen[0].headers.authorization, 'Token k');
  } finally { api.close(); }
});

for (const [status, body, Cls] of [
  [401, { error: 'Invalid license key', code: 'INVALID_LICENSE' }, InvalidLicenseError],
  [403, { error: 'License expired', code: 'LICENSE_EXPIRED', expires_at: '2024-12-31T23:59:59Z' }, LicenseExpiredError],
  [403, { error: 'Quota exceeded', code: 'QUOTA_EXCEEDED' }, QuotaExceededError],
  [400, { error: 'bad', code: 'INVALID_REQUEST' }, BadRequestError],
]) {
  test(`${status} ${body.code} throws ${Cls.name} at once`, async () => {
    const api = await scripted([[status, body, {}]]);
    try {
      const error = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k' }).transcribeFile(new Uint8Array([1, 2])).catch((e) => e);
      assert.ok(error instanceof Cls, String(error));
      assert.equal(error.code, body.code);
      assert.equal(api.seen.length, 1);
      if (Cls === LicenseExpiredError) assert.equal(error.expiresAt, '2024-12-31T23:59:59Z');
    } finally { api.close(); }
  });
}

test('503 retries run out into ServiceUnavailableError', async () => {
  const busy = [503, { error: 'busy', code: 'SERVICE_UNAVAILABLE', retry_after: 0 }, {}];
  const api = await scripted([busy, busy, busy]);
  try {
    const error = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', maxRetries: 2 }).transcribeUrl('https://example.com/a.wav').catch((e) => e);
    assert.ok(error instanceof ServiceUnavailableError);
    assert.equal(error.retryAfter, 0);
    assert.equal(api.seen.length, 3);
  } finally { api.close(); }
});

test('connection errors are retried, then thrown', async () => {
  const api = await scripted([]);
  api.close(); // nothing listens on that port any more
  const started = Date.now();
  const error = await new SmallestClient({ apiUrl: api.url, licenseKey: 'k', maxRetries: 2, backoffMs: 200 }).health().catch((e) => e);
  assert.ok(error instanceof APIConnectionError, String(error));
  assert.ok(Date.now() - started >= 300, 'two backoffs: at least half of 200 ms, then half of 400 ms');
});

test('the license key comes from LICENSE_KEY and never shows', async () => {
  const api = await scripted([]);
  try {
    process.env.LICENSE_KEY = 'from-env';
    const client = new SmallestClient({ apiUrl: api.url });
    await client.transcribeUrl('https://example.com/a.wav', { diarize: true, language: 'en' });
    assert.equal(api.seen[0].headers.authorization, 'Token from-env');
    assert.match(api.seen[0].url, /diarize=true&language=en/);
    assert.ok(!JSON.stringify(client).includes('from-env'));
    delete process.env.LICENSE_KEY;
    assert.throws(() => new SmallestClient({ apiUrl: api.url }), SmallestError);
  } finally { api.close(); delete process.env.LICENSE_KEY; }
});

test('client-side rate limit spaces calls', async () => {
  const api = await scripted([]);
  try {
    const client = new SmallestClient({ apiUrl: api.url, licenseKey: 'k', rateLimit: { calls: 2, periodMs: 500 } });
    for (let i = 0; i < 3; i += 1) await client.transcribeFile(new Uint8Array([i]));
    // Unlimited, the three arrive within milliseconds; the margin is for a loaded machine, where the
    // first request can reach the server well after the client counted it.
    assert.ok(api.seen[2].at - api.seen[0].at >= 300, 'the third waited for the first to leave the window');
  } finally { api.close(); }
});
