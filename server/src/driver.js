// Bindery's driver Worker: turns Bindery's HTTP calls into queue() and scheduled() events of
// the consumer Worker bound as CONSUMER. It needs the compatibility flag
// service_binding_extra_handlers, so workerd runs with --experimental.
//
// POST /queue     {"queue", "messages":[{id, timestamp, attempts, format, body}], "metadata"}
//                 format is json, text, bytes (body is base64) or v8 (base64, passed through)
//                 -> the QueueResult of the consumer, as JSON
// POST /scheduled {"cron", "scheduledTime"} -> {"outcome", "noRetry"}

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function toMessage(m) {
  const out = { id: m.id, timestamp: new Date(m.timestamp), attempts: m.attempts };
  const bytes = fromBase64(m.body);
  switch (m.format) {
    case "json":
      out.body = JSON.parse(new TextDecoder().decode(bytes));
      break;
    case "text":
      out.body = new TextDecoder().decode(bytes);
      break;
    case "bytes":
      out.body = bytes.buffer;
      break;
    default:
      out.serializedBody = bytes;
  }
  return out;
}

export default {
  async fetch(request, env) {
    if (env.BINDERY_TOKEN && request.headers.get("authorization") !== `Bearer ${env.BINDERY_TOKEN}`) {
      return new Response("missing or wrong bearer token", { status: 401 });
    }
    if (request.method !== "POST") {
      return new Response("use POST", { status: 405 });
    }
    const path = new URL(request.url).pathname;
    let input;
    try {
      input = await request.json();
    } catch (e) {
      return new Response(`invalid JSON: ${e}`, { status: 400 });
    }
    if (path === "/queue") {
      const result = await env.CONSUMER.queue(input.queue, input.messages.map(toMessage), input.metadata);
      return Response.json(result);
    }
    if (path === "/scheduled") {
      const result = await env.CONSUMER.scheduled({
        scheduledTime: new Date(input.scheduledTime),
        cron: input.cron,
      });
      return Response.json(result);
    }
    return new Response("no such endpoint", { status: 404 });
  },
};
