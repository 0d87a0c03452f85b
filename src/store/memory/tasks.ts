import type { MessageRecord, TaskRecord, TaskStore } from "../tasks.js";

export class MemoryTaskStore implements TaskStore {
  readonly #tasks = new Map<string, TaskRecord>();
  readonly #messages = new Map<string, MessageRecord>();

  async init(): Promise<void> {}

  async createTask(task: TaskRecord): Promise<void> {
    if (this.#tasks.has(task.id)) throw new Error(`task ${task.id} exists`);
    this.#tasks.set(task.id, structuredClone(task));
  }

  async getTask(project: string, id: string): Promise<TaskRecord | undefined> {
    const t = this.#tasks.get(id);
    return t && t.project === project ? structuredClone(t) : undefined;
  }

  async addMessage(message: MessageRecord): Promise<void> {
    if (!this.#messages.has(message.id)) this.#messages.set(message.id, structuredClone(message));
  }

  async listMessages(project: string, taskId: string): Promise<MessageRecord[]> {
    return [...this.#messages.values()]
      .filter((m) => m.project === project && m.taskId === taskId)
      .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a.seq ?? 0) - (b.seq ?? 0) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      .map((m) => structuredClone(m));
  }
}
