/**
 * Apps on the stores the environment gives the tests (read through loadEnv): a scratch schema of
 * DATABASE_URL, dropped afterwards, or an in-memory PGlite; REDIS_URL under a key prefix of the
 * test's own, or the in-process store. The same tests run both ways.
 */
import { loadEnv } from '../../src/config/env.ts';
import type { AlertSink } from '../../src/observability/alertSink.ts';
import type { AlertCode, AlertFields } from '../../src/observability/alerts.ts';
import { BACKEND, openTestDb } from '../store/dbForTest.ts';
import type { TestDb } from '../store/dbForTest.ts';
import { adminClient, deleteByPrefix, testPrefix } from '../store/redisTestEnv.ts';
import { startTestApp } from './testApp.ts';
import type { TestApp } from './testApp.ts';

export const TEST_REDIS_URL = loadEnv().redisUrl;

/** What a run of these tests is on, for test titles. */
export const STORES = `${BACKEND}, ${TEST_REDIS_URL === undefined ? 'in-process' : 'redis'}`;

export interface TestStores {
  readonly testDb: TestDb;
  /** REDIS_URL and this test's key prefix, for startTestApp's env (empty without Redis). */
  readonly env: Readonly<Record<string, string>>;
  dispose(): Promise<void>;
}

export async function openTestStores(): Promise<TestStores> {
  const testDb = await openTestDb();
  const prefix = testPrefix();
  return {
    testDb,
    env: TEST_REDIS_URL === undefined ? {} : { REDIS_URL: TEST_REDIS_URL, REDIS_KEY_PREFIX: prefix },
    async dispose() {
      await testDb.dispose();
      if (TEST_REDIS_URL !== undefined) {
        const redis = adminClient();
        await deleteByPrefix(redis, prefix);
        redis.disconnect();
      }
    },
  };
}

/**
 * startTestApp on the test's stores. The company and template it writes under DATA_DIR/config are
 * imported into the database by the first app to start on it (the first-start import).
 */
export function startStoreApp(
  stores: TestStores,
  options: Parameters<typeof startTestApp>[0] = {},
): Promise<TestApp> {
  return startTestApp({
    ...options,
    env: { ...stores.env, ...options.env },
    app: { db: stores.testDb.reopen(), ...options.app },
  });
}

/** An alert sink that remembers what was raised. */
export function recordingAlerts(): AlertSink & {
  readonly raised: Array<AlertFields & { code: AlertCode }>;
} {
  const raised: Array<AlertFields & { code: AlertCode }> = [];
  return {
    raised,
    raise: (code, alert) => raised.push({ code, ...alert }),
  };
}

/** Polls `check` every 20 ms until it returns something other than undefined, or fails after `ms`. */
export async function eventually<T>(
  check: () => Promise<T | undefined> | T | undefined,
  ms = 5000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
