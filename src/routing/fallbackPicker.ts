/**
 * Fallback lines: the right type for why nothing answered, rotated so a caller never hears the same
 * line twice in a row, with escalation options offered in words.
 */
import type { FallbackKind } from '../../machines/types.ts';
import type { CompanyConfig } from '../config/companyConfig.ts';

/** Shared rotation counters (in memory here, Redis across instances). */
export interface RotationStore {
  /** Returns 0, 1, 2, … for successive calls under `key`. */
  next(key: string): Promise<number>;
}

export function createMemoryRotationStore(): RotationStore {
  const counters = new Map<string, number>();
  return {
    next(key) {
      const n = counters.get(key) ?? 0;
      counters.set(key, n + 1);
      return Promise.resolve(n);
    },
  };
}

/** True when the company can hand a caller to a person. */
export function canTransfer(company: CompanyConfig): boolean {
  const f = company.fallbackResponses;
  return f.escalationOptions.offerTransfer && f.transferNumber !== undefined;
}

/** The escalation options in words, e.g. "I can transfer you to a team member or take a message." */
export function escalationOffer(company: CompanyConfig): string {
  const o = company.fallbackResponses.escalationOptions;
  const options = [
    canTransfer(company) ? 'transfer you to a team member' : null,
    o.offerMessage ? 'take a message' : null,
    o.offerCallback ? 'arrange a callback' : null,
  ].filter((x): x is string => x !== null);
  if (options.length === 0) return '';
  const list =
    options.length === 1 ? options[0]! : `${options.slice(0, -1).join(', ')} or ${options.at(-1)!}`;
  return `I can ${list}.`;
}

/**
 * A fallback line as it is said: escalating (a transfer, or the options in words), with the ways
 * forward for lines that admit we cannot help, or as written.
 */
export function fallbackText(
  company: CompanyConfig,
  kind: FallbackKind,
  line: string,
  escalate: boolean,
): string {
  if (escalate) {
    return canTransfer(company)
      ? `${line} Let me connect you with a member of our team.`
      : `${line} ${escalationOffer(company)}`.trim();
  }
  // Lines that admit we cannot help offer the ways forward.
  if (kind === 'noMatchFound' || kind === 'technicalIssue') {
    return `${line} ${escalationOffer(company)}`.trim();
  }
  return line;
}

export function createFallbackPicker(rotation: RotationStore) {
  return async function pickFallback(
    company: CompanyConfig,
    kind: FallbackKind,
    escalate: boolean,
  ): Promise<string> {
    const lines = company.fallbackResponses[kind];
    const index = (await rotation.next(`fallback:${company.id}:${kind}`)) % lines.length;
    return fallbackText(company, kind, lines[index]!, escalate);
  };
}
