// Streams one chat completion with a declared tool through kimiproxy with the official openai Node
// SDK's stream helper, and prints the calls it rebuilt from the deltas as one JSON line:
// {"finish_reason": ..., "content": ..., "tool_calls": [{"id", "name", "arguments"}]}.
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  },
];
const stream = client.chat.completions.stream({
  model: "kimi",
  messages: [{ role: "user", content: "Weather in Paris?" }],
  tools,
});
const completion = await stream.finalChatCompletion();
const choice = completion.choices[0];
const calls = (choice.message.tool_calls ?? []).map((c) => ({
  id: c.id,
  name: c.function.name,
  arguments: c.function.arguments,
}));
console.log(
  JSON.stringify({ finish_reason: choice.finish_reason, content: choice.message.content, tool_calls: calls }),
);
