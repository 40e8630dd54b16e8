export declare const DEFAULT_API_URL: string;

export interface Word {
  word: string;
  start: number;
  end: number;
  confidence: number;
  punctuatedWord: string | null;
  /** With `diarize: true`. */
  speaker: number | null;
}

export interface TranscriptionResult {
  text: string;
  words: Word[];
  confidence: number;
  duration: number;
  language: string | null;
  requestId: string | null;
  /** With `utterances: true` (Deepgram's `results.utterances`). */
  utterances: Array<Record<string, unknown>>;
  /** The whole JSON body. */
  raw: Record<string, unknown>;
}

/** A request with `callback_url`: the result is POSTed there later. */
export interface Accepted {
  requestId: string;
  status: 'processing';
  raw: Record<string, unknown>;
}

/** The server's query parameters: language, detect_language, timestamps, diarize, num_speakers, utterances, ...
 * An array repeats the option (`keyterm: ['a', 'b']`). */
export type TranscribeOptions = Record<string, string | number | boolean | null | undefined | Array<string | number | boolean>>;

/** A live stream's query parameters: encoding, sample_rate, channels, language, interim_results,
 * endpointing, utterance_end_ms, vad_events, punctuate, smart_format, keyterm, redact, ... */
export type ListenOptions = TranscribeOptions;

export interface ListenSettings {
  /** Send KeepAlive once nothing was sent for this long (the server closes a stream silent for 10 s). Default 5000; 0: never. */
  keepAliveMs?: number;
  /** How long close() waits for the server's finals and close. Default 60000. */
  closeTimeoutMs?: number;
}

/** A `Results` message. */
export interface LiveResult {
  text: string;
  isFinal: boolean;
  speechFinal: boolean;
  /** A final made by finalize(). */
  fromFinalize: boolean;
  /** Seconds into the stream. */
  start: number;
  duration: number;
  confidence: number;
  words: Word[];
  /** The message as sent. */
  raw: ResultsMessage;
}

export interface ResultsMessage {
  type: 'Results';
  is_final: boolean;
  speech_final: boolean;
  from_finalize?: boolean;
  start: number;
  duration: number;
  channel: { alternatives: Array<{ transcript: string; confidence: number; words: Array<Record<string, unknown>> }> };
  metadata?: Record<string, unknown>;
}
export interface SpeechStartedMessage { type: 'SpeechStarted'; channel: number[]; timestamp: number }
export interface UtteranceEndMessage { type: 'UtteranceEnd'; channel: number[]; last_word_end: number }
export interface MetadataMessage { type: 'Metadata'; request_id: string; duration: number; [field: string]: unknown }
export interface ErrorMessage { type: 'Error'; code: string; error: string; description: string; [field: string]: unknown }
/** Every message the server sends on a Deepgram live stream. */
export type LiveMessage = ResultsMessage | SpeechStartedMessage | UtteranceEndMessage | MetadataMessage | ErrorMessage;

export interface LiveClose {
  code: number;
  reason: string;
  /** Why the stream ended, unless it closed normally (1000). */
  error: SmallestError | null;
}

export interface LiveEvents {
  transcript: LiveResult;
  speechStarted: SpeechStartedMessage;
  utteranceEnd: UtteranceEndMessage;
  metadata: MetadataMessage;
  /** An `Error` message, typed (the stream may go on, e.g. after an unknown control message). */
  error: APIError;
  message: LiveMessage;
  close: LiveClose;
}

/**
 * An open live stream (`client.listen()`). Listeners and iterators added right after
 * `await client.listen()` see every message.
 */
export declare class LiveStream implements AsyncIterable<LiveMessage> {
  /** The text of every final result so far, in order (a final may be empty). */
  readonly finals: string[];
  /** The finals' text joined. */
  readonly transcript: string;
  /** The closing Metadata message, once it came. */
  readonly metadata: MetadataMessage | null;
  /** Why the stream ended, unless it closed normally. */
  readonly error: SmallestError | null;
  readonly closed: boolean;
  on<K extends keyof LiveEvents>(name: K, listener: (value: LiveEvents[K]) => void): this;
  off<K extends keyof LiveEvents>(name: K, listener: (value: LiveEvents[K]) => void): this;
  /** Audio as the stream's `encoding` says (raw samples, or a webm/ogg/FLAC stream's bytes). Empty data is not sent. */
  send(audio: ArrayBuffer | ArrayBufferView | Blob): void;
  /** Finalize: the open utterance becomes final now; the stream stays open. */
  finalize(): void;
  /** CloseStream: the finals of all the audio sent, then the closing Metadata; rejects with the error the stream ended with. */
  close(): Promise<MetadataMessage | null>;
  /** Close at once, without waiting for finals. */
  abort(): void;
  /** Every message from now on; throws the error the stream ended with, if any. */
  [Symbol.asyncIterator](): AsyncIterator<LiveMessage>;
}

/** A WebSocket class: the browser's, Node 22's global one, or the `ws` package's (which sends the key as a header). */
export type WebSocketClass = new (url: string, protocols?: string | string[] | Record<string, unknown>) => unknown;

export interface ClientConfig {
  /** Default http://localhost:7100. */
  apiUrl?: string;
  /** Default: the LICENSE_KEY environment variable (Node). */
  licenseKey?: string;
  maxRetries?: number;
  backoffMs?: number;
  maxBackoffMs?: number;
  timeoutMs?: number;
  rateLimit?: RateLimiter | { calls: number; periodMs: number } | null;
  fetch?: typeof fetch;
  /** For live streams. Default: the browser's WebSocket; in Node the `ws` package if installed, else Node 22's global WebSocket. */
  webSocket?: WebSocketClass | null;
}

export declare class SmallestClient {
  constructor(config?: ClientConfig);
  readonly apiUrl: string;
  transcribeUrl(url: string, options?: TranscribeOptions): Promise<TranscriptionResult | Accepted>;
  transcribeFile(
    file: string | Blob | ArrayBuffer | ArrayBufferView,
    options?: TranscribeOptions & { contentType?: string },
  ): Promise<TranscriptionResult | Accepted>;
  /**
   * Open a live stream on `WS /v1/listen`. Resolves once the server accepted it; a refused
   * handshake throws the error class a file call would (in browsers, which are not shown the
   * status, an APIConnectionError), and 429/503/network failures are retried like file calls.
   */
  listen(options?: ListenOptions, settings?: ListenSettings): Promise<LiveStream>;
  health(): Promise<Record<string, unknown>>;
  usage(): Promise<Record<string, unknown>>;
}

export declare class RateLimiter {
  constructor(calls: number, periodMs: number);
  acquire(): Promise<void>;
}

export declare class SmallestError extends Error {}
export declare class APIConnectionError extends SmallestError {}
export declare class APITimeoutError extends APIConnectionError {}
export declare class APIError extends SmallestError {
  readonly status: number;
  readonly code: string;
  readonly body: Record<string, unknown>;
  /** Seconds, from the body's `retry_after` or the Retry-After header. */
  readonly retryAfter: number | null;
}
export declare class BadRequestError extends APIError {}
export declare class InvalidLicenseError extends APIError {}
export declare class LicenseExpiredError extends APIError {
  readonly expiresAt: string | null;
}
export declare class QuotaExceededError extends APIError {}
/** 408: REQUEST_TIMEOUT, or STREAM_IDLE_TIMEOUT (a live stream that sent nothing for 10 s). */
export declare class RequestTimeoutError extends APIError {}
export declare class NotFoundError extends APIError {}
export declare class PayloadTooLargeError extends APIError {}
export declare class UnsupportedFormatError extends APIError {}
export declare class RateLimitError extends APIError {}
export declare class InternalServerError extends APIError {}
export declare class ServiceUnavailableError extends APIError {}

/** The HTTP status of each error code. */
export declare const STATUS_OF_CODE: Record<string, number>;
/** The typed error of an error body that came without a status (a live stream's Error message). */
export declare function errorFromBody(body: unknown): APIError;
export declare function errorFromResponse(status: number, body: unknown, retryAfterHeader?: string | null): APIError;
export declare function retryAfterOf(body: unknown, header: string | null | undefined): number | null;
