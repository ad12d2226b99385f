/**
 * What `flux worker` needs, without the HTTP server: the Redis worker and the in-process generator. (The package's
 * main entry also loads Fastify and the routes; a worker process imports this one instead.)
 */
export { startRedisWorker, type RedisWorkerHandle, type RedisWorkerOptions } from './redis-worker.ts';
export { PipelineGenerator, type Generator } from './generator.ts';
