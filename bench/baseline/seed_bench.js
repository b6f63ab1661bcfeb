'use strict';
// The seed's queue design (WaQtor: Node, Bull 4, ioredis), reproduced to be measured beside
// waqtor in the same run. One Bull job per bulk request holds the whole recipient list; one
// processor loops over the recipients, renders {name}, calls the WhatsApp client (here a fake
// with no latency) and updates the job's progress after each recipient.
//
// usage: node seed_bench.js throughput|enqueue REDIS_URL '{"n": 10000, ...}'
// Prints one JSON line on stdout.
const { performance } = require('node:perf_hooks');
const Queue = require('bull');
const Redis = require('ioredis');

const [mode, redisUrl, argJson] = process.argv.slice(2);
const args = JSON.parse(argJson || '{}');
const TEMPLATE = 'Hi {name}';
const DEFAULT_NAME = 'Valued Customer';
const limitMs = (args.timeoutS || 300) * 1000;
setTimeout(() => {
  console.error(`baseline: gave up after ${limitMs} ms`);
  process.exit(2);
}, limitMs).unref();

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function recipients(n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = { phone: `9665${String(i).padStart(8, '0')}`, name: `Person ${i}` };
  }
  return out;
}

// A WhatsApp client that answers at once.
const client = {
  sent: 0,
  lastAt: 0,
  async sendMessage(chatId, text) {
    this.sent += 1;
    this.lastAt = performance.now();
    return { id: { _serialized: `fake-${this.sent}-${chatId.length + text.length}` } };
  },
};

// The seed's worker: the whole list in one job, progress after every recipient.
async function processBulk(job) {
  const { recipients: list, message } = job.data;
  let successful = 0;
  let failed = 0;
  for (let i = 0; i < list.length; i++) {
    const r = list[i];
    const text = (r.message || message).replace(/\{name\}/g, r.name || DEFAULT_NAME);
    try {
      await client.sendMessage(`${r.phone}@c.us`, text);
      successful += 1;
    } catch (err) {
      failed += 1;
    }
    await job.progress(Math.round(((i + 1) / list.length) * 100));
  }
  return { total: list.length, successful, failed };
}

async function commandCalls(redis) {
  const calls = {};
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line);
    if (m) calls[m[1]] = Number(m[2]);
  }
  return calls;
}

async function redisCpuSeconds(redis) {
  const info = await redis.info('cpu');
  const num = (name) => Number(new RegExp(`${name}:([\\d.]+)`).exec(info)[1]);
  return num('used_cpu_user') + num('used_cpu_sys');
}

async function usedMemory(redis) {
  const m = /used_memory:(\d+)/.exec(await redis.info('memory'));
  return Number(m[1]);
}

async function throughput(queue, stats) {
  const done = new Promise((resolve, reject) => {
    queue.on('completed', (_job, result) => resolve(result));
    queue.on('failed', (_job, err) => reject(err));
  });
  queue.process(processBulk);
  await sleep(500); // let the processor reach its blocking wait for jobs
  const data = { recipients: recipients(args.n), message: TEMPLATE };
  const redisCpu0 = await redisCpuSeconds(stats);
  const before = await commandCalls(stats);
  const cpu0 = process.cpuUsage();
  const started = performance.now();
  await queue.add(data);
  const addMs = performance.now() - started;
  const result = await done;
  const completedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  const after = await commandCalls(stats);
  const redisCpu = (await redisCpuSeconds(stats)) - redisCpu0;
  const calls = {};
  for (const [name, n] of Object.entries(after)) {
    const d = n - (before[name] || 0) - (name === 'info' ? 1 : 0); // our own INFO
    if (d) calls[name] = d;
  }
  return {
    n: args.n,
    sent: client.sent,
    result,
    addMs,
    seconds: (client.lastAt - started) / 1000,
    completedSeconds: completedMs / 1000,
    calls,
    cpuBusy: {
      node: (cpu.user + cpu.system) / 1000 / completedMs,
      redis: (redisCpu * 1000) / completedMs,
    },
  };
}

async function enqueue(queue, stats) {
  const out = {};
  for (const size of args.sizes) {
    const times = [];
    const memory = [];
    for (let run = 0; run < args.runs; run++) {
      const data = { recipients: recipients(size), message: TEMPLATE };
      const m0 = await usedMemory(stats);
      const started = performance.now();
      await queue.add(data);
      times.push(performance.now() - started);
      memory.push((await usedMemory(stats)) - m0);
    }
    out[size] = { timesMs: times, memoryBytes: memory };
  }
  return out;
}

async function main() {
  const queue = new Queue(`seed-bench-${process.pid}`, redisUrl);
  const stats = new Redis(redisUrl);
  try {
    await queue.isReady();
    const result = mode === 'throughput' ? await throughput(queue, stats) : await enqueue(queue, stats);
    console.log(JSON.stringify(result));
  } finally {
    await queue.close();
    stats.disconnect();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err && err.stack ? err.stack : String(err));
    process.exit(1);
  },
);
