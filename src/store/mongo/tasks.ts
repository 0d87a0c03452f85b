import type { Collection, Filter } from "mongodb";
import type { JsonObject } from "../../core/types.js";
import { takeWithin, type TaskFilter, type TaskPage, type TaskRecord, type TaskStore, type TaskUpdate } from "../tasks.js";
import type { MongoConnection } from "./client.js";

interface TaskDoc {
  _id: string;
  project: string;
  name?: string;
  /** JSON text, kept exactly as given. */
  params: string;
  agent_id: string;
  agent_name: string;
  status: string;
  filesystem_id?: string;
  status_reason?: string;
  /** JSON text, like params. */
  task_metadata?: string;
  created_at: Date;
  updated_at: Date;
}

function fromDoc(d: TaskDoc): TaskRecord {
  const t: TaskRecord = { id: d._id, project: d.project, params: JSON.parse(d.params) as JsonObject, agentId: d.agent_id, agentName: d.agent_name, status: d.status, createdAt: d.created_at, updatedAt: d.updated_at };
  if (d.name !== undefined) t.name = d.name;
  if (d.filesystem_id !== undefined) t.filesystemId = d.filesystem_id;
  if (d.status_reason !== undefined) t.statusReason = d.status_reason;
  if (d.task_metadata !== undefined) t.taskMetadata = JSON.parse(d.task_metadata) as JsonObject;
  return t;
}

const ORDER_FIELD = { created_at: "created_at", updated_at: "updated_at", name: "name" } as const;

/**
 * Tasks on MongoDB: `tasks`. (A `messages` collection left by earlier versions is neither read
 * nor written: message records are derived from task events; docs/operations.md.)
 */
export class MongoTaskStore implements TaskStore {
  readonly #m: MongoConnection;
  readonly #tasks: Collection<TaskDoc>;

  constructor(m: MongoConnection) {
    this.#m = m;
    this.#tasks = m.collection("tasks");
  }

  async init(): Promise<void> {
    await this.#tasks.createIndex({ project: 1, created_at: -1, _id: -1 }, { name: "project_created" });
    await this.#tasks.createIndex({ project: 1, name: 1, created_at: -1 }, { name: "project_name_created" });
  }

  async createTask(t: TaskRecord): Promise<void> {
    const doc: TaskDoc = { _id: t.id, project: t.project, params: JSON.stringify(t.params), agent_id: t.agentId, agent_name: t.agentName, status: t.status, created_at: t.createdAt, updated_at: t.updatedAt };
    if (t.name !== undefined) doc.name = t.name;
    if (t.filesystemId !== undefined) doc.filesystem_id = t.filesystemId;
    if (t.statusReason !== undefined) doc.status_reason = t.statusReason;
    if (t.taskMetadata !== undefined) doc.task_metadata = JSON.stringify(t.taskMetadata);
    await this.#m.write(() => this.#tasks.insertOne(doc));
  }

  async getTask(project: string, id: string): Promise<TaskRecord | undefined> {
    const d = await this.#m.read(() => this.#tasks.findOne({ _id: id, project }, this.#m.readOptions));
    return d ? fromDoc(d) : undefined;
  }

  async getTaskByName(project: string, name: string, agentId?: string): Promise<TaskRecord | undefined> {
    const q: Filter<TaskDoc> = { project, name, ...(agentId !== undefined ? { agent_id: agentId } : {}) };
    const [d] = await this.#m.read(() => this.#tasks.find(q, this.#m.readOptions).sort({ created_at: -1, _id: -1 }).limit(1).toArray());
    return d ? fromDoc(d) : undefined;
  }

  async listTasks(project: string, f: TaskFilter, page: TaskPage): Promise<TaskRecord[]> {
    const q: Filter<TaskDoc> = { project };
    if (f.agentId !== undefined) q.agent_id = f.agentId;
    if (f.agentName !== undefined) q.agent_name = f.agentName;
    // The namespace is the agent name's prefix up to its first "/".
    if (f.namespace !== undefined) q.$and = [{ agent_name: { $regex: `^${f.namespace.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}/` } }];
    if (f.statuses !== undefined) q.status = { $in: f.statuses };
    if (f.createdAfter !== undefined || f.createdBefore !== undefined) {
      q.created_at = { ...(f.createdAfter ? { $gt: f.createdAfter } : {}), ...(f.createdBefore ? { $lt: f.createdBefore } : {}) };
    }
    const dir = page.direction === "asc" ? 1 : -1;
    // Read in batches and stop at page.maxBytes.
    return this.#m.read(() => {
      const cursor = this.#tasks
        .find(q, this.#m.readOptions)
        .sort({ [ORDER_FIELD[page.orderBy]]: dir, _id: dir })
        .skip(page.offset)
        .limit(page.limit)
        .batchSize(Math.min(page.limit, 100));
      return takeWithin((async function* () {
        for await (const d of cursor) yield fromDoc(d);
      })(), page);
    });
  }

  async updateTask(project: string, id: string, u: TaskUpdate): Promise<TaskRecord | undefined> {
    const set: Partial<TaskDoc> = { updated_at: u.updatedAt };
    if (u.status !== undefined) set.status = u.status;
    if (u.statusReason !== undefined) set.status_reason = u.statusReason;
    if (u.taskMetadata !== undefined) set.task_metadata = JSON.stringify(u.taskMetadata);
    const q: Filter<TaskDoc> = { _id: id, project, ...(u.fromStatuses ? { status: { $in: u.fromStatuses } } : {}) };
    const d = await this.#m.write(() => this.#tasks.findOneAndUpdate(q, { $set: set }, { returnDocument: "after" }));
    return d ? fromDoc(d) : undefined;
  }
}
