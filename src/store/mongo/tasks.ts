import type { Collection, Db } from "mongodb";
import type { JsonObject } from "../../core/types.js";
import type { MessageRecord, TaskRecord, TaskStore } from "../tasks.js";
import { isDuplicateKey } from "./index.js";

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
  created_at: Date;
  updated_at: Date;
}

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
  readonly #tasks: Collection<TaskDoc>;
  readonly #messages: Collection<MessageDoc>;

  constructor(db: Db) {
    this.#tasks = db.collection("tasks");
    this.#messages = db.collection("messages");
  }

  async init(): Promise<void> {
    await this.#messages.createIndex({ project: 1, task_id: 1, created_at: 1, seq: 1 }, { name: "project_task_created_seq" });
  }

  async createTask(t: TaskRecord): Promise<void> {
    const doc: TaskDoc = { _id: t.id, project: t.project, params: JSON.stringify(t.params), agent_id: t.agentId, agent_name: t.agentName, status: t.status, created_at: t.createdAt, updated_at: t.updatedAt };
    if (t.name !== undefined) doc.name = t.name;
    if (t.filesystemId !== undefined) doc.filesystem_id = t.filesystemId;
    await this.#tasks.insertOne(doc);
  }

  async getTask(project: string, id: string): Promise<TaskRecord | undefined> {
    const d = await this.#tasks.findOne({ _id: id, project });
    if (!d) return undefined;
    const t: TaskRecord = { id: d._id, project: d.project, params: JSON.parse(d.params) as JsonObject, agentId: d.agent_id, agentName: d.agent_name, status: d.status, createdAt: d.created_at, updatedAt: d.updated_at };
    if (d.name !== undefined) t.name = d.name;
    if (d.filesystem_id !== undefined) t.filesystemId = d.filesystem_id;
    return t;
  }

  async addMessage(m: MessageRecord): Promise<void> {
    try {
      const doc: MessageDoc = { _id: m.id, project: m.project, task_id: m.taskId, content: JSON.stringify(m.content), created_at: m.createdAt };
      if (m.seq !== undefined) doc.seq = m.seq;
      await this.#messages.insertOne(doc);
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }

  async listMessages(project: string, taskId: string): Promise<MessageRecord[]> {
    const docs = await this.#messages.find({ project, task_id: taskId }).sort({ created_at: 1, seq: 1, _id: 1 }).toArray();
    return docs.map((d) => ({ id: d._id, project: d.project, taskId: d.task_id, content: JSON.parse(d.content) as JsonObject, createdAt: d.created_at, ...(d.seq !== undefined ? { seq: d.seq } : {}) }));
  }
}
