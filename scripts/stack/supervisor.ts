// Keeps each process of the local stack running: one that exits while the
// stack is up is started again, with a growing pause, as a process manager
// would. A part that keeps failing to start stops the stack.
import type { RunningProcess } from "@wharf/testkit";

export interface Started {
  process: RunningProcess;
  stop(): Promise<void>;
}

export interface SupervisorEvents {
  say(text: string): void;
  /** After every (re)start, e.g. to rewrite the stack file with the new pid. */
  started(): void;
  /** A part could not be started again; the stack should stop. */
  gaveUp(name: string, error: Error): void;
}

const maxAttempts = 5;

export class Supervised {
  current: Started | undefined;
  private stopping = false;
  private restarting: Promise<void> | undefined;
  private wake: () => void = () => undefined;

  constructor(
    readonly name: string,
    private readonly launch: () => Promise<Started>,
    private readonly events: SupervisorEvents,
  ) {}

  async start(): Promise<void> {
    this.current = await this.launch();
    this.watch(this.current);
    this.events.started();
  }

  private watch(started: Started): void {
    void started.process.exited.then(async (code) => {
      // On Ctrl-C the terminal signals every process of the group at once:
      // give the stack's own SIGINT handler a moment to mark it stopping.
      await new Promise((resolve) => setTimeout(resolve, 250));
      if (this.stopping || started !== this.current) return;
      this.events.say(`${this.name} exited (code ${code ?? "signal"}); starting it again`);
      this.restarting = started
        .stop()
        .catch(() => undefined)
        .then(() => this.restart());
    });
  }

  private async restart(): Promise<void> {
    for (let attempt = 1; attempt <= maxAttempts && !this.stopping; attempt++) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(1000 * 2 ** (attempt - 1), 15_000));
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      if (this.stopping) return;
      try {
        await this.start();
        // The stack began stopping while this one was starting: stop it too.
        if (this.stopping) {
          await this.current?.stop();
          return;
        }
        this.events.say(`${this.name} is back (pid ${this.current?.process.child.pid})`);
        return;
      } catch (error) {
        this.events.say(`${this.name} did not start (attempt ${attempt}/${maxAttempts}): ${(error as Error).message.split("\n")[0]}`);
        if (attempt === maxAttempts) this.events.gaveUp(this.name, error as Error);
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    // A restart under way ends first (its pause cut short), so nothing it starts outlives the stack.
    this.wake();
    await this.restarting;
    await this.current?.stop();
  }
}
