// Mistakes the generated types must refuse: each line below is a type error.
import createClient from "openapi-fetch";
import type { paths } from "../build/sdk/ts/schema";

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:8000" });

export async function misuse() {
  // A priority the contract does not have.
  await client.POST("/api/{user_id}/tasks", { params: { path: { user_id: "u" } }, body: { title: "x", priority: "urgent" } });
  // A field of the wrong type.
  await client.POST("/api/{user_id}/tasks", { params: { path: { user_id: "u" } }, body: { title: "x", completed: "yes" } });
  // A create without its required title.
  await client.POST("/api/{user_id}/tasks", { params: { path: { user_id: "u" } }, body: { priority: "low" } });
  // A method the path does not have.
  await client.DELETE("/api/{user_id}/tasks", { params: { path: { user_id: "u" } } });
}
