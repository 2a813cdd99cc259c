// GitHub's webhook signature check, @octokit/webhooks-methods `verify`, over test vectors.
//
// stdin: one JSON object per line, {"secret": "...", "body": BASE64, "signature": BASE64}.
// The body is handed over as the UTF-8 string verify() takes; the signature bytes as
// Node's HTTP parser hands a header value to an application (latin1).
// stdout: one line per vector, "accept" or "refuse" (verify() throwing is a refusal:
// @octokit/webhooks treats it as one).
import { createInterface } from "node:readline";
import { verify } from "@octokit/webhooks-methods";

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  const vector = JSON.parse(line);
  const body = Buffer.from(vector.body, "base64").toString("utf8");
  const signature = Buffer.from(vector.signature, "base64").toString("latin1");
  let accepted = false;
  try {
    accepted = await verify(vector.secret, body, signature);
  } catch {
    accepted = false;
  }
  process.stdout.write(accepted ? "accept\n" : "refuse\n");
}
