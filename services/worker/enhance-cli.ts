// `npm run enhance -- --user U --model M --image URL [--resolution 4k] [--request-id R]`:
// enqueues one enhancement and prints its outcome as JSON. REDIS_URL and WORKER_QUEUE_PREFIX
// as for the worker.
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { openEnhancementProducer } from './producer.js';

const { values } = parseArgs({
  options: {
    user: { type: 'string' },
    model: { type: 'string', default: 'wavespeed-ai/image-upscaler' },
    image: { type: 'string' },
    resolution: { type: 'string', default: '4k' },
    'request-id': { type: 'string' },
    'timeout-ms': { type: 'string', default: '300000' },
  },
});
if (!values.user || !values.image) {
  console.error('usage: npm run enhance -- --user USER --model MODEL --image URL [--resolution 4k] [--request-id ID]');
  process.exit(2);
}
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = process.env.WORKER_QUEUE_PREFIX ?? 'bull';
const producer = await openEnhancementProducer(redisUrl, prefix);
try {
  const outcome = await producer.run(
    {
      requestId: values['request-id'] ?? randomUUID(),
      userId: values.user,
      model: values.model,
      input: values.model === 'wavespeed-ai/image-upscaler' ? { image: values.image, target_resolution: values.resolution } : { image: values.image },
    },
    Number(values['timeout-ms']),
  );
  console.log(JSON.stringify(outcome, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2));
  process.exitCode = outcome.ok ? 0 : 1;
} finally {
  await producer.close();
}
