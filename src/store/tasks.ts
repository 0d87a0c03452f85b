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
  createdAt: Date;
  updatedAt: Date;
}

/** A message record written by `persist_message: true`. */
export interface MessageRecord {
  id: string;
  project: string;
  taskId: string;
  /** TerminalUse's message content: {type, author, content?, format?, data?}. */
  content: JsonObject;
  createdAt: Date;
  /** The sequence of the task event it was written for: orders messages of one instant. */
  seq?: number;
}

/** Tasks and messages. Adapters: memory/tasks.ts, mongo/tasks.ts (`tasks`, `messages`). */
export interface TaskStore {
  init(): Promise<void>;
  /** Rejects when the id is taken (ids are new UUIDs: a task is never overwritten). */
  createTask(task: TaskRecord): Promise<void>;
  getTask(project: string, id: string): Promise<TaskRecord | undefined>;
  /** Idempotent by message id. */
  addMessage(message: MessageRecord): Promise<void>;
  /** A task's messages, oldest first (by created_at, then seq, then id). */
  listMessages(project: string, taskId: string): Promise<MessageRecord[]>;
}
