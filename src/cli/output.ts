/**
 * What the CLI writes: data on stdout only (nothing else, so it pipes into jq, head, grep),
 * messages on stderr, a quiet exit when the reader of stdout goes away (`| head -1`).
 */

let closed = false;
const onClosed: (() => void)[] = [];

/**
 * Once stdout's reader is gone (EPIPE), stop quietly: the commands' loops end (onStdoutClosed) and
 * the process exits 0, as `yes | head -1` leaves no error behind.
 */
export function guardStdout(): void {
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code !== "EPIPE") throw err;
    closed = true;
    for (const f of onClosed.splice(0)) f();
    process.exit(0);
  });
}

export function onStdoutClosed(f: () => void): void {
  if (closed) f();
  else onClosed.push(f);
}

/** Writes one line (or raw bytes), waiting while the pipe is full so a slow reader sets the pace. */
export async function emit(chunk: string | Uint8Array): Promise<void> {
  if (closed) return;
  if (!process.stdout.write(chunk)) await new Promise<void>((r) => process.stdout.once("drain", r));
}

/** Rows as aligned columns with a header: numbers right-aligned, nothing added beyond the data. */
export function table(rows: Record<string, string | number | undefined>[], columns: string[]): string {
  const cells = [columns.map((c) => c.toUpperCase()), ...rows.map((r) => columns.map((c) => String(r[c] ?? "")))];
  const numeric = columns.map((c) => rows.length > 0 && rows.every((r) => typeof r[c] === "number"));
  const widths = columns.map((_, i) => Math.max(...cells.map((row) => row[i]!.length)));
  return cells.map((row) => row.map((cell, i) => (numeric[i] ? cell.padStart(widths[i]!) : i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join("  ")).join("\n") + "\n";
}
