// Static embedder throughput on one core: short prompts embedded per second (table already cached).
// Usage: tsx bench/cache-embed.ts [prompts=20000]
import { StaticEmbedder } from '../src/cache/embedders/static.js';

const N = Number(process.argv[2] ?? 20_000);
const subjects = ['password', 'invoice', 'the weather in Paris', 'a python list', 'my router', 'sourdough bread', 'the stock market', 'a flat tire'];
const frames = ['How do I reset {}?', 'What is {} and why does it matter?', 'Explain {} to a beginner.', 'Can you help me with {} today?'];
const prompts = Array.from({ length: N }, (_, i) => `${(frames[i % frames.length] as string).replace('{}', subjects[(i * 7) % subjects.length] as string)} #${i}`);

let t = performance.now();
const e = await StaticEmbedder.create();
const loadMs = performance.now() - t;
await e.embed(prompts.slice(0, 1000)); // warm up the JIT
t = performance.now();
for (let i = 0; i < prompts.length; i += 32) await e.embed(prompts.slice(i, i + 32));
const s = (performance.now() - t) / 1000;
console.log(JSON.stringify({ bench: 'cache-embed', embedder: e.id, prompts: N, loadMs: Math.round(loadMs), seconds: +s.toFixed(2), promptsPerSecond: Math.round(N / s) }));
