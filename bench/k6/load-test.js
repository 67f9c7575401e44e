// k6 version of seed 001's `k6 run tests/load-test.js` and seed 002's load test: ramp to 1,000
// virtual users, hold, ramp down; every request must pass its checks. Thresholds are the seeds'
// targets: P95 under 2 s and at least 99.9% of checks passing (so at least 99.9% success).
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e TOKEN=change-me-please bench/k6/load-test.js
// Options (-e NAME=value):
//   VUS (1000)  RAMP (30s)  HOLD (1m)  MODEL (bench)  STREAM (0|1: SSE, checked for its final [DONE])
//   ENDPOINT (chat: POST /v1/chat/completions | infer: seed 001's POST /v1/infer)
//   THINK_MS (0: each user sends its next request as soon as the last one finished)
/* global __ENV, __VU, __ITER -- k6 runtime globals */
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const TOKEN = __ENV.TOKEN || '';
const MODEL = __ENV.MODEL || 'bench';
const VUS = Number(__ENV.VUS || 1000);
const STREAM = __ENV.STREAM === '1';
const ENDPOINT = __ENV.ENDPOINT || 'chat';
const THINK_MS = Number(__ENV.THINK_MS || 0);

export const options = {
  scenarios: {
    ramp_to_thousand: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: __ENV.RAMP || '30s', target: VUS },
        { duration: __ENV.HOLD || '1m', target: VUS },
        { duration: '15s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: {
    http_req_duration: ['p(95)<2000'],
    http_req_failed: ['rate<0.001'],
    checks: ['rate>=0.999'],
  },
};

export function setup() {
  const ready = http.get(`${BASE_URL}/ready`);
  if (ready.status !== 200) throw new Error(`${BASE_URL}/ready answered ${ready.status}: start the gateway first`);
}

function requestBody() {
  const prompt = `Load test from user ${__VU}, request ${__ITER}: say something short.`;
  if (ENDPOINT === 'infer') {
    return { path: STREAM ? '/v1/infer/stream' : '/v1/infer', body: { model: MODEL, prompt, params: { max_new_tokens: 32 } } };
  }
  return { path: '/v1/chat/completions', body: { model: MODEL, stream: STREAM, max_tokens: 32, messages: [{ role: 'user', content: prompt }] } };
}

export default function () {
  const { path, body } = requestBody();
  const headers = { 'content-type': 'application/json' };
  if (TOKEN) headers.authorization = `Bearer ${TOKEN}`;
  if (STREAM) headers.accept = 'text/event-stream';
  const res = http.post(`${BASE_URL}${path}`, JSON.stringify(body), { headers, timeout: '30s' });
  check(res, {
    'status is 200': (r) => r.status === 200,
    'has an answer': (r) => {
      // A finished stream: OpenAI's `data: [DONE]`, or the seed dialect's closing `event: done`.
      if (STREAM) return typeof r.body === 'string' && (ENDPOINT === 'infer' ? r.body.includes('event: done') : r.body.trimEnd().endsWith('data: [DONE]'));
      try {
        return ENDPOINT === 'infer' ? typeof r.json('output') === 'string' : typeof r.json('choices.0.message.content') === 'string';
      } catch (_err) {
        return false;
      }
    },
    'carries a request id': (r) => Boolean(r.headers['X-Request-Id']),
  });
  if (THINK_MS > 0) sleep(THINK_MS / 1000);
}
