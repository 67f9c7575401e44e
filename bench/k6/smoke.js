// k6 smoke run against a running gateway: health, readiness, and a short load of chat completions.
// Not a benchmark: it proves a built image serves. With no provider configured the gateway answers
// from its built-in simulator, so this needs no upstream.
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e TOKEN=change-me-please bench/k6/smoke.js
/* global __ENV, __VU, __ITER -- k6 runtime globals */
import http from 'k6/http';
import { check, sleep } from 'k6';

const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8080';
const TOKEN = __ENV.TOKEN || '';
const MODEL = __ENV.MODEL || 'smoke-test-model';

export const options = {
  vus: 5,
  duration: __ENV.DURATION || '20s',
  thresholds: {
    http_req_failed: ['rate<0.01'],
    http_req_duration: ['p(95)<2000'],
    checks: ['rate>0.99'],
  },
};

export function setup() {
  const health = http.get(`${BASE_URL}/health`);
  check(health, { 'GET /health is 200': (r) => r.status === 200 });
  const ready = http.get(`${BASE_URL}/ready`);
  check(ready, { 'GET /ready is 200': (r) => r.status === 200 });
}

export default function () {
  const res = http.post(
    `${BASE_URL}/v1/chat/completions`,
    JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: `smoke test ${__VU}-${__ITER}` }],
      max_tokens: 32,
    }),
    { headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` } },
  );
  check(res, {
    'chat completion is 200': (r) => r.status === 200,
    'has a choice': (r) => {
      try {
        return r.json('choices.0.message.content') !== undefined;
      } catch (_err) {
        return false;
      }
    },
    'carries a request id': (r) => Boolean(r.headers['X-Request-Id']),
  });
  sleep(0.2);
}
