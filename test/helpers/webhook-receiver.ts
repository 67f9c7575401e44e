// A webhook receiver for tests: a real HTTP server on loopback that records every request (headers,
// body, the status it answered) and answers with `answer` (204 unless a test sets another).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';

export interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  status: number;
}

export class WebhookReceiver {
  readonly got: Received[] = [];
  answer = 204;
  url = '';
  private server: Server | undefined;

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const status = this.answer;
        this.got.push({ headers: req.headers, body, status });
        res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => this.server?.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}/hook`;
    return this;
  }

  /** The deliveries whose batch object (`data.id`) is `batchId`. */
  for(batchId: string): Received[] {
    return this.got.filter((g) => (JSON.parse(g.body) as { data: { id: string } }).data.id === batchId);
  }

  async close(): Promise<void> {
    await new Promise((r) => (this.server ? this.server.close(r) : r(undefined)));
  }
}
