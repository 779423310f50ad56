/**
 * What the engine's wiring needs of the alert service (src/observability/alerts.ts): `raise(code,
 * fields)`, never throwing, never waiting. Tests pass their own sink to see what was raised.
 */
import type { AlertCode, AlertFields } from './alerts.ts';

export interface AlertSink {
  raise(code: AlertCode, fields: AlertFields): void;
}
