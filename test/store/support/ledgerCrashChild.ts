/**
 * Run as a child process by the crash test: records events while its database is unreachable,
 * prints their ids once the spool holds them all, then waits to be killed with SIGKILL (no flush,
 * no shutdown: what a crash leaves behind).
 *
 * Usage: node ledgerCrashChild.ts <spoolDir> <count>
 */
import { pino } from 'pino';
import { newCostEvent } from '../../../src/cost/costEvent.ts';
import { createLedgerWriter } from '../../../src/cost/ledgerWriter.ts';
import type { Db } from '../../../src/store/sql/db.ts';
import { DbError } from '../../../src/store/sql/db.ts';

const [spoolDir, countArg] = process.argv.slice(2);
const count = Number(countArg);
const refuse = () => Promise.reject(new DbError('ERR_DB_UNAVAILABLE', 'connect ECONNREFUSED'));
const unreachable: Db = {
  kind: 'postgres',
  query: refuse,
  exec: refuse,
  transaction: refuse,
  close: () => Promise.resolve(),
};
const writer = createLedgerWriter({
  db: unreachable,
  spoolDir: spoolDir!,
  log: pino({ level: 'silent' }),
  batchSize: 50,
  flushIntervalMs: 10,
  retryMinMs: 60_000,
});
const ids: string[] = [];
for (let i = 0; i < count; i += 1) {
  const event = newCostEvent({
    companyId: 'crash-co',
    callId: `call-${i % 7}`,
    turn: i,
    purpose: 'tier3',
    tier: 3,
    action: 'completed',
    provider: 'openai',
    model: 'gpt-4o-mini',
    costUsd: 0.0001 * i,
  });
  ids.push(event.id);
  writer.record(event);
  // A stream, not one burst: several spool appends.
  if (i % 25 === 24) await new Promise((r) => setTimeout(r, 5));
}
const poll = setInterval(() => {
  if (writer.stats().spooled === count) {
    clearInterval(poll);
    process.stdout.write(`${JSON.stringify({ ids })}\n`);
    // Keep running until killed.
    setInterval(() => undefined, 1000);
  }
}, 5);
