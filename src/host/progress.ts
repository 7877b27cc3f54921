// A progress bar on stderr, drawn only when stderr is a terminal.
import process from "node:process";
import * as tty from "node:tty";
import cliProgress from "cli-progress";

export interface Progress {
  update(stage: string, done: number, total: number): void;
  stop(): void;
}

/** A bar labelled `label`; a no-op when stderr is not a terminal. */
export function progressBar(label: string): Progress {
  if (!tty.isatty(2)) return { update() {}, stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {percentage}% {stage}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      synchronousUpdate: true,
      fps: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(stage, done, total) {
      if (!started) {
        bar.start(Math.max(1, total), done, { stage });
        started = true;
      }
      bar.setTotal(Math.max(1, total));
      bar.update(done, { stage });
    },
    stop() {
      if (started) bar.stop();
    },
  };
}
