// Streams one Responses answer (and a function call) through kimiproxy with the official openai Node
// SDK's responses.stream helper, and prints what it rebuilt as one JSON line:
// {"status", "text", "events": [types...], "calls": [{"call_id", "name", "arguments"}], "sequence_ok"}.
import OpenAI from "openai";

const [baseURL, apiKey, withTools] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const tools =
  withTools === "tools"
    ? [
        {
          type: "function",
          name: "get_weather",
          parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
          strict: false,
        },
      ]
    : undefined;
const stream = client.responses.stream({ model: "kimi", input: "Weather in Paris?", tools, store: false });
const events = [];
let sequenceOk = true;
for await (const event of stream) {
  if (event.sequence_number !== events.length) sequenceOk = false;
  events.push(event.type);
}
const response = await stream.finalResponse();
const calls = response.output
  .filter((item) => item.type === "function_call")
  .map((item) => ({ call_id: item.call_id, name: item.name, arguments: item.arguments }));
console.log(
  JSON.stringify({ status: response.status, text: response.output_text, events, calls, sequence_ok: sequenceOk }),
);
