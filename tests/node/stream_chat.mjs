// Streams one chat completion through kimiproxy with the official openai Node SDK and prints
// {"text": ..., "chunks": N, "finish_reason": ...} as one JSON line.
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const stream = await client.chat.completions.create({
  model: "kimi",
  messages: [{ role: "user", content: "hello from node" }],
  stream: true,
});
let text = "";
let chunks = 0;
let finishReason = null;
for await (const chunk of stream) {
  chunks += 1;
  const choice = chunk.choices[0];
  if (choice?.delta?.content) text += choice.delta.content;
  if (choice?.finish_reason) finishReason = choice.finish_reason;
}
console.log(JSON.stringify({ text, chunks, finish_reason: finishReason }));
