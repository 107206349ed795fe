// What a Next.js frontend writes against the generated types: list, create, complete.
import createClient from "openapi-fetch";
import type { components, paths } from "../build/sdk/ts/schema";

type Task = components["schemas"]["Task"];
type Problem = components["schemas"]["Problem"];

export function tasksApi(baseUrl: string, token: string, userId: string) {
  const client = createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${token}` } });
  const path = { user_id: userId };

  return {
    async pending(cursor?: string): Promise<{ items: Task[]; next: string | null }> {
      const { data, error } = await client.GET("/api/{user_id}/tasks", {
        params: { path, query: { status: "pending", sort: "due_date", order: "asc", limit: 20, cursor } },
      });
      if (error) throw new Error(error.detail);
      return { items: data.items, next: data.next_cursor };
    },

    async create(title: string, dueAt: string | null): Promise<Task | Problem> {
      const { data, error } = await client.POST("/api/{user_id}/tasks", {
        params: { path },
        body: { title, due_at: dueAt, priority: "high", tags: ["home"] },
      });
      return data ?? error;
    },

    async complete(taskId: string, completed = true): Promise<Task> {
      const { data, error } = await client.PATCH("/api/{user_id}/tasks/{task_id}/complete", {
        params: { path: { ...path, task_id: taskId } },
        body: { completed },
      });
      if (error) throw new Error(`${error.code}: ${error.detail}`);
      return data;
    },

    // A create that is safe to retry: every attempt sends the same Idempotency-Key, so a
    // request that timed out but went through is answered with its task, not a second one.
    async createOnce(title: string, key: string = crypto.randomUUID()): Promise<Task> {
      for (let attempt = 1; ; attempt++) {
        try {
          const { data, error, response } = await client.POST("/api/{user_id}/tasks", {
            params: { path, header: { "Idempotency-Key": key } },
            body: { title },
          });
          if (data) return data;
          if (response.status !== 409 && response.status < 500) throw new Error(`${error.code}: ${error.detail}`);
        } catch (failure) {
          if (!(failure instanceof TypeError) || attempt === 5) throw failure; // TypeError: the network
        }
        await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempt));
      }
    },

    // A change that must not overwrite another tab's: 412 means reload and decide again.
    async rename(task: Task, title: string): Promise<Task | Problem> {
      const { data, error } = await client.PATCH("/api/{user_id}/tasks/{task_id}", {
        params: { path: { ...path, task_id: task.id }, header: { "If-Match": task.etag } },
        body: { title },
      });
      return data ?? error;
    },

    // Back online: apply every change since the last sync token, page by page; keep the token.
    async sync(since: string | undefined, apply: (changed: Task[], deleted: string[]) => void): Promise<string> {
      for (;;) {
        const { data, error, response } = await client.GET("/api/{user_id}/tasks/changes", {
          params: { path, query: { since, limit: 100 } },
        });
        if (response.status === 410) return this.sync(undefined, apply); // too old: sync from scratch
        if (error) throw new Error(`${error.code}: ${error.detail}`);
        apply(data.changes, data.deleted);
        since = data.next_since;
        if (!data.has_more) return since;
      }
    },
  };
}
