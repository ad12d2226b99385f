export * from './server.ts';
export * from './generator.ts';
export * from './job-queue.ts';
export * from './webhook.ts';
export * from './auth.ts';
export * from './metrics.ts';
export * from './responses.ts';
