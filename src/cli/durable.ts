/**
 * Durable Streams over their own HTTP protocol (`/v1/stream/{name}`): what the CLI needs to publish
 * to one (the stream's content type decides how a line is sent) and to know that it exists.
 */
import { CliError, EXIT, exitForStatus } from "./exit.js";

export interface HttpTarget {
  url: string;
  headers: Record<string, string>;
}

export interface DurableInfo {
  contentType: string;
  nextOffset: string;
  closed: boolean;
}

function streamUrl(t: HttpTarget, name: string): string {
  return `${t.url.replace(/\/+$/, "")}/v1/stream/${name.split("/").map(encodeURIComponent).join("/")}`;
}

async function failure(res: Response, what: string): Promise<CliError> {
  const text = (await res.text()).trim().split("\n", 1)[0]!.slice(0, 300);
  return new CliError(`${what}: HTTP ${res.status}${text ? ` ${text}` : ""}`, exitForStatus(res.status));
}

/** The stream's content type and tail (HEAD); a missing stream is "not found" (exit 3). */
export async function durableInfo(t: HttpTarget, name: string): Promise<DurableInfo> {
  const res = await fetch(streamUrl(t, name), { method: "HEAD", headers: t.headers });
  if (res.status === 404) throw new CliError(`durable stream ${JSON.stringify(name)} not found (publish --create makes it)`, exitForStatus(404));
  if (!res.ok) throw await failure(res, `durable stream ${JSON.stringify(name)}`);
  return {
    contentType: res.headers.get("content-type") ?? "application/octet-stream",
    nextOffset: res.headers.get("stream-next-offset") ?? "",
    closed: res.headers.get("stream-closed") === "true",
  };
}

/** Creates the stream (PUT; the same settings again is fine). */
export async function durableCreate(t: HttpTarget, name: string, contentType: string): Promise<void> {
  const res = await fetch(streamUrl(t, name), { method: "PUT", headers: { ...t.headers, "content-type": contentType } });
  if (!res.ok) throw await failure(res, `creating durable stream ${JSON.stringify(name)}`);
}

export const isJsonType = (contentType: string): boolean => /^application\/(.+\+)?json\b/i.test(contentType.trim());

/**
 * Appends one message. On a JSON stream a top-level array would be flattened into several
 * messages (the protocol's rule), so one is sent wrapped: one line stays one message.
 */
export async function durableAppend(t: HttpTarget, name: string, info: DurableInfo, message: string): Promise<string> {
  let body = message;
  if (isJsonType(info.contentType)) {
    let value: unknown;
    try {
      value = JSON.parse(message);
    } catch (err) {
      throw new CliError(`not valid JSON (the stream is ${info.contentType}): ${(err as Error).message}`, EXIT.usage);
    }
    if (Array.isArray(value)) body = `[${message}]`;
  }
  const res = await fetch(streamUrl(t, name), { method: "POST", headers: { ...t.headers, "content-type": info.contentType }, body });
  if (!res.ok) throw await failure(res, `appending to durable stream ${JSON.stringify(name)}`);
  return res.headers.get("stream-next-offset") ?? "";
}
