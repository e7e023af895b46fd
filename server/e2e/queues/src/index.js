// GET /send    sends every kind of message and checks what send()/sendBatch() resolve to
// GET /seen    lists the recorded deliveries
// queue()      records each delivery in KV, then acks or retries as the message asks
// scheduled()  records the cron event
import { Checker } from "./check.js";

function describe(body) {
  if (body instanceof ArrayBuffer) return { bytes: [...new Uint8Array(body)] };
  return body;
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/seen") {
      const out = [];
      let cursor;
      for (;;) {
        const page = await env.SEEN.list({ prefix: "seen/", cursor });
        for (const k of page.keys) out.push({ key: k.name, value: JSON.parse(await env.SEEN.get(k.name)) });
        if (page.list_complete) break;
        cursor = page.cursor;
      }
      return Response.json(out);
    }
    const t = new Checker();
    try {
      const r1 = await env.JOBS.send({ n: 1, action: "ack" });
      t.ok("send resolves to metadata.metrics", r1 && r1.metadata && typeof r1.metadata.metrics.backlogCount === "number", JSON.stringify(r1));
      t.ok("backlog counts the message", r1.metadata.metrics.backlogCount >= 1);
      t.ok("oldestMessageTimestamp is a Date", r1.metadata.metrics.oldestMessageTimestamp instanceof Date);
      await env.JOBS.send({ n: 2, action: "retry" });
      await env.JOBS.send({ n: 3, action: "retry-once" });
      await env.JOBS.send({ n: 4, action: "throw-first" });
      await env.JOBS.send("plain text", { contentType: "text" });
      await env.JOBS.send(new Uint8Array([1, 2, 3]), { contentType: "bytes" });
      await env.JOBS.send({ n: 7, when: new Date(0), set: new Set([1]) }, { contentType: "v8" });
      await env.JOBS.send({ n: 8, action: "ack", sentAt: Date.now() }, { delaySeconds: 2 });
      const rb = await env.JOBS.sendBatch(
        [
          { body: { n: 9, action: "ack" } },
          { body: "batch text", contentType: "text" },
          { body: { n: 11, action: "ack", sentAt: Date.now() }, delaySeconds: 1 },
        ],
        { delaySeconds: 0 },
      );
      t.ok("sendBatch resolves to metadata.metrics", rb.metadata.metrics.backlogCount >= 3, JSON.stringify(rb));
      await t.throws("a message over 128 KB", () => env.JOBS.send("x".repeat(130000), { contentType: "text" }), "Queue send failed");
      await t.throws("a delay over 24 hours", () => env.JOBS.send({ n: 0 }, { delaySeconds: 90000 }), "Queue send failed");
      await t.throws("an empty batch", () => env.JOBS.sendBatch([]), "");
    } catch (e) {
      t.fail("uncaught", String(e && e.stack ? e.stack : e));
    }
    return Response.json(t.report());
  },

  async queue(batch, env) {
    let throwAfter = false;
    for (const m of batch.messages) {
      const body = describe(m.body);
      const n = body && body.n !== undefined ? body.n : typeof m.body === "string" ? m.body : "bytes";
      const record = {
        queue: batch.queue,
        id: m.id,
        attempts: m.attempts,
        body,
        timestamp: m.timestamp.getTime(),
        deliveredAt: Date.now(),
        isDate: m.timestamp instanceof Date,
        v8: body && body.when instanceof Date && body.set instanceof Set,
        backlog: batch.metadata && batch.metadata.metrics ? batch.metadata.metrics.backlogCount : null,
      };
      await env.SEEN.put(`seen/${batch.queue}/${n}/${m.attempts}`, JSON.stringify(record));
      const action = body && body.action;
      if (batch.queue === "e2e-dlq") m.ack();
      else if (action === "retry") m.retry();
      else if (action === "retry-once") m.attempts === 1 ? m.retry({ delaySeconds: 1 }) : m.ack();
      else if (action === "throw-first") throwAfter = m.attempts === 1;
      else m.ack();
    }
    if (throwAfter) throw new Error("first delivery of throw-first");
  },

  async scheduled(controller, env) {
    await env.SEEN.put(`seen/cron/${controller.scheduledTime}`, JSON.stringify({ cron: controller.cron, scheduledTime: controller.scheduledTime }));
  },
};
