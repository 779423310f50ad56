/**
 * The engine under the audio bench, in its own process (started with --expose-gc, pinned to its
 * own CPU): the real app through startApp on port 0, configured for Media Streams (OpenAI realtime
 * transcription in, OpenAI speech out) with every OpenAI call going to the bench's fake providers,
 * a temporary data folder, no database, the local embedder, logs at the given level to /dev/null.
 * Configuration comes as JSON in BENCH_AUDIO_ENGINE_CONFIG.
 */
import { pino } from 'pino';
import { startApp } from '../../app.ts';
import { loadEnv } from '../../config/env.ts';
import { createLogger } from '../../observability/logger.ts';
import { createLocalEmbedder } from '../../routing/localEmbedder.ts';
import { serveProbe } from './serverProbe.ts';

/** Configuration handed to the engine child. */
export interface MediaEngineConfig {
  readonly dataDir: string;
  /** The fake providers' router: realtime transcription, speech and chat behind one URL. */
  readonly openaiBaseURL: string;
  readonly logLevel: string;
}

const config = JSON.parse(process.env['BENCH_AUDIO_ENGINE_CONFIG'] ?? '{}') as MediaEngineConfig;
const log = createLogger(config.logLevel, pino.destination({ dest: '/dev/null', sync: true }));
const app = await startApp(
  loadEnv({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: config.dataDir,
    LOG_LEVEL: config.logLevel,
    STT_PROVIDER: 'openai-realtime',
    TTS_PROVIDER: 'openai',
    OPENAI_API_KEY: 'test',
    OPENAI_BASE_URL: config.openaiBaseURL,
  }),
  { log, db: null, embedder: createLocalEmbedder() },
);
serveProbe({ url: app.server.url, liveCalls: () => app.engine.liveCalls, close: () => app.close() });
