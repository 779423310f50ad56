-- Media Streams calls: audio billed by speech-to-text and text-to-speech cost events, and what the
-- caller actually heard of each reply (a barge-in cuts it short).
ALTER TABLE cost_events ADD COLUMN audio_ms integer;
ALTER TABLE turns ADD COLUMN heard text;
ALTER TABLE turns ADD COLUMN interrupted boolean;
