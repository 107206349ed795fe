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
  };
}
