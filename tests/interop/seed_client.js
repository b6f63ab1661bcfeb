// The seed dashboard's own HTTP client, replayed against waqtor: the calls of `queueService`
// and `messageService.sendBulk` / `sendBulkWithVariables` from WaQtor's
// dashboard/src/api/services.js, with the axios instance of dashboard/src/api/client.js (same
// base URL handling, same default headers: `x-api-key` and `Content-Type: application/json`;
// outside a browser it adds no Authorization header). URLs, bodies and headers are the
// seed's, including `getJobStatus`, which calls /queue/jobs/{id} without /api (a 404 on the
// seed's own server too).
//   node seed_client.js <base url> <api key> '<JSON list of [call, ...args]>'
// Prints one JSON line: [{call, status, body}] in order (an HTTP error is recorded, not thrown).
'use strict';
const axios = require('axios');

const [baseURL, apiKey, planJson] = process.argv.slice(2);

// dashboard/src/api/client.js
const api = axios.create({
  baseURL,
  headers: { 'x-api-key': apiKey, 'Content-Type': 'application/json' },
  timeout: 30000,
});

// dashboard/src/api/services.js (the queue and bulk-send calls), verbatim but for logging.
const messageService = {
  sendBulk: async (recipients, message) => {
    const response = await api.post('/api/messages/send-bulk', { recipients, message });
    return response;
  },
  // With no signature saved in the browser's localStorage the seed sends 'WaQtor Team'.
  sendBulkWithVariables: async (recipients, messageTemplate) => {
    const savedSignature = 'WaQtor Team';
    const processedRecipients = recipients.map((recipient) => {
      let personalizedMessage = messageTemplate;
      if (recipient.variables) {
        Object.keys(recipient.variables).forEach((key) => {
          const placeholder = `{${key}}`;
          const value = recipient.variables[key] || '';
          personalizedMessage = personalizedMessage.replace(new RegExp(placeholder, 'g'), value);
        });
      }
      return {
        phone: recipient.phone,
        message: personalizedMessage,
        signature: savedSignature,
        ...recipient.variables,
      };
    });
    return api.post('/api/messages/send-bulk', { recipients: processedRecipients });
  },
};

const queueService = {
  getStats: async () => api.get('/api/queue/stats'),
  getJobs: async (limit = 50) => api.get('/api/queue/jobs', { params: { limit } }),
  getJobStatus: async (jobId) => api.get(`/queue/jobs/${jobId}`),
  pause: async () => api.post('/api/queue/pause'),
  resume: async () => api.post('/api/queue/resume'),
  clean: async (grace = 24 * 60 * 60 * 1000) => api.post('/api/queue/clean', { grace }),
  getHealth: async () => api.get('/api/queue/health'),
};

const calls = {
  sendBulk: messageService.sendBulk,
  sendBulkWithVariables: messageService.sendBulkWithVariables,
  ...queueService,
};

(async () => {
  const out = [];
  for (const [name, ...args] of JSON.parse(planJson)) {
    try {
      const response = await calls[name](...args);
      out.push({ call: name, status: response.status, body: response.data });
    } catch (error) {
      if (!error.response) throw error;
      out.push({ call: name, status: error.response.status, body: error.response.data });
    }
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((error) => {
  process.stderr.write(String(error && error.stack ? error.stack : error) + '\n');
  process.exit(1);
});
