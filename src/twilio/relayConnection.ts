/**
 * One ConversationRelay WebSocket: validates every frame, turns Twilio's messages into the call
 * actor's domain events, and the actor's decisions into `text` and `end` messages. A caller's bytes
 * can close this socket, never the process.
 */
import type { WebSocket } from 'ws';
import type { CallSession } from '../calls/callSession.ts';
import type { CallTransport, TurnTrace } from '../calls/callTransport.ts';
import type { Engine } from '../calls/engine.ts';
import type { Logger } from '../observability/logger.ts';
import type { RelayOutbound } from './relayProtocol.ts';
import { parseRelayFrame } from './relayProtocol.ts';
import type { StreamGrant } from './streamTokens.ts';

export interface RelayOptions {
  /** Close when setup has not arrived in this time. */
  readonly setupTimeoutMs?: number;
  /** Close with 1008 after this many invalid frames. */
  readonly maxInvalidFrames?: number;
  /** Send Switchboard's trace frames (the test client asks for them). */
  readonly trace?: boolean;
  /** Spoken-duration estimate, ms per character (ConversationRelay does not report playback end). */
  readonly playbackMsPerChar?: number;
}

export const CLOSE_NORMAL = 1000;

function toBuffers(data: ArrayBuffer | Buffer[]): Buffer[] {
  return Array.isArray(data) ? data : [Buffer.from(data)];
}
export const CLOSE_POLICY = 1008;

export function handleRelaySocket(
  ws: WebSocket,
  grant: StreamGrant,
  engine: Engine,
  baseLog: Logger,
  options: RelayOptions = {},
): void {
  const log = baseLog.child({ transport: 'relay', companyId: grant.companyId });
  const maxInvalid = options.maxInvalidFrames ?? 10;
  const msPerChar = options.playbackMsPerChar ?? 65;
  let session: CallSession | null = null;
  let invalid = 0;
  let closed = false;
  /** The reply Twilio is speaking; a new prompt means it finished (or was cut off by `interrupt`). */
  let playing: { timer: NodeJS.Timeout; done: () => void } | null = null;

  const send = (message: RelayOutbound | Record<string, unknown>) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(message));
  };

  const finishPlayback = () => {
    const p = playing;
    if (p === null) return;
    playing = null;
    clearTimeout(p.timer);
    p.done();
  };

  const transport: CallTransport = {
    speak(text, { interruptible, onDone }) {
      finishPlayback();
      send({ type: 'text', token: text, last: true, interruptible });
      const entry = {
        timer: setTimeout(
          () => {
            if (playing === entry) playing = null;
            onDone();
          },
          Math.max(400, text.length * msPerChar),
        ),
        done: onDone,
      };
      playing = entry;
      return () => {
        if (playing === entry) {
          playing = null;
          clearTimeout(entry.timer);
        }
      };
    },
    transfer(number, reason) {
      send({
        type: 'end',
        handoffData: JSON.stringify({ reasonCode: 'transfer', reason, transferTo: number ?? null }),
      });
    },
    hangup(reason) {
      send({ type: 'end', handoffData: JSON.stringify({ reasonCode: 'hangup', reason }) });
    },
    trace(t: TurnTrace) {
      if (options.trace) send({ type: 'switchboard.turn', ...t });
    },
    close(reason) {
      finishPlaybackQuietly();
      if (!closed && ws.readyState === ws.OPEN) ws.close(CLOSE_NORMAL, reason.slice(0, 100));
    },
  };

  const finishPlaybackQuietly = () => {
    if (playing) clearTimeout(playing.timer);
    playing = null;
  };

  const setupTimer = setTimeout(() => {
    if (session === null) {
      log.warn('no setup message in time; closing');
      ws.close(CLOSE_POLICY, 'setup timeout');
    }
  }, options.setupTimeoutMs ?? 5000);

  const rejectFrame = (reason: string) => {
    invalid += 1;
    log.warn({ reason, invalidFrames: invalid }, 'invalid relay frame');
    if (invalid >= maxInvalid) ws.close(CLOSE_POLICY, 'too many invalid frames');
  };

  ws.on('message', (data, isBinary) => {
    if (isBinary) return rejectFrame('binary frame');
    const parsed = parseRelayFrame(
      Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(toBuffers(data)).toString('utf8'),
    );
    if (!parsed.ok) return rejectFrame(parsed.reason);
    const m = parsed.message;
    if (m.type === 'error') {
      log.warn({ description: m.description?.slice(0, 200) }, 'twilio reported an error');
      return;
    }
    if (m.type === 'setup') {
      if (session !== null) return rejectFrame('second setup');
      if (grant.callSid !== null && m.callSid !== grant.callSid) {
        log.warn('setup callSid does not match the webhook that minted the token; closing');
        ws.close(CLOSE_POLICY, 'call mismatch');
        return;
      }
      clearTimeout(setupTimer);
      try {
        session = engine.openCall(grant.companyId, transport);
      } catch (err) {
        log.error({ err: { message: (err as Error).message } }, 'could not open call');
        transport.hangup('company-unavailable');
        ws.close(CLOSE_NORMAL, 'company unavailable');
        return;
      }
      session.send({ type: 'twilio.start', callSid: m.callSid });
      return;
    }
    if (session === null) return rejectFrame(`${m.type} before setup`);
    invalid = 0;
    switch (m.type) {
      case 'prompt':
        if (m.last === false) return; // partial transcript: the final one follows
        if (m.voicePrompt.trim() === '') return;
        // Twilio only sends a prompt once the caller has spoken: whatever we were saying is over.
        finishPlayback();
        session.send({ type: 'caller.transcriptFinal', text: m.voicePrompt });
        return;
      case 'interrupt':
        session.send({ type: 'caller.speechStarted' });
        return;
      case 'dtmf':
        session.send({ type: 'caller.dtmf', digit: m.digit });
        return;
    }
  });

  ws.on('close', () => {
    closed = true;
    clearTimeout(setupTimer);
    finishPlaybackQuietly();
    session?.stop('socket-closed');
  });
  ws.on('error', (err) => log.warn({ err: { message: err.message } }, 'relay socket error'));
}
