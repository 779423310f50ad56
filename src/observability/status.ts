/**
 * `GET /status`: what an operator wants at a glance — live calls, each LLM provider's health, each
 * company's budgets, first-turn vs later-turn latency and the startup warmup. Behind the admin
 * token (it names companies and their spend); off (404) when no ADMIN_TOKEN is set.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Engine } from '../calls/engine.ts';
import type { StartupWarmupReport } from '../calls/startupWarmup.ts';
import type { BudgetStore } from '../cost/budgets.ts';
import { MICROS_PER_USD, dailyWarmupKey, monthlyKey } from '../cost/budgets.ts';
import type { CircuitSnapshot } from '../providers/llm/circuitBreaker.ts';
import type { HttpRoute } from '../server/httpServer.ts';
import { createAdminAuth } from '../server/adminAuth.ts';
import type { TurnLatencySnapshot, TurnLatencyWindow } from './turnLatencyWindow.ts';

export interface StatusSources {
  readonly engine: Engine;
  readonly budgets: BudgetStore;
  readonly circuits: () => Iterable<CircuitSnapshot>;
  readonly turns: TurnLatencyWindow;
  readonly warmup: () => StartupWarmupReport;
  readonly ready: () => boolean;
  readonly now?: () => Date;
}

export interface CompanyBudgetStatus {
  readonly companyId: string;
  /** This UTC month's settled Tier 3 spend (warmups included) and its limit. */
  readonly tier3Monthly: { readonly spentUsd: number; readonly limitUsd: number };
  /** Today's (UTC) settled warmup spend and its limit. */
  readonly warmupDaily: { readonly spentUsd: number; readonly limitUsd: number };
}

export interface StatusDocument {
  readonly at: string;
  readonly ready: boolean;
  readonly uptimeS: number;
  readonly liveCalls: number;
  readonly providers: readonly CircuitSnapshot[];
  readonly budgets: readonly CompanyBudgetStatus[];
  readonly turnLatency: TurnLatencySnapshot;
  readonly startupWarmup: StartupWarmupReport;
}

const usd = (micros: number) => micros / MICROS_PER_USD;

export async function statusDocument(sources: StatusSources): Promise<StatusDocument> {
  const now = sources.now?.() ?? new Date();
  const companies = [...sources.engine.companies()];
  const budgets = await Promise.all(
    companies.map(async ({ config }): Promise<CompanyBudgetStatus> => {
      const [monthly, daily] = await Promise.all([
        sources.budgets.spent(monthlyKey(config.id, now)),
        sources.budgets.spent(dailyWarmupKey(config.id, now)),
      ]);
      return {
        companyId: config.id,
        tier3Monthly: { spentUsd: usd(monthly), limitUsd: config.gatekeeper.monthlyBudgetUsd },
        warmupDaily: { spentUsd: usd(daily), limitUsd: config.warmup.dailyBudgetUsd },
      };
    }),
  );
  return {
    at: now.toISOString(),
    ready: sources.ready(),
    uptimeS: Math.round(process.uptime()),
    liveCalls: sources.engine.liveCalls,
    providers: [...sources.circuits()],
    budgets,
    turnLatency: sources.turns.snapshot(),
    startupWarmup: sources.warmup(),
  };
}

function send(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}) {
  res.writeHead(status, {
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(body);
}

/**
 * `GET /status` for a bearer of the admin token (the inspector's check, constant-time); 401 without
 * it. With no ADMIN_TOKEN configured the endpoint does not exist (404), rather than being open.
 */
export function statusRoute(sources: StatusSources, adminToken: string | undefined): HttpRoute {
  const auth = adminToken === undefined ? null : createAdminAuth(adminToken);
  return async (req: IncomingMessage, res: ServerResponse, url: URL) => {
    if (req.method !== 'GET' || url.pathname !== '/status') return false;
    if (auth === null) {
      send(res, 404, 'not found', { 'content-type': 'text/plain; charset=utf-8' });
    } else if (!auth.allows(req)) {
      send(res, 401, 'unauthorized', {
        'content-type': 'text/plain; charset=utf-8',
        'www-authenticate': 'Bearer',
      });
    } else {
      send(res, 200, JSON.stringify(await statusDocument(sources)), { 'content-type': 'application/json' });
    }
    return true;
  };
}
