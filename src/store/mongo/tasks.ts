import type { Collection, Filter } from "mongodb";
import type { JsonObject } from "../../core/types.js";
import type { MessageRecord, TaskFilter, TaskPage, TaskRecord, TaskStore, TaskUpdate } from "../tasks.js";
import type { MongoConnection } from "./client.js";
import { isDuplicateKey } from "./errors.js";

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

interface MessageDoc {
  _id: string;
  project: string;
  task_id: string;
  content: string;
  created_at: Date;
  seq?: number;
}

/** Tasks and messages on MongoDB: `tasks`, `messages` ({project, task_id, created_at} index). */
export class MongoTaskStore implements TaskStore {
  readonly #m: MongoConnection;
  readonly #tasks: Collection<TaskDoc>;
  readonly #messages: Collection<MessageDoc>;

  constructor(m: MongoConnection) {
    this.#m = m;
    this.#tasks = m.collection("tasks");
    this.#messages = m.collection("messages");
  }

  async init(): Promise<void> {
    await this.#messages.createIndex({ project: 1, task_id: 1, created_at: 1, seq: 1 }, { name: "project_task_created_seq" });
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
    const docs = await this.#m.read(() =>
      this.#tasks
        .find(q, this.#m.readOptions)
        .sort({ [ORDER_FIELD[page.orderBy]]: dir, _id: dir })
        .skip(page.offset)
        .limit(page.limit)
        .toArray(),
    );
    return docs.map(fromDoc);
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

  async addMessage(m: MessageRecord): Promise<void> {
    try {
      const doc: MessageDoc = { _id: m.id, project: m.project, task_id: m.taskId, content: JSON.stringify(m.content), created_at: m.createdAt };
      if (m.seq !== undefined) doc.seq = m.seq;
      await this.#m.write(() => this.#messages.insertOne(doc));
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }

  async listMessages(project: string, taskId: string): Promise<MessageRecord[]> {
    const docs = await this.#m.read(() => this.#messages.find({ project, task_id: taskId }, this.#m.readOptions).sort({ created_at: 1, seq: 1, _id: 1 }).toArray());
    return docs.map((d) => ({ id: d._id, project: d.project, taskId: d.task_id, content: JSON.parse(d.content) as JsonObject, createdAt: d.created_at, ...(d.seq !== undefined ? { seq: d.seq } : {}) }));
  }
}
