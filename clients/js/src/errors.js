// One error class per error code, shared by file calls and live streams (src/live.js).

export class SmallestError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** The server could not be reached; retried before it is thrown. */
export class APIConnectionError extends SmallestError {}
export class APITimeoutError extends APIConnectionError {}

/** The server answered with an error: `status`, its stable `code`, the whole `body`. */
export class APIError extends SmallestError {
  constructor(status, code, message, body, retryAfter = null) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}
export class BadRequestError extends APIError {}
export class InvalidLicenseError extends APIError {}
export class LicenseExpiredError extends APIError {
  get expiresAt() { return this.body.expires_at ?? null; }
}
export class QuotaExceededError extends APIError {}
/** A request body or a live stream that stalled (408: REQUEST_TIMEOUT, STREAM_IDLE_TIMEOUT). */
export class RequestTimeoutError extends APIError {}
export class NotFoundError extends APIError {}
export class PayloadTooLargeError extends APIError {}
export class UnsupportedFormatError extends APIError {}
export class RateLimitError extends APIError {}
export class InternalServerError extends APIError {}
export class ServiceUnavailableError extends APIError {}

const BY_CODE = {
  INVALID_LICENSE: InvalidLicenseError,
  LICENSE_EXPIRED: LicenseExpiredError,
  QUOTA_EXCEEDED: QuotaExceededError,
  RATE_LIMIT_EXCEEDED: RateLimitError,
  FILE_TOO_LARGE: PayloadTooLargeError,
  UNSUPPORTED_FORMAT: UnsupportedFormatError,
  SERVICE_UNAVAILABLE: ServiceUnavailableError,
  REQUEST_TIMEOUT: RequestTimeoutError,
  STREAM_IDLE_TIMEOUT: RequestTimeoutError,
};
const BY_STATUS = {
  401: InvalidLicenseError, 403: QuotaExceededError, 404: NotFoundError, 408: RequestTimeoutError, 413: PayloadTooLargeError,
  415: UnsupportedFormatError, 429: RateLimitError, 503: ServiceUnavailableError,
};

/** Seconds to wait: the body's `retry_after`, else the `Retry-After` header; null when neither says. */
export function retryAfterOf(body, header) {
  for (const value of [body?.retry_after, header]) {
    const seconds = value === null || value === undefined || value === '' ? NaN : Number(value);
    if (Number.isFinite(seconds)) return Math.max(0, seconds);
  }
  return null;
}

export function errorFromResponse(status, body, retryAfterHeader = null) {
  const data = body && typeof body === 'object' ? body : { error: String(body ?? '').slice(0, 500) };
  const code = String(data.code || `HTTP_${status}`);
  const Cls = BY_CODE[code] || BY_STATUS[status] || (status >= 500 ? InternalServerError : BadRequestError);
  return new Cls(status, code, String(data.error || data.message || 'error'), data, retryAfterOf(data, retryAfterHeader));
}

// The HTTP status of each code, for errors that arrive without one: a live stream's `Error`
// message or close reason (`CODE: message`), where a browser never sees the handshake's status.
export const STATUS_OF_CODE = {
  INVALID_REQUEST: 400, MISSING_PARAMETER: 400, INVALID_LICENSE: 401, LICENSE_EXPIRED: 403, QUOTA_EXCEEDED: 403,
  REQUEST_TIMEOUT: 408, STREAM_IDLE_TIMEOUT: 408, FILE_TOO_LARGE: 413, UNSUPPORTED_FORMAT: 415,
  RATE_LIMIT_EXCEEDED: 429, INTERNAL_ERROR: 500, SERVICE_UNAVAILABLE: 503,
};

/** The typed error of an error body `{error, code, ...}` that came without an HTTP status. */
export function errorFromBody(body) {
  const code = String(body?.code ?? 'INTERNAL_ERROR');
  return errorFromResponse(STATUS_OF_CODE[code] ?? 500, body);
}
