/**
 * Docker does not run here, so the deployment files are checked for what can be checked without
 * it: the dashboard parses and queries only metrics the engine exports, and the compose file, the
 * scrape configuration and the balancer say what the README promises (a structural reading, not a
 * YAML parser: the project does not depend on one).
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, test } from 'vitest';
import { createMetrics } from '../../src/observability/metrics.ts';

const infra = (file: string) => readFile(new URL(`../../infra/${file}`, import.meta.url), 'utf8');

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: Array<{ expr: string; refId: string }>;
}

interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; definition?: string }> };
}

/** Every metric name the engine's registry exposes, histogram and summary series included. */
async function exportedNames(): Promise<Set<string>> {
  const text = await createMetrics().render();
  const names = new Set<string>();
  for (const match of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = match as unknown as [string, string, string];
    names.add(name);
    if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(`${name}${s}`);
    if (type === 'summary') for (const s of ['_sum', '_count']) names.add(`${name}${s}`);
  }
  return names;
}

/** Metric names in a PromQL expression: identifiers that are neither functions, keywords nor labels. */
function metricNames(expr: string): string[] {
  const withoutStrings = expr.replace(/"[^"]*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  const names = [...withoutStrings.matchAll(/\b([a-z_][a-z0-9_]*)\b(?!\s*\()/g)].map((m) => m[1]!);
  return names.filter((n) => /^(switchboard|nodejs|process)_/.test(n));
}

/** The keys one indent level below `parent:` in a YAML mapping (a structural reading). */
function childKeys(yaml: string, parent: string): string[] {
  const lines = yaml.split('\n');
  const start = lines.findIndex((l) => l === `${parent}:`);
  if (start < 0) return [];
  const keys: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break;
    const m = /^ {2}([A-Za-z0-9_.-]+):/.exec(line);
    if (m) keys.push(m[1]!);
  }
  return keys;
}

/** The lines of one service's block in the compose file. */
function serviceBlock(yaml: string, name: string): string {
  const lines = yaml.split('\n');
  const start = lines.findIndex((l) => l === `  ${name}:`);
  if (start < 0) return '';
  const end = lines.findIndex((l, i) => i > start && /^ {0,2}\S/.test(l));
  return lines.slice(start, end < 0 ? undefined : end).join('\n');
}

describe('grafana/dashboard.json', () => {
  test('is a dashboard whose every query names only metrics the engine exports', async () => {
    const dashboard = JSON.parse(await infra('grafana/dashboard.json')) as Dashboard;
    const exported = await exportedNames();

    const queries = [
      ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
      ...dashboard.templating.list.flatMap((v) => (v.definition ? [v.definition] : [])),
    ];
    const used = new Set(queries.flatMap(metricNames));
    expect(used.size).toBeGreaterThan(10);
    expect([...used].filter((name) => !exported.has(name))).toEqual([]);

    expect(dashboard.uid).toBe('switchboard-engine');
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    for (const p of dashboard.panels) {
      expect(p.gridPos.w).toBeGreaterThan(0);
      expect(p.gridPos.x + p.gridPos.w).toBeLessThanOrEqual(24);
      if (p.type !== 'row') expect(p.targets?.length).toBeGreaterThan(0);
    }
  });

  test('covers what the issue asks for', async () => {
    const text = await infra('grafana/dashboard.json');
    for (const needle of [
      'histogram_quantile(0.95, sum by (le, stage) (rate(switchboard_turn_stage_duration_ms_bucket',
      'sum by (tier) (rate(switchboard_turns_total',
      'switchboard_warmup_outcomes_total',
      'switchboard_fallbacks_total',
      'switchboard_reconciles_total',
      'switchboard_cost_usd_total',
      'switchboard_live_calls',
      'nodejs_eventloop_lag_p99_seconds',
      'switchboard_provider_errors_total',
      'switchboard_circuit_state',
    ]) {
      expect(text).toContain(needle);
    }
  });
});

describe('docker-compose.yml', () => {
  test('Postgres, Redis, two engine replicas from infra/Dockerfile and a balancer', async () => {
    const compose = await infra('docker-compose.yml');
    expect(compose).not.toMatch(/\t/);
    expect(childKeys(compose, 'services')).toEqual(
      expect.arrayContaining(['postgres', 'redis', 'engine-1', 'engine-2', 'lb']),
    );
    expect(serviceBlock(compose, 'postgres')).toMatch(/image: postgres:16\b/);
    expect(serviceBlock(compose, 'redis')).toMatch(/image: redis:7\b/);
    for (const engine of ['engine-1', 'engine-2'])
      expect(serviceBlock(compose, engine)).toMatch(/<<: \*engine/);
    expect(compose).toMatch(/^x-engine: &engine$/m);
    expect(compose).toMatch(/dockerfile: infra\/Dockerfile/);
    for (const variable of [
      'DATABASE_URL',
      'REDIS_URL',
      'ADMIN_TOKEN',
      'TWILIO_AUTH_TOKEN',
      'OPENAI_API_KEY',
    ])
      expect(compose).toMatch(new RegExp(`^ {4}${variable}: `, 'm'));
    expect(serviceBlock(compose, 'lb')).toMatch(/\.\/haproxy\.cfg:\/usr\/local\/etc\/haproxy\/haproxy\.cfg/);
    expect(serviceBlock(compose, 'prometheus')).toMatch(/\.\/prometheus\.yml:/);
    expect(serviceBlock(compose, 'grafana')).toMatch(/\.\/grafana\/dashboard\.json:/);
  });

  test('the Dockerfile runs the sources on node:24-slim', async () => {
    const dockerfile = await infra('Dockerfile');
    expect(dockerfile).toMatch(/^FROM node:24-slim$/m);
    expect(dockerfile).toMatch(/^CMD \["node", "src\/main\.ts"\]$/m);
    expect(dockerfile).toMatch(/health\/ready/);
  });
});

describe('prometheus.yml and haproxy.cfg', () => {
  test('Prometheus scrapes both replicas’ /metrics directly', async () => {
    const prometheus = await infra('prometheus.yml');
    expect(prometheus).toMatch(/^ {4}metrics_path: \/metrics$/m);
    expect(prometheus).toMatch(/^ {10}- engine-1:8080$/m);
    expect(prometheus).toMatch(/^ {10}- engine-2:8080$/m);
  });

  test('the balancer round-robins ready replicas and keeps WebSockets up for a whole call', async () => {
    const haproxy = await infra('haproxy.cfg');
    expect(haproxy).toMatch(/^\s+mode http$/m);
    expect(haproxy).toMatch(/^\s+balance roundrobin$/m);
    expect(haproxy).toMatch(/^\s+http-check send meth GET uri \/health\/ready$/m);
    expect(haproxy).toMatch(/^\s+timeout tunnel (\d+)h$/m);
    expect(haproxy).toMatch(/^\s+server engine-1 engine-1:8080 check$/m);
    expect(haproxy).toMatch(/^\s+server engine-2 engine-2:8080 check$/m);
  });
});
