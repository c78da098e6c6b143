// Streams one Messages answer through kimiproxy with the official @anthropic-ai/sdk, with a tool and
// thinking, and counts tokens; prints {"blocks": [...], "stop_reason", "input_tokens", "events"} as one JSON line.
import Anthropic from "@anthropic-ai/sdk";

const [baseURL, apiKey] = process.argv.slice(2);
const client = new Anthropic({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const request = {
  model: "claude-sonnet-4-5",
  max_tokens: 2048,
  thinking: { type: "enabled", budget_tokens: 1024 },
  tools: [
    {
      name: "get_weather",
      description: "The weather for a city.",
      input_schema: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  ],
  messages: [{ role: "user", content: "Weather in Paris?" }],
};
const stream = client.messages.stream(request);
let events = 0;
stream.on("streamEvent", () => (events += 1));
const message = await stream.finalMessage();
const counted = await client.messages.countTokens({ model: request.model, messages: request.messages });
console.log(
  JSON.stringify({
    blocks: message.content,
    stop_reason: message.stop_reason,
    input_tokens: counted.input_tokens,
    events,
  }),
);
