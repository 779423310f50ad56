/**
 * `npm run fakes`: what it prints, that the printed environment is a valid engine configuration,
 * and that a taken port is a clear error that leaves nothing listening. (That the engine runs
 * against these fakes is test/cli/mediaCall.int.test.ts.)
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import path from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { loadEnv } from '../../src/config/env.ts';
import { listenLocal } from './listen.ts';
import { engineCommand, startDevFakes } from './serveFakes.ts';
import type { DevFakes } from './serveFakes.ts';

const script = path.resolve('test/fakes/serveFakes.ts');
const servers: Server[] = [];
let fakes: DevFakes | null = null;

afterEach(async () => {
  await fakes?.close();
  fakes = null;
  for (const s of servers.splice(0)) await new Promise((resolve) => s.close(resolve));
});

/** A port that is free, with the one after it held by another server. */
async function portBeforeATakenOne(): Promise<number> {
  for (;;) {
    const taken = createServer();
    const port = await listenLocal(taken);
    const probe = createServer();
    const free = await listenLocal(probe, port - 1).then(
      () => true,
      () => false,
    );
    await new Promise((resolve) => probe.close(resolve));
    if (free) {
      servers.push(taken);
      return port - 1;
    }
    await new Promise((resolve) => taken.close(resolve));
  }
}

describe('startDevFakes', () => {
  test('a taken port fails with a clear error naming it, and the fakes already started are closed', async () => {
    const base = await portBeforeATakenOne();
    const failure = startDevFakes({ portBase: base });
    await expect(failure).rejects.toMatchObject({
      code: 'ERR_PORT_IN_USE',
      message: expect.stringContaining(
        `port ${base + 1} (the fake speech endpoint) is already in use`,
      ) as string,
    });
    await expect(failure).rejects.toThrow(/--port-base N/);
    // The transcriber that did start on `base` let go of it.
    const again = createServer();
    await listenLocal(again, base);
    servers.push(again);
  });

  test('the environment points the engine at the three fakes and is a valid configuration', async () => {
    fakes = await startDevFakes({ portBase: 0, transcripts: ['one', 'two'] });
    const env = loadEnv({ ...fakes.env });
    expect(env.speech?.stt).toMatchObject({ provider: 'openai-realtime', baseURL: fakes.stt.baseURL });
    expect(env.speech?.tts).toMatchObject({ provider: 'openai', baseURL: fakes.tts.baseURL });
    expect(env.anthropic?.baseURL).toBe(fakes.llm.baseURL);
    // No OpenAI key: Tier 2 keeps its local embedder.
    expect(env.openai).toBeUndefined();
    expect(engineCommand({ A: 'http://x:1/v1', B: "it's" })).toBe(`A=http://x:1/v1 B='it'\\''s' npm start`);
    const other = loadEnv({ ...fakes.transcriptionsEnv });
    expect(other.speech?.stt).toMatchObject({
      provider: 'openai-transcriptions',
      baseURL: fakes.tts.baseURL,
    });
    expect(other.speech?.tts).toMatchObject({ provider: 'openai', baseURL: fakes.tts.baseURL });
  });
});

describe('npm run fakes', () => {
  function start(args: string[]) {
    const child = spawn(process.execPath, [script, ...args], { env: { PATH: process.env['PATH'] ?? '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    return {
      child,
      exited,
      out: () => stdout,
      err: () => stderr,
      async waitFor(pattern: RegExp): Promise<RegExpExecArray> {
        for (let i = 0; i < 200; i++) {
          const match = pattern.exec(stdout);
          if (match) return match;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        throw new Error(`no ${String(pattern)} in:\n${stdout}${stderr}`);
      },
    };
  }

  test('prints what the fakes do and the engine command, and stops on Ctrl-C', async () => {
    const run = start(['--port-base', '0', '--transcript', 'How much do you charge?', '--transcript', 'Bye']);
    const [line] = await run.waitFor(/^ {2}STT_PROVIDER=.* npm start$/m);
    expect(run.out()).toContain(
      'The fake transcribers do not recognise speech: each answers utterances with the --transcript lines in order (2 queued), then "hello there".',
    );
    expect(run.out()).toMatch(/The fake speech endpoint does not speak: every reply is a 440 Hz tone/);
    const env = Object.fromEntries(
      line
        .trim()
        .replace(/ npm start$/, '')
        .split(' ')
        .map((kv) => kv.split('=', 2) as [string, string]),
    );
    expect(Object.keys(env)).toEqual([
      'STT_PROVIDER',
      'STT_BASE_URL',
      'STT_API_KEY',
      'TTS_PROVIDER',
      'TTS_BASE_URL',
      'TTS_API_KEY',
      'ANTHROPIC_API_KEY',
      'ANTHROPIC_BASE_URL',
    ]);
    expect(loadEnv(env).speech).toBeDefined();
    // The other STT mode's command, against the speech fake's transcriptions endpoint.
    const [other] = await run.waitFor(/^ {2}STT_PROVIDER=openai-transcriptions .* npm start$/m);
    expect(other).toContain(`STT_BASE_URL=${env['TTS_BASE_URL']} `);
    // The printed speech endpoint answers.
    const speech = await fetch(`${env['TTS_BASE_URL']}/audio/speech`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'gpt-4o-mini-tts',
        voice: 'alloy',
        input: 'Hello there.',
        response_format: 'pcm',
      }),
    });
    expect(speech.status).toBe(200);
    // 12 characters at 65 ms each, 24 kHz PCM16.
    expect((await speech.arrayBuffer()).byteLength).toBe(12 * 65 * 48);
    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(run.out()).toMatch(
      /fakes stopped: 0 transcription sessions, 0 transcription requests, 1 speech requests/,
    );
  });

  test('bad arguments exit 2 with the usage; a taken port exits 1 saying which', async () => {
    const bad = start(['--port-base', '80']);
    expect(await bad.exited).toBe(2);
    expect(bad.err()).toMatch(/--port-base must be 0 or from 1024: 80\nusage: npm run fakes/);
    const unknown = start(['--transcripts', 'x']);
    expect(await unknown.exited).toBe(2);
    expect(unknown.err()).toMatch(/^unknown option --transcripts\nusage: npm run fakes/);

    const base = await portBeforeATakenOne();
    const taken = start(['--port-base', String(base)]);
    expect(await taken.exited).toBe(1);
    expect(taken.err()).toContain(`port ${base + 1} (the fake speech endpoint) is already in use`);
  });
});
