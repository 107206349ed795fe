// What a Next.js frontend writes against the generated types: list, create, complete.
import createClient from "openapi-fetch";
import type { components, paths } from "../build/sdk/ts/schema";

type Task = components["schemas"]["Task"];
type Problem = components["schemas"]["Problem"];
type TaskChanges = components["schemas"]["TaskChanges"];

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

// Live updates: every change of the user's tasks as it happens (GET /tasks/events), each a page
// of the change feed. `apply(page, fromScratch)`: when `fromScratch`, drop the copy first (a
// full sync begins). Whenever a stream ends (its token expired, its 10-15 minutes are up, the
// network dropped) it reconnects with a fresh token and the last event's id, so no change is
// missed or applied twice. Stop it with `signal`. EventSource cannot send a bearer token.
export async function watch(
  baseUrl: string,
  userId: string,
  token: () => Promise<string>,
  apply: (page: TaskChanges, fromScratch: boolean) => void,
  options: { lastEventId?: string; signal?: AbortSignal } = {},
): Promise<void> {
  let lastEventId = options.lastEventId;
  let wait = 1000;
  while (!options.signal?.aborted) {
    try {
      const headers: Record<string, string> = { Authorization: `Bearer ${await token()}` };
      if (lastEventId) headers["Last-Event-ID"] = lastEventId;
      const url = `${baseUrl}/api/${encodeURIComponent(userId)}/tasks/events`;
      const response = await fetch(url, { headers, signal: options.signal });
      if (response.status === 410) {
        lastEventId = undefined; // too old: sync from scratch
        continue;
      }
      if (!response.ok || !response.body) {
        const problem = (await response.json()) as Problem;
        if (response.status !== 429 && response.status < 500) throw new Error(`${problem.code}: ${problem.detail}`);
        wait = Number(response.headers.get("Retry-After") ?? "5") * 1000;
      } else {
        let fromScratch = lastEventId === undefined;
        for await (const event of serverSentEvents(response.body)) {
          if (event.retry !== undefined) wait = event.retry;
          if (event.event !== "changes" || event.data === undefined) continue;
          apply(JSON.parse(event.data) as TaskChanges, fromScratch);
          fromScratch = false;
          lastEventId = event.id;
        }
      }
    } catch (failure) {
      if (options.signal?.aborted) return;
      if (!(failure instanceof TypeError)) throw failure; // TypeError: the network
    }
    await new Promise((resolve) => setTimeout(resolve, wait));
  }
}

type ServerSentEvent = { event?: string; id?: string; data?: string; retry?: number };

// The events of a text/event-stream body as the HTML standard parses them (comments skipped).
async function* serverSentEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    const blocks = buffer.split(/\r\n\r\n|\n\n|\r\r/);
    buffer = blocks.pop() ?? "";
    for (const block of blocks) {
      const event: ServerSentEvent = {};
      for (const line of block.split(/\r\n|\n|\r/)) {
        if (line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const text = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") event.data = event.data === undefined ? text : `${event.data}\n${text}`;
        else if (field === "event" || field === "id") event[field] = text;
        else if (field === "retry" && /^\d+$/.test(text)) event.retry = Number(text);
      }
      if (event.data !== undefined) yield event;
    }
  }
}
