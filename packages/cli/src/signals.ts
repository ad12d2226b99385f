/**
 * Shutdown signals for the long-running commands (`serve`, `worker`): the first SIGINT or SIGTERM drains, a second
 * one exits at once.
 *
 * Launchers deliver one keypress twice: Ctrl-C in a terminal sends SIGINT to the whole foreground process group,
 * and `pnpm` forwards it to its child as well, so the server gets two SIGINTs within microseconds. A repeat within
 * `REPEAT_WINDOW_MS` is therefore the same request; a second Ctrl-C from a person comes later and exits.
 *
 * A launcher that dies without forwarding anything (SIGKILL to pnpm, a closed terminal) leaves this process to a
 * new parent: that is taken as a SIGTERM too, so an orphaned server never keeps serving.
 */
export const REPEAT_WINDOW_MS = 1000;

export function onShutdownSignals(handlers: { drain(signal: string): void; exitNow(signal: string): void }): void {
  let first: number | undefined;
  const handle = (signal: string) => {
    const t = performance.now();
    if (first === undefined) {
      first = t;
      handlers.drain(signal);
    } else if (t - first >= REPEAT_WINDOW_MS) {
      handlers.exitNow(signal);
    }
  };
  process.on('SIGINT', () => handle('SIGINT'));
  process.on('SIGTERM', () => handle('SIGTERM'));
  const parent = process.ppid;
  const watch = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(watch);
      handle('parent exited');
    }
  }, 500);
  watch.unref();
}
