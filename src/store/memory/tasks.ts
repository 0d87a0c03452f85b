import { MemoryBudget, MeteredMap } from "./budget.js";
import { matchesTaskFilter, takeWithin, taskOrder, type TaskFilter, type TaskPage, type TaskRecord, type TaskStore, type TaskUpdate } from "../tasks.js";

/** Tasks in this process's memory, counted against MEMORY_MAX_BYTES (budget.ts). */
export class MemoryTaskStore implements TaskStore {
  readonly #tasks: MeteredMap<string, TaskRecord>;

  constructor(budget = new MemoryBudget()) {
    this.#tasks = new MeteredMap(budget, "a task");
  }

  async init(): Promise<void> {}

  async createTask(task: TaskRecord): Promise<void> {
    if (this.#tasks.has(task.id)) throw new Error(`task ${task.id} exists`);
    this.#tasks.set(task.id, structuredClone(task));
  }

  async getTask(project: string, id: string): Promise<TaskRecord | undefined> {
    const t = this.#tasks.get(id);
    return t && t.project === project ? structuredClone(t) : undefined;
  }

  async getTaskByName(project: string, name: string, agentId?: string): Promise<TaskRecord | undefined> {
    let best: TaskRecord | undefined;
    for (const t of this.#tasks.values()) {
      if (t.project !== project || t.name !== name || (agentId !== undefined && t.agentId !== agentId)) continue;
      if (!best || taskOrder("created_at", "desc")(t, best) < 0) best = t;
    }
    return best && structuredClone(best);
  }

  async listTasks(project: string, filter: TaskFilter, page: TaskPage): Promise<TaskRecord[]> {
    const sorted = [...this.#tasks.values()].filter((t) => t.project === project && matchesTaskFilter(t, filter)).sort(taskOrder(page.orderBy, page.direction));
    return (await takeWithin(sorted.slice(page.offset, page.offset + page.limit), page)).map((t) => structuredClone(t));
  }

  async updateTask(project: string, id: string, u: TaskUpdate): Promise<TaskRecord | undefined> {
    const t = this.#tasks.get(id);
    if (!t || t.project !== project || (u.fromStatuses && !u.fromStatuses.includes(t.status))) return undefined;
    const next = structuredClone(t);
    if (u.status !== undefined) next.status = u.status;
    if (u.statusReason !== undefined) next.statusReason = u.statusReason;
    if (u.taskMetadata !== undefined) next.taskMetadata = structuredClone(u.taskMetadata);
    next.updatedAt = u.updatedAt;
    this.#tasks.set(id, next); // CapacityError when the new metadata does not fit: the task stays as it was
    return structuredClone(next);
  }
}
