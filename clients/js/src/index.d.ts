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

/** The server's query parameters: language, detect_language, timestamps, diarize, num_speakers, utterances, ... */
export type TranscribeOptions = Record<string, string | number | boolean | null | undefined>;

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
}

export declare class SmallestClient {
  constructor(config?: ClientConfig);
  readonly apiUrl: string;
  transcribeUrl(url: string, options?: TranscribeOptions): Promise<TranscriptionResult | Accepted>;
  transcribeFile(
    file: string | Blob | ArrayBuffer | ArrayBufferView,
    options?: TranscribeOptions & { contentType?: string },
  ): Promise<TranscriptionResult | Accepted>;
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
export declare class NotFoundError extends APIError {}
export declare class PayloadTooLargeError extends APIError {}
export declare class UnsupportedFormatError extends APIError {}
export declare class RateLimitError extends APIError {}
export declare class InternalServerError extends APIError {}
export declare class ServiceUnavailableError extends APIError {}

export declare function errorFromResponse(status: number, body: unknown, retryAfterHeader?: string | null): APIError;
export declare function retryAfterOf(body: unknown, header: string | null | undefined): number | null;
