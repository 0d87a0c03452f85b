import type { JsonObject } from "../core/types.js";

/** A TerminalUse task (its events live in the event log, stream kind "task"). */
export interface TaskRecord {
  id: string;
  project: string;
  name?: string;
  params: JsonObject;
  agentId: string;
  agentName: string;
  status: string;
  filesystemId?: string;
  statusReason?: string;
  /** Free JSON the task's clients keep on it (PUT /tasks/{id}). */
  taskMetadata?: JsonObject;
  createdAt: Date;
  updatedAt: Date;
}

/** Which tasks GET /tasks lists (every field narrows; absent = any). */
export interface TaskFilter {
  agentId?: string;
  agentName?: string;
  /** The agent name's namespace (`namespace/name`). */
  namespace?: string;
  statuses?: string[];
  createdAfter?: Date;
  createdBefore?: Date;
}

export interface TaskPage {
  orderBy: "created_at" | "updated_at" | "name";
  direction: "asc" | "desc";
  offset: number;
  limit: number;
  /**
   * The store stops reading once the tasks read so far exceed this many bytes (taskBytes): the
   * page then ends with the task that crossed it, so the caller sees that `limit` does not fit.
   */
  maxBytes?: number;
}

/** A change to a task; `fromStatuses` makes it conditional on the current status. */
export interface TaskUpdate {
  status?: string;
  statusReason?: string;
  taskMetadata?: JsonObject;
  updatedAt: Date;
  fromStatuses?: string[];
}

/**
 * Tasks. Adapters: memory/tasks.ts, mongo/tasks.ts (`tasks`). Message records are not stored here:
 * they are derived from the task's events (src/api/terminaluse.ts, messageOf).
 */
export interface TaskStore {
  init(): Promise<void>;
  /** Rejects when the id is taken (ids are new UUIDs: a task is never overwritten). */
  createTask(task: TaskRecord): Promise<void>;
  getTask(project: string, id: string): Promise<TaskRecord | undefined>;
  /** The newest task with this name (of this agent, when given). */
  getTaskByName(project: string, name: string, agentId?: string): Promise<TaskRecord | undefined>;
  /** A page of the project's tasks; ties in the order are broken by id. */
  listTasks(project: string, filter: TaskFilter, page: TaskPage): Promise<TaskRecord[]>;
  /**
   * Applies the update atomically and returns the task after it; undefined when there is no such
   * task or its status is not one of `fromStatuses`.
   */
  updateTask(project: string, id: string, update: TaskUpdate): Promise<TaskRecord | undefined>;
}

/** The agent name's namespace: `ns` of `ns/name` (what TerminalUse calls the task's namespace_id). */
export function namespaceOf(agentName: string): string | undefined {
  const slash = agentName.indexOf("/");
  return slash > 0 ? agentName.slice(0, slash) : undefined;
}

/** TaskFilter for stores that filter in memory (the MongoDB adapter builds the same as a query). */
export function matchesTaskFilter(t: TaskRecord, f: TaskFilter): boolean {
  return (
    (f.agentId === undefined || t.agentId === f.agentId) &&
    (f.agentName === undefined || t.agentName === f.agentName) &&
    (f.namespace === undefined || namespaceOf(t.agentName) === f.namespace) &&
    (f.statuses === undefined || f.statuses.includes(t.status)) &&
    (f.createdAfter === undefined || t.createdAt.getTime() > f.createdAfter.getTime()) &&
    (f.createdBefore === undefined || t.createdAt.getTime() < f.createdBefore.getTime())
  );
}

/** The order of TaskPage: by the field (tasks without a name first), then by id, in one direction. */
export function taskOrder(by: TaskPage["orderBy"], direction: TaskPage["direction"]): (a: TaskRecord, b: TaskRecord) => number {
  const key = (t: TaskRecord): number | string => (by === "name" ? (t.name ?? "") : by === "updated_at" ? t.updatedAt.getTime() : t.createdAt.getTime());
  const sign = direction === "asc" ? 1 : -1;
  return (a, b) => {
    const ka = key(a);
    const kb = key(b);
    const c = ka < kb ? -1 : ka > kb ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
    return sign * c;
  };
}

/** A task's size as a list counts it: its JSON text (what a listing sends of it, give or take). */
export function taskBytes(t: TaskRecord): number {
  return Buffer.byteLength(JSON.stringify(t));
}

/** The head of `tasks` that TaskPage.maxBytes lets a store read: up to and including the task that crosses it. */
export async function takeWithin(tasks: AsyncIterable<TaskRecord> | Iterable<TaskRecord>, page: TaskPage): Promise<TaskRecord[]> {
  const out: TaskRecord[] = [];
  let bytes = 0;
  // Leaving the loop early returns the iterator (a MongoDB cursor is then closed).
  for await (const t of tasks) {
    if (out.length === page.limit || (page.maxBytes !== undefined && bytes > page.maxBytes)) break;
    out.push(t);
    bytes += taskBytes(t);
  }
  return out;
}
