/**
 * The fake LLM provider for `npm run bench`, in its own process so its work is not counted in the
 * engine's. It is the OpenAI-compatible fake the tests use (test/fakes — acceptable here: the bench
 * is a dev tool, never a production path), with replies chosen per request:
 *
 * - capture and detect (JSON mode): what the engine's own rule-based capture and detect say about
 *   the utterance, after a fixed latency — so the conversation goes as it would with rules, only as
 *   slow as an LLM;
 * - Tier 3 and warmup (plain text): a fixed answer, first token after a fixed latency, then one
 *   word-token per interval.
 */
import { readFile } from 'node:fs/promises';
import { parseCompany, parseTemplate } from '../config/companyConfig.ts';
import { createCompanyRouter } from '../routing/companyRouter.ts';
import { createLocalEmbedder } from '../routing/localEmbedder.ts';
import { startFakeOpenAiServer } from '../../test/fakes/fakeOpenAiServer.ts';
import type { FakeReply, FakeRequest } from '../../test/fakes/fakeOpenAiServer.ts';
import type { FakeChildConfig } from './protocol.ts';
import { serveFakeChild } from './protocol.ts';
import { TIER3_ANSWER } from './scenario.ts';

const config = JSON.parse(process.env['BENCH_FAKE_CONFIG'] ?? '{}') as FakeChildConfig;

const company = parseCompany(JSON.parse(await readFile(config.companyFile, 'utf8')), config.companyFile);
const template = parseTemplate(JSON.parse(await readFile(config.templateFile, 'utf8')), config.templateFile);
const router = await createCompanyRouter({ company, templates: [template], embedder: createLocalEmbedder() });

function messages(request: FakeRequest): { system: string; user: string } {
  const list = Array.isArray(request.body['messages']) ? (request.body['messages'] as unknown[]) : [];
  const text = (role: string) =>
    list
      .filter((m): m is { role: string; content: string } => {
        const r = m as { role?: unknown; content?: unknown };
        return r.role === role && typeof r.content === 'string';
      })
      .map((m) => m.content);
  return { system: text('system').join('\n'), user: text('user').at(-1) ?? '' };
}

/** "utterance\n(known: a=1, b=2)" → the utterance and the known slots. */
function parseDetectUser(user: string): { utterance: string; slots: Record<string, string> } {
  const [utterance = '', known] = user.split('\n(known: ');
  const slots: Record<string, string> = {};
  for (const pair of (known ?? '').replace(/\)$/, '').split(', ')) {
    const eq = pair.indexOf('=');
    if (eq > 0) slots[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return { utterance, slots };
}

function reply(request: FakeRequest): FakeReply {
  const format = request.body['response_format'] as { type?: unknown } | undefined;
  if (format?.type === 'json_object') {
    const { system, user } = messages(request);
    const timing = { firstTokenDelayMs: config.understandingMs, tokenIntervalMs: 0 };
    if (system.startsWith('Extract details')) {
      const captured = router.capture(user, {});
      return { type: 'text', text: JSON.stringify({ slots: captured.slots }), ...timing };
    }
    const { utterance, slots } = parseDetectUser(user);
    const s = router.detect(utterance, slots);
    return {
      type: 'text',
      text: JSON.stringify({ category: s.category, confidence: s.confidence, ...s.flags }),
      ...timing,
    };
  }
  return {
    type: 'text',
    text: TIER3_ANSWER,
    firstTokenDelayMs: config.firstTokenMs,
    tokenIntervalMs: config.tokenIntervalMs,
  };
}

const server = await startFakeOpenAiServer({ defaultReply: reply });

// The fake records every request; keep that record short so its heap (and GC) stays small.
let requestCount = 0;
const trim = setInterval(() => {
  const log = server.requests as FakeRequest[];
  requestCount += log.length;
  log.length = 0;
}, 1000);
trim.unref();

serveFakeChild({
  url: server.baseURL,
  takeCount: () => {
    const requests = requestCount + server.requests.length;
    requestCount = -server.requests.length;
    return requests;
  },
  close: () => server.close(),
});
