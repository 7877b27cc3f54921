// Counters and timings the daemon exposes at /v1/metrics, in the
// Prometheus text exposition format.

export class Metrics {
  created = 0;
  restored = 0;
  checkpoints = 0;
  checkpointBytes = 0;
  checkpointSeconds = 0;
  migrationsOut = 0;
  migrationsIn = 0;
  migrationBytes = 0;
  migrationDowntimeSeconds = 0;
  requests = 0;

  checkpoint(bytes: number, ms: number): void {
    this.checkpoints++;
    this.checkpointBytes += bytes;
    this.checkpointSeconds += ms / 1000;
  }

  /** The text for a scrape; `gauges` are the values read at this moment. */
  render(gauges: { containers: Record<string, number>; tasks: number }): string {
    const out: string[] = [];
    const metric = (name: string, type: "counter" | "gauge", help: string, samples: [string, number][]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of samples) out.push(`${name}${labels} ${Number.isInteger(v) ? v : v.toFixed(6)}`);
    };
    metric("crvm_containers", "gauge", "Containers by status.", Object.entries(gauges.containers).map(([s, n]) => [`{status="${s}"}`, n]));
    metric("crvm_tasks", "gauge", "Live tasks in all containers.", [["", gauges.tasks]]);
    metric("crvm_containers_created_total", "counter", "Containers created.", [["", this.created]]);
    metric("crvm_containers_restored_total", "counter", "Containers restored from an image (restores and incoming migrations).", [["", this.restored]]);
    metric("crvm_checkpoints_total", "counter", "Checkpoints taken (API, periodic, migration).", [["", this.checkpoints]]);
    metric("crvm_checkpoint_bytes_total", "counter", "Bytes of the images written.", [["", this.checkpointBytes]]);
    metric("crvm_checkpoint_seconds_total", "counter", "Time spent taking checkpoints.", [["", this.checkpointSeconds]]);
    metric("crvm_migrations_total", "counter", "Migrations by direction.", [[`{direction="out"}`, this.migrationsOut], [`{direction="in"}`, this.migrationsIn]]);
    metric("crvm_migration_bytes_total", "counter", "Bytes sent by outgoing migrations.", [["", this.migrationBytes]]);
    metric("crvm_migration_downtime_seconds_total", "counter", "Freeze-to-thaw time of outgoing migrations.", [["", this.migrationDowntimeSeconds]]);
    metric("crvm_http_requests_total", "counter", "API requests served.", [["", this.requests]]);
    return out.join("\n") + "\n";
  }
}
