// A real Better Auth server for the tests: the `better-auth` package as its docs set it up,
// in memory, with email and password sign-up and the JWT plugin. It listens on 127.0.0.1:PORT
// and signs with JWT_ALG (EdDSA, the plugin's default, unless told otherwise).
import { createServer } from "node:http";
import { betterAuth } from "better-auth";
import { memoryAdapter } from "better-auth/adapters/memory";
import { jwt } from "better-auth/plugins";
import { toNodeHandler } from "better-auth/node";

const port = Number(process.env.PORT);
const baseURL = `http://127.0.0.1:${port}`;
const alg = process.env.JWT_ALG || "EdDSA";

export const auth = betterAuth({
  baseURL,
  secret: process.env.BETTER_AUTH_SECRET,
  database: memoryAdapter({ user: [], session: [], account: [], verification: [], jwks: [] }),
  emailAndPassword: { enabled: true },
  trustedOrigins: (process.env.TRUSTED_ORIGINS || "").split(",").filter(Boolean),
  telemetry: { enabled: false },
  plugins: [jwt(alg === "EdDSA" ? {} : { jwks: { keyPairConfig: { alg } } })],
});

const handler = toNodeHandler(auth);
createServer((request, response) => {
  const origin = request.headers.origin;
  if (origin && auth.options.trustedOrigins.includes(origin)) {
    response.setHeader("Access-Control-Allow-Origin", origin);
    response.setHeader("Access-Control-Allow-Credentials", "true");
    response.setHeader("Access-Control-Allow-Headers", "Content-Type");
    response.setHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    if (request.method === "OPTIONS") return response.writeHead(204).end();
  }
  handler(request, response);
}).listen(port, "127.0.0.1", () => console.log(`better-auth listening on ${baseURL}`));
