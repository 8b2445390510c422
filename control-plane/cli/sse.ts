import type { Readable } from 'node:stream';

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** Parses a text/event-stream into events (comments and keep-alives skipped). */
export async function* readSse(stream: Readable): AsyncGenerator<SseEvent> {
  let buf = '';
  for await (const chunk of stream) {
    buf += chunk.toString('utf8');
    let idx: number;
    while ((idx = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, idx);
      buf = buf.slice(idx + 2);
      const ev: SseEvent = { event: 'message', data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') ev.event = value;
        else if (field === 'data') data.push(value);
        else if (field === 'id') ev.id = value;
      }
      if (data.length === 0 && ev.event === 'message') continue;
      ev.data = data.join('\n');
      yield ev;
    }
  }
}
