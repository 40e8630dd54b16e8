// Live streams over `WS /v1/listen` (Deepgram's live protocol): binary audio frames out; `Results`,
// `SpeechStarted`, `UtteranceEnd`, `Metadata` and `Error` messages back; `KeepAlive`, `Finalize`
// and `CloseStream` as text controls.
//
// Which WebSocket: the client's `webSocket` option if given; in browsers the global one; in Node
// the `ws` package (an optional peer dependency) when it is installed, because it alone sends an
// `Authorization` header and shows a refused handshake's HTTP status and JSON error; otherwise the
// global one of Node 22+. A WebSocket that cannot send headers carries the key as the subprotocol
// pair ['token', KEY], which the server accepts (a header, like the other: never the URL).

import { APIConnectionError, APITimeoutError, SmallestError, errorFromBody, errorFromResponse } from './errors.js';

const OPEN = 1; // WebSocket.OPEN, the same in every implementation
const NORMAL = 1000;
const CLOSE_REASON = /^([A-Z][A-Z_]*): (.*)$/s; // the server's close reason, `CODE: message`

async function webSocketClass(client) {
  if (client.webSocket) return client.webSocket;
  if (typeof window === 'undefined' && globalThis.process?.versions?.node) {
    const name = 'ws'; // a variable, so that bundlers for browsers leave this Node-only import alone
    try {
      client.webSocket = (await import(name)).WebSocket;
      return client.webSocket;
    } catch {
      // not installed: Node's own WebSocket, if this Node has one
    }
  }
  if (typeof globalThis.WebSocket === 'function') return (client.webSocket = globalThis.WebSocket);
  throw new SmallestError('Live streams need a WebSocket: npm install ws (Node 18-21), or pass webSocket');
}

/** `ws` takes headers (a third argument); browsers' and Node's built-in WebSocket do not. `ws`'s
 * class is told by its `terminate()`, which no built-in WebSocket has. */
const takesHeaders = (Impl) => typeof Impl.prototype?.terminate === 'function';

/** Connect: the open LiveStream, or the typed error of a refused or failed handshake. */
export async function openStream(client, url, settings) {
  const Impl = await webSocketClass(client);
  const socket = takesHeaders(Impl)
    ? new Impl(url, { headers: { Authorization: client.authorization } })
    : new Impl(url, ['token', client.authorization.slice('Token '.length)]);
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(error);
      if (socket.readyState <= OPEN) socket.close();
    };
    const timer = setTimeout(() => fail(new APITimeoutError(`WebSocket handshake: no answer in ${client.timeoutMs} ms`)), client.timeoutMs);
    if (typeof socket.on === 'function') {
      // `ws` only: the HTTP answer that refused the upgrade, with the server's JSON error.
      socket.on('unexpected-response', (request, response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let body;
          try {
            body = JSON.parse(text);
          } catch {
            body = { error: text.slice(0, 500) };
          }
          fail(errorFromResponse(response.statusCode, body, response.headers['retry-after'] ?? null));
          request.destroy();
        });
      });
    }
    // A browser is told nothing about a refused handshake (no status, close 1006): the same as a
    // server out of reach, and retried as file calls retry network failures.
    socket.addEventListener('error', (event) => fail(new APIConnectionError(`WebSocket handshake failed: ${event?.message || 'refused or unreachable'}`)));
    socket.addEventListener('close', (event) => fail(new APIConnectionError(`WebSocket closed during the handshake (${event.code})`)));
    socket.addEventListener('open', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(new LiveStream(socket, settings)); // its listeners are in place before any message event runs
    });
  });
}

export function toWord(w) {
  return {
    word: w.word, start: w.start, end: w.end, confidence: w.confidence,
    punctuatedWord: w.punctuated_word ?? null, speaker: w.speaker ?? null,
  };
}

function toLiveResult(message) {
  const best = message.channel?.alternatives?.[0] ?? {};
  return {
    text: best.transcript ?? '',
    isFinal: Boolean(message.is_final),
    speechFinal: Boolean(message.speech_final),
    fromFinalize: Boolean(message.from_finalize),
    start: message.start ?? 0,
    duration: message.duration ?? 0,
    confidence: best.confidence ?? 0,
    words: (best.words ?? []).map(toWord),
    raw: message,
  };
}

const EVENTS = { Results: 'transcript', SpeechStarted: 'speechStarted', UtteranceEnd: 'utteranceEnd', Metadata: 'metadata' };

/**
 * An open live stream. Events (`on(name, listener)`): `transcript` (every `Results`, as a
 * LiveResult), `speechStarted`, `utteranceEnd`, `metadata`, `error` (an `Error` message, typed; the
 * stream may go on), `message` (every message as sent) and `close` ({code, reason, error}).
 * `for await (const message of stream)` gives every message from then on, and throws the error
 * the stream ended with, if any.
 */
export class LiveStream {
  constructor(socket, { keepAliveMs = 5000, closeTimeoutMs = 60000 } = {}) {
    this.socket = socket;
    this.closeTimeoutMs = closeTimeoutMs;
    this.finals = []; // the text of every final result, in order
    this.metadata = null; // the closing Metadata message
    this.error = null; // why the stream ended, if it did not end normally
    this.closed = false;
    this.listeners = new Map();
    this.readers = new Set(); // the async iterators' queues
    this.closing = null;
    this.lastError = null; // the last `Error` message: a close with its code is explained by it
    this.ended = new Promise((resolve) => { this.end = resolve; }); // never rejects: no unhandled rejections
    socket.binaryType = 'arraybuffer';
    // What arrives with the accept (`ws` parses it in the same tick as `open`) is held until the
    // code after `await client.listen()` has added its listeners: a task later, after its microtasks.
    let held = [];
    const later = (fn) => (held ? held.push(fn) : fn());
    setTimeout(() => { for (const fn of held) fn(); held = null; }, 0);
    socket.addEventListener('message', (event) => later(() => this.receive(event.data)));
    socket.addEventListener('close', (event) => later(() => this.finish(event.code, event.reason)));
    socket.addEventListener('error', () => {}); // the close that follows says why (`ws` throws errors nobody listens to)
    this.lastSent = Date.now();
    if (keepAliveMs > 0) {
      // The server closes a stream that sends nothing for 10 s; checked 4 times per period, so a
      // KeepAlive goes out at most 1.25 periods after the last message.
      this.keepAlive = setInterval(() => {
        if (Date.now() - this.lastSent >= keepAliveMs) this.control('KeepAlive');
      }, keepAliveMs / 4);
      this.keepAlive.unref?.(); // an idle stream does not keep Node running by its timer alone
    }
  }

  on(name, listener) {
    if (!this.listeners.has(name)) this.listeners.set(name, new Set());
    this.listeners.get(name).add(listener);
    return this;
  }

  off(name, listener) {
    this.listeners.get(name)?.delete(listener);
    return this;
  }

  emit(name, value) {
    for (const listener of this.listeners.get(name) ?? []) listener(value);
  }

  /** The finals' text so far, joined. */
  get transcript() {
    return this.finals.filter(Boolean).join(' ');
  }

  /** Audio: an ArrayBuffer, a typed array (Buffer) or a Blob (MediaRecorder's). */
  send(audio) {
    this.ready();
    // An empty binary frame ends a Deepgram stream (its old close): MediaRecorder makes empty blobs.
    if ((audio?.byteLength ?? audio?.size) === 0) return;
    this.socket.send(audio);
    this.lastSent = Date.now();
  }

  /** The open utterance final now (`from_finalize: true`); the stream stays open. */
  finalize() {
    this.ready();
    this.control('Finalize');
  }

  /**
   * CloseStream: resolves with the closing `Metadata` once the server has sent the finals of all
   * the audio sent and closed; rejects with the error the stream ended with, if any.
   */
  close() {
    if (!this.closing) {
      clearInterval(this.keepAlive);
      if (!this.closed && this.socket.readyState === OPEN) this.control('CloseStream');
      this.closing = this.until(this.closeTimeoutMs);
    }
    return this.closing;
  }

  /** Close at once, without waiting for finals. */
  abort() {
    clearInterval(this.keepAlive);
    if (this.socket.readyState <= OPEN) this.socket.close(NORMAL);
  }

  async until(timeoutMs) {
    let timer;
    const late = new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs, 'late'); });
    const outcome = await Promise.race([this.ended, late]);
    clearTimeout(timer);
    if (outcome === 'late') {
      this.abort();
      throw new APITimeoutError(`The stream did not close within ${timeoutMs} ms of CloseStream`);
    }
    if (this.error) throw this.error;
    return this.metadata;
  }

  ready() {
    if (this.closing || this.closed || this.socket.readyState !== OPEN) {
      throw new SmallestError(this.error ? `The stream has ended: ${this.error.message}` : 'The stream is closed');
    }
  }

  control(type) {
    if (this.socket.readyState !== OPEN) return;
    this.socket.send(JSON.stringify({ type }));
    this.lastSent = Date.now();
  }

  receive(data) {
    let message;
    try {
      message = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      return; // the server sends JSON only
    }
    if (message.type === 'Results') {
      const result = toLiveResult(message);
      if (result.isFinal) this.finals.push(result.text);
      this.emit('transcript', result);
    } else if (message.type === 'Metadata') {
      this.metadata = message;
      this.emit('metadata', message);
    } else if (message.type in EVENTS) {
      this.emit(EVENTS[message.type], message);
    } else if (message.type === 'Error' || (message.type === undefined && message.code)) {
      // Untyped: a handshake refused after the accept (a server that cannot answer it in HTTP).
      this.lastError = errorFromBody(message);
      this.emit('error', this.lastError);
    }
    this.emit('message', message);
    for (const reader of this.readers) reader.push(message);
  }

  finish(code, reason) {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.keepAlive);
    if (code !== NORMAL) this.error = this.closeError(code, reason);
    for (const reader of this.readers) reader.push(null);
    this.end({ code, reason });
    this.emit('close', { code, reason, error: this.error });
  }

  /** The error a close other than 1000 stands for: its `Error` message, else its reason `CODE: message`. */
  closeError(code, reason) {
    const named = CLOSE_REASON.exec(reason ?? '');
    if (named && this.lastError?.code === named[1]) return this.lastError;
    if (named) return errorFromBody({ code: named[1], error: named[2] });
    if (this.lastError) return this.lastError;
    return new APIConnectionError(`The stream was closed with code ${code}${reason ? `: ${reason}` : ''}`);
  }

  [Symbol.asyncIterator]() {
    const queue = [];
    let wake = null;
    let over = false;
    const reader = { push: (message) => { queue.push(message); wake?.(); } };
    if (this.closed) queue.push(null);
    this.readers.add(reader);
    const done = () => {
      over = true;
      this.readers.delete(reader);
      return { value: undefined, done: true };
    };
    return {
      next: async () => {
        if (over) return { value: undefined, done: true };
        while (!queue.length) await new Promise((resolve) => { wake = resolve; });
        wake = null;
        const message = queue.shift();
        if (message !== null) return { value: message, done: false };
        done();
        if (this.error) throw this.error;
        return { value: undefined, done: true };
      },
      return: async () => done(),
      [Symbol.asyncIterator]() { return this; },
    };
  }
}
