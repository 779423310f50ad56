/**
 * Acting on a live call from outside its media stream: transfer to a person, hang up. Two ways:
 * Twilio's REST API (update the live call's TwiML), or a handoff note read by the `<Connect action>`
 * webhook once the stream ends.
 */
// twilio-node by deep import: the package root also loads webhooks, JWT and every TwiML module.
import RequestClient from 'twilio/lib/base/RequestClient.js';
import Twilio from 'twilio/lib/rest/Twilio.js';
import { AppError, ConfigError } from '../errors.ts';
import type { Logger } from '../observability/logger.ts';
import { dialTwiml } from './twiml.ts';

export interface CallControl {
  /** Redirects the live call to `<Dial>number</Dial>`. Rejects with an AppError on failure. */
  transfer(callSid: string, number: string): Promise<void>;
  /** Ends the live call. Rejects with an AppError on failure. */
  hangup(callSid: string): Promise<void>;
}

export type Handoff =
  { readonly action: 'transfer'; readonly number: string } | { readonly action: 'hangup' };

/** What the `<Connect action>` webhook should do for a call whose stream we ended (shared across instances). */
export interface HandoffStore {
  put(callSid: string, handoff: Handoff): Promise<void>;
  /** Reads and forgets; null when nothing was left for the call. */
  take(callSid: string): Promise<Handoff | null>;
}

export const DEFAULT_TWILIO_API_TIMEOUT_MS = 5000;

const CALL_SID = /^CA[0-9a-fA-F]{32}$/;
const ACCOUNT_SID = /^AC[0-9a-fA-F]{32}$/;
const E164 = /^\+[1-9]\d{6,14}$/;

/** A phone number in E.164 form (`+` and 7 to 15 digits), what `<Dial>` is given here. */
export function isE164(number: string): boolean {
  return E164.test(number);
}

export interface TwilioCallControlOptions {
  readonly accountSid: string;
  readonly authToken: string;
  /**
   * Where the REST API lives, origin and optional path prefix (default Twilio's own,
   * `https://api.twilio.com`). For a Twilio-compatible fake or gateway.
   */
  readonly apiBaseUrl?: string;
  /** Wall-clock bound on one API request, connect to last byte. Default 5 s. */
  readonly timeoutMs?: number;
  readonly log: Logger;
}

/**
 * twilio-node's HTTP client with two additions: a hard deadline per request (the package's own
 * `timeout` is a socket idle timeout, which a slowly trickling answer never trips), and an optional
 * base URL. The package has no base-URL option; its maintainers point to a custom `httpClient`
 * that rewrites the request URI (twilio/twilio-node#326), the documented extension point
 * (advanced-examples/custom-http-client.md). Rewriting here, after twilio-node has built the URI,
 * keeps every generated resource (paths, form encoding, errors) exactly as it talks to Twilio.
 */
class TwilioHttpClient extends RequestClient {
  readonly #base: string | null;

  constructor(timeoutMs: number, base: URL | null) {
    // autoRetry stays off: a retried transfer is the caller's decision, not the transport's.
    super({ timeout: timeoutMs, autoRetry: false });
    this.#base = base === null ? null : base.origin + base.pathname.replace(/\/+$/, '');
    this.axios.interceptors.request.use((config) => {
      config.signal ??= AbortSignal.timeout(timeoutMs);
      return config;
    });
  }

  override request<TData>(opts: RequestClient.RequestOptions<TData>) {
    if (this.#base === null) return super.request(opts);
    const uri = new URL(opts.uri);
    return super.request({ ...opts, uri: `${this.#base}${uri.pathname}${uri.search}` });
  }
}

function parseApiBaseUrl(value: string | undefined): URL | null {
  if (value === undefined) return null;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(['twilio apiBaseUrl: not a URL']);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:')
    throw new ConfigError(['twilio apiBaseUrl: expected an http(s) URL']);
  if (url.search !== '' || url.hash !== '' || url.username !== '')
    throw new ConfigError(['twilio apiBaseUrl: expected an origin and optional path, nothing else']);
  return url;
}

/** A failed Twilio REST request: what Twilio answered, when it answered at all. */
export class TwilioApiError extends AppError {
  /** The HTTP status; null when no answer came (timeout, connection refused). */
  readonly status: number | null;
  /** Twilio's own error code from the JSON body (21220: the call is no longer in progress). */
  readonly twilioCode: number | null;

  constructor(message: string, status: number | null, twilioCode: number | null, retryable: boolean) {
    super('ERR_TWILIO_API', message, { retryable });
    this.name = 'TwilioApiError';
    this.status = status;
    this.twilioCode = twilioCode;
  }
}

/**
 * Translates whatever twilio-node rejected with. The original error is never attached as the
 * cause: axios errors carry the request config, Authorization header included.
 */
function toTwilioApiError(err: unknown, action: string, timeoutMs: number): TwilioApiError {
  const e = (err ?? {}) as { status?: unknown; code?: unknown; message?: unknown; name?: unknown };
  // A RestException: Twilio answered with an error status and its JSON error body.
  if (typeof e.status === 'number') {
    const twilioCode = typeof e.code === 'number' ? e.code : null;
    const detail = typeof e.message === 'string' ? `: ${e.message}` : '';
    const codeText = twilioCode === null ? '' : ` (Twilio error ${twilioCode})`;
    return new TwilioApiError(
      `Twilio ${action} failed: HTTP ${e.status}${codeText}${detail}`,
      e.status,
      twilioCode,
      e.status === 429 || e.status >= 500,
    );
  }
  const code = typeof e.code === 'string' ? e.code : null;
  if (code === 'ECONNABORTED' || code === 'ETIMEDOUT' || code === 'ERR_CANCELED')
    return new TwilioApiError(`Twilio ${action} failed: no answer within ${timeoutMs} ms`, null, null, true);
  const detail = typeof e.message === 'string' ? e.message : 'unknown error';
  return new TwilioApiError(`Twilio ${action} failed: ${detail}`, null, null, true);
}

/**
 * Transfer and hang-up through Twilio's REST API: both update the live call (`POST
 * /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`), which also ends its media stream.
 * Rejects with AppError ERR_TWILIO_CALL_SID_INVALID / ERR_TWILIO_NUMBER_INVALID before any request,
 * and with TwilioApiError (ERR_TWILIO_API) when the request fails.
 */
export function createTwilioCallControl(options: TwilioCallControlOptions): CallControl {
  if (!ACCOUNT_SID.test(options.accountSid))
    throw new ConfigError(['twilio accountSid: expected AC followed by 32 hex digits']);
  if (options.authToken === '') throw new ConfigError(['twilio authToken: empty']);
  const timeoutMs = options.timeoutMs ?? DEFAULT_TWILIO_API_TIMEOUT_MS;
  if (!(timeoutMs > 0)) throw new ConfigError(['twilio timeoutMs: expected a positive number']);
  const base = parseApiBaseUrl(options.apiBaseUrl);
  const client = new Twilio(options.accountSid, options.authToken, {
    httpClient: new TwilioHttpClient(timeoutMs, base),
  });
  const { log } = options;

  async function update(
    action: 'transfer' | 'hangup',
    callSid: string,
    params: { twiml: string } | { status: 'completed' },
  ): Promise<void> {
    if (!CALL_SID.test(callSid))
      throw new AppError('ERR_TWILIO_CALL_SID_INVALID', `Twilio ${action}: not a call SID`);
    const startedAt = performance.now();
    try {
      await client.calls(callSid).update(params);
    } catch (err) {
      const error = toTwilioApiError(err, action, timeoutMs);
      log.warn(
        {
          callSid,
          action,
          status: error.status,
          twilioCode: error.twilioCode,
          durationMs: Math.round(performance.now() - startedAt),
          err: { message: error.message },
        },
        'twilio call update failed',
      );
      throw error;
    }
    log.info(
      { callSid, action, durationMs: Math.round(performance.now() - startedAt) },
      'twilio call updated',
    );
  }

  return {
    async transfer(callSid, number) {
      if (!isE164(number))
        throw new AppError('ERR_TWILIO_NUMBER_INVALID', 'Twilio transfer: number is not E.164');
      await update('transfer', callSid, { twiml: dialTwiml(number) });
    },
    async hangup(callSid) {
      await update('hangup', callSid, { status: 'completed' });
    },
  };
}
