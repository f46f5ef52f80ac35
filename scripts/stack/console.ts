// The terminal of `npm start`: every process's output prefixed with its name
// in its own color, and a progress line kept at the bottom while parts start.
import { createWriteStream, type WriteStream } from "node:fs";
import { join } from "node:path";
import type { LineSink } from "@wharf/testkit";

const palette = [36, 33, 35, 32, 34, 96, 93, 95, 92, 94];

/**
 * Lines that only matter when something is being debugged: klog's info lines
 * and kube-apiserver's start-up notices (hundreds: its gRPC dialer's warnings
 * while channels are set up and cancelled, one per API version it skips), and
 * Envoy's info/debug lines. The log files keep them.
 */
const chatter = [
  /^I\d{4} /,
  /^W\d{4} .* logging\.go:\d+\] \[core\]/,
  /^W\d{4} .*\] Skipping API \S+ because it has no resources/,
  /^E\d{4} .*\] The manifest file is empty, ignoring/,
  /\]\[(info|debug|trace)\]\[/,
];
function isChatter(line: string): boolean {
  return chatter.some((pattern) => pattern.test(line));
}

export class StackConsole {
  private readonly color = process.stdout.isTTY && process.env.NO_COLOR === undefined;
  private readonly tty = process.stdout.isTTY === true;
  private progress: string | undefined;
  private ticker: NodeJS.Timeout | undefined;
  private nextColor = 0;
  private readonly width: number;
  private readonly files: WriteStream[] = [];
  private readonly sinks = new Map<string, LineSink>();

  constructor(
    private readonly logDir: string,
    names: string[],
    private readonly verbose: boolean,
  ) {
    this.width = Math.max(...names.map((name) => name.length), 5);
  }

  private paint(code: number, text: string): string {
    return this.color ? `\x1b[${code}m${text}\x1b[0m` : text;
  }

  private write(text: string): void {
    if (this.tty && this.progress !== undefined) {
      process.stdout.write(`\r\x1b[K${text}\n${this.progress}`);
    } else {
      process.stdout.write(`${text}\n`);
    }
  }

  /**
   * The sink for one process: all lines to .wharf/logs/NAME.log, the useful
   * ones to the terminal. A restarted process gets the same one (same colour, same file).
   */
  sink(name: string): LineSink {
    let sink = this.sinks.get(name);
    if (sink === undefined) {
      sink = this.newSink(name);
      this.sinks.set(name, sink);
    }
    return sink;
  }

  private newSink(name: string): LineSink {
    const code = palette[this.nextColor++ % palette.length]!;
    const prefix = this.paint(code, `${name.padEnd(this.width)} │`);
    const file = createWriteStream(join(this.logDir, `${name}.log`), { flags: "a" });
    this.files.push(file);
    file.write(`--- ${new Date().toISOString()} started by npm start\n`);
    return (line) => {
      file.write(line + "\n");
      if (this.verbose || !isChatter(line)) this.write(`${prefix} ${line}`);
    };
  }

  /** wharf's own messages. */
  say(text: string): void {
    const prefix = this.paint(1, `${"wharf".padEnd(this.width)} │`);
    for (const line of text.split("\n")) this.write(`${prefix} ${line}`);
  }

  /**
   * Starts or moves the progress line: on a terminal a line under the logs
   * with the phase and the seconds so far; elsewhere one line per phase.
   */
  phase(text: string | undefined): void {
    clearInterval(this.ticker);
    if (!this.tty) {
      if (text !== undefined) this.say(`${text} …`);
      return;
    }
    process.stdout.write("\r\x1b[K");
    this.progress = undefined;
    if (text === undefined) return;
    const since = Date.now();
    const draw = () => {
      this.progress = this.paint(2, `… ${text} (${Math.round((Date.now() - since) / 1000)} s)`);
      process.stdout.write(`\r\x1b[K${this.progress}`);
    };
    draw();
    this.ticker = setInterval(draw, 1000);
  }

  close(): void {
    this.phase(undefined);
    for (const file of this.files) file.end();
  }
}
