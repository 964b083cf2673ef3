import { Gauge, type Registry } from 'prom-client';

import { MetricName } from './names.js';

export const TIDEMARK_VERSION = '0.1.0';

export function registerBuildInfo(registry: Registry, component: 'agent' | 'server'): void {
  const g = new Gauge({ name: MetricName.buildInfo, help: 'Build information; always 1.', labelNames: ['component', 'version'], registers: [registry] });
  g.set({ component, version: TIDEMARK_VERSION }, 1);
}
