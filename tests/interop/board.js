// Bull Board mounted on waqtor's queue, as a user would set it up (docs/interop.md):
// @bull-board/api with BullMQAdapter over Node BullMQ, served by @bull-board/express.
//   node board.js <redis url> <queue name> [<prefix>]   (prefix: "bull", or "{tag}" with a hash tag)
// Serves two boards on 127.0.0.1 (a free port, printed as {"port": N} on stdout):
//   /admin/bull     full access, the board's own HTTP API under /admin/bull/api/...
//   /admin/bull-ro  read-only mode (every action refused)
'use strict';
const express = require('express');
const IORedis = require('ioredis');
const { Queue } = require('bullmq');
const { createBullBoard } = require('@bull-board/api');
const { BullMQAdapter } = require('@bull-board/api/bullMQAdapter');
const { ExpressAdapter } = require('@bull-board/express');

const [redisUrl, queueName, prefix] = process.argv.slice(2);
const connection = new IORedis(redisUrl, { maxRetriesPerRequest: null });
const queue = new Queue(queueName, { connection, prefix: prefix || 'bull' });

function board(basePath, readOnlyMode) {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(basePath);
  createBullBoard({
    queues: [new BullMQAdapter(queue, { readOnlyMode, allowRetries: !readOnlyMode })],
    serverAdapter,
  });
  return serverAdapter.getRouter();
}

const app = express();
app.use('/admin/bull', board('/admin/bull', false));
app.use('/admin/bull-ro', board('/admin/bull-ro', true));
const server = app.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
function stop() {
  server.close();
  queue.close().finally(() => connection.quit().finally(() => process.exit(0)));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
