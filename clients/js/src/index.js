// JavaScript client for the self-hosted speech-to-text server: authentication, retries with
// backoff, client-side rate limiting and one error class per error code (src/errors.js). Node 18+
// and browsers: files need only `fetch`; live streams (src/live.js) a WebSocket.

import { APIConnectionError, APIError, APITimeoutError, SmallestError, errorFromResponse } from './errors.js';
import { openStream, toWord } from './live.js';

export * from './errors.js';
export { LiveStream } from './live.js';

export const DEFAULT_API_URL = 'http://localhost:7100';
// Overload and gateway answers; every other 4xx/5xx is final. Live handshakes retry the same ones.
export const RETRY_STATUSES = new Set([429, 502, 503, 504]);

/** At most `calls` requests in any `periodMs`, shared by everything that uses this limiter. */
export class RateLimiter {
  constructor(calls, periodMs) {
    if (!(calls >= 1) || !(periodMs > 0)) throw new RangeError('calls must be >= 1 and periodMs > 0');
    this.calls = calls;
    this.periodMs = periodMs;
    this.sent = [];
  }

  async acquire() {
    for (;;) {
      const now = Date.now();
      while (this.sent.length && now - this.sent[0] >= this.periodMs) this.sent.shift();
      if (this.sent.length < this.calls) {
        this.sent.push(now);
        return;
      }
      await sleep(this.periodMs - (now - this.sent[0]));
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Options as query parameters: booleans as true/false, an array as the option repeated
 * (`keyterm`, `replace`, `search`...), null and undefined left out. */
export function query(options) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(options)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      if (one !== null && one !== undefined) params.append(key, typeof one === 'boolean' ? String(one) : `${one}`);
    }
  }
  const text = params.toString();
  return text ? `?${text}` : '';
}

function toResult(body) {
  if (body?.status === 'processing' && !('text' in body)) return { requestId: body.request_id, status: body.status, raw: body };
  return {
    text: body.text ?? body.transcription ?? '',
    words: (body.words ?? []).map(toWord),
    confidence: body.confidence ?? 0,
    duration: body.duration ?? 0,
    language: body.language ?? null,
    requestId: body.request_id ?? null,
    utterances: body.results?.utterances ?? [],
    raw: body,
  };
}

const CONTENT_TYPES = { wav: 'audio/wav', mp3: 'audio/mpeg', flac: 'audio/flac', ogg: 'audio/ogg', opus: 'audio/ogg', m4a: 'audio/mp4', webm: 'audio/webm' };

async function audioBody(file, contentType) {
  if (typeof file === 'string') { // a path (Node only)
    const { readFile } = await import('node:fs/promises');
    const extension = file.split('.').pop().toLowerCase();
    return [await readFile(file), contentType || CONTENT_TYPES[extension] || 'application/octet-stream'];
  }
  if (typeof Blob !== 'undefined' && file instanceof Blob) return [file, contentType || file.type || 'application/octet-stream'];
  if (file instanceof ArrayBuffer || ArrayBuffer.isView(file)) return [file, contentType || 'application/octet-stream'];
  throw new TypeError('file must be a path, a Blob, an ArrayBuffer or a typed array (Buffer, Uint8Array)');
}

export class SmallestClient {
  /**
   * @param {object} [config]
   * @param {string} [config.apiUrl] default http://localhost:7100
   * @param {string} [config.licenseKey] default: the LICENSE_KEY environment variable (Node)
   */
  constructor({ apiUrl = DEFAULT_API_URL, licenseKey, maxRetries = 3, backoffMs = 500, maxBackoffMs = 30000, timeoutMs = 300000, rateLimit = null, fetch: fetchImpl, webSocket = null } = {}) {
    const key = licenseKey ?? globalThis.process?.env?.LICENSE_KEY;
    if (!key) throw new SmallestError('No license key: pass licenseKey or set the LICENSE_KEY environment variable');
    this.apiUrl = apiUrl.replace(/\/+$/, '');
    this.maxRetries = maxRetries;
    this.backoffMs = backoffMs;
    this.maxBackoffMs = maxBackoffMs;
    this.timeoutMs = timeoutMs;
    this.limiter = rateLimit instanceof RateLimiter ? rateLimit : rateLimit ? new RateLimiter(rateLimit.calls, rateLimit.periodMs) : null;
    this.fetch = fetchImpl ?? globalThis.fetch.bind(globalThis);
    this.webSocket = webSocket; // a WebSocket class for live streams; null: found when the first stream opens
    // Not an own enumerable property: logging or JSON-encoding the client never shows the key.
    Object.defineProperty(this, 'authorization', { value: `Token ${key}`, enumerable: false });
  }

  /**
   * Open a live stream (`WS /v1/listen`, Deepgram's live protocol); `options` are its query
   * parameters (`encoding`, `sample_rate`, `language`, `interim_results`, `endpointing`...).
   * Resolves once the server accepted the stream; a refused handshake throws the error class a
   * file call would, and 429/503 are retried like file calls (never once the stream is open).
   */
  async listen(options = {}, { keepAliveMs = 5000, closeTimeoutMs = 60000 } = {}) {
    const url = `${this.apiUrl.replace(/^http/, 'ws')}/v1/listen${query(options)}`;
    return this.retrying(() => openStream(this, url, { keepAliveMs, closeTimeoutMs }));
  }

  /** Transcribe audio the server fetches from `url`; options are the server's query parameters. */
  async transcribeUrl(url, options = {}) {
    const body = JSON.stringify({ url });
    return toResult(await this.request('POST', `/v1/listen${query(options)}`, body, 'application/json'));
  }

  /** Transcribe a file: a path (Node), Blob, ArrayBuffer or typed array. */
  async transcribeFile(file, { contentType, ...options } = {}) {
    const [body, type] = await audioBody(file, contentType);
    return toResult(await this.request('POST', `/v1/listen${query(options)}`, body, type));
  }

  async health() { return this.request('GET', '/health'); }

  /** This key's usage, limits and remaining quota. */
  async usage() { return this.request('GET', '/v1/usage'); }

  /** Milliseconds before retry `attempt` (0-based): the server's figure, else backoff with jitter. */
  delayMs(attempt, retryAfter) {
    if (retryAfter !== null && retryAfter !== undefined) return retryAfter * 1000;
    const cap = Math.min(this.maxBackoffMs, this.backoffMs * 2 ** attempt);
    return cap / 2 + Math.random() * (cap / 2);
  }

  async request(method, path, body = undefined, contentType = undefined) {
    return this.retrying(() => this.once(method, path, body, contentType));
  }

  /** `attempt()` again after overloads and network failures, as the server asks or with backoff. */
  async retrying(attempt) {
    for (let tries = 0; ; tries += 1) {
      if (this.limiter) await this.limiter.acquire();
      let error;
      try {
        return await attempt();
      } catch (caught) {
        if (!(caught instanceof APIError || caught instanceof APIConnectionError)) throw caught;
        error = caught;
      }
      const retryable = error instanceof APIConnectionError || RETRY_STATUSES.has(error.status);
      if (!retryable || tries >= this.maxRetries) throw error;
      await sleep(this.delayMs(tries, error instanceof APIError ? error.retryAfter : null));
    }
  }

  async once(method, path, body, contentType) {
    const headers = { Authorization: this.authorization };
    if (contentType) headers['Content-Type'] = contentType;
    let response;
    try {
      response = await this.fetch(`${this.apiUrl}${path}`, { method, headers, body, signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (caught) {
      const timedOut = caught?.name === 'TimeoutError' || caught?.name === 'AbortError';
      throw new (timedOut ? APITimeoutError : APIConnectionError)(`${caught?.name}: ${caught?.cause?.code ?? caught?.message}`);
    }
    const text = await response.text();
    let data;
    try {
      data = JSON.parse(text);
    } catch {
      data = { error: text.slice(0, 500) };
    }
    if (response.ok) return data;
    throw errorFromResponse(response.status, data, response.headers.get('retry-after'));
  }
}
