/** Prometheus metrics (own registry): queue depth, jobs by status, job runtime, HTTP responses. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class ServerMetrics {
  readonly registry = new Registry();
  readonly queueDepth: Gauge<'model'>;
  readonly jobsRunning: Gauge<'model'>;
  readonly jobs: Counter<'model' | 'status'>;
  readonly runtime: Histogram<'model'>;
  readonly responses: Counter<'route' | 'code'>;
  readonly webhooks: Counter<'outcome'>;

  constructor(opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    this.queueDepth = new Gauge({ name: 'flux_queue_depth', help: 'Jobs waiting (not running), per model', labelNames: ['model'], registers });
    this.jobsRunning = new Gauge({ name: 'flux_jobs_running', help: 'Jobs running, per model', labelNames: ['model'], registers });
    this.jobs = new Counter({ name: 'flux_jobs_total', help: 'Jobs entering each status (queued: every accepted job; running; then succeeded, failed or cancelled)', labelNames: ['model', 'status'], registers });
    this.runtime = new Histogram({
      name: 'flux_job_runtime_seconds',
      help: 'Generation time of succeeded jobs (from start to result)',
      labelNames: ['model'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200],
      registers,
    });
    this.responses = new Counter({ name: 'flux_http_responses_total', help: 'HTTP responses by route and status code', labelNames: ['route', 'code'], registers });
    this.webhooks = new Counter({ name: 'flux_webhooks_total', help: 'Webhook deliveries by outcome', labelNames: ['outcome'], registers });
    if (opts.defaultMetrics) collectDefaultMetrics({ register: this.registry });
  }
}
