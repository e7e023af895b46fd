// Calls every KV operation through the kvNamespace binding and checks every result.
// GET /        runs the checks and answers {"passed": n, "failures": [...]}
// GET /probe   one get, answering the error message if it throws (for the bad-token run)
import { Checker } from "./check.js";

async function readStream(stream) {
  return await new Response(stream).text();
}

async function kvChecks(env, t) {
  const KV = env.KV;
  t.eq("vars text binding", env.GREETING, "hello from vars");
  t.eq("vars json binding", env.LIMITS, { big: 26214401 });

  // put with TTL and metadata, read back every way.
  await KV.put("greeting", "hello world", { expirationTtl: 3600, metadata: { lang: "en", n: 1 } });
  t.eq("get default type is text", await KV.get("greeting"), "hello world");
  t.eq("get text", await KV.get("greeting", "text"), "hello world");
  t.eq("get with options object", await KV.get("greeting", { type: "text", cacheTtl: 60 }), "hello world");
  const ab = await KV.get("greeting", "arrayBuffer");
  t.eq("get arrayBuffer", new TextDecoder().decode(ab), "hello world");
  t.eq("get stream", await readStream(await KV.get("greeting", "stream")), "hello world");
  const gm = await KV.getWithMetadata("greeting");
  t.eq("getWithMetadata value", gm.value, "hello world");
  t.eq("getWithMetadata metadata", gm.metadata, { lang: "en", n: 1 });
  t.eq("getWithMetadata cacheStatus", gm.cacheStatus, null);

  await KV.put("doc.json", JSON.stringify({ a: [1, 2, { b: "c" }] }));
  t.eq("get json", await KV.get("doc.json", "json"), { a: [1, 2, { b: "c" }] });
  const gmj = await KV.getWithMetadata("doc.json", "json");
  t.eq("getWithMetadata json without metadata", [gmj.value, gmj.metadata], [{ a: [1, 2, { b: "c" }] }, null]);

  // binary values, streamed puts (chunked), large values
  await KV.put("bytes", new Uint8Array([0, 1, 2, 254, 255]));
  t.eq("arrayBuffer round trip", [...new Uint8Array(await KV.get("bytes", "arrayBuffer"))], [0, 1, 2, 254, 255]);
  const parts = ["chunk-1 ", "chunk-2 ", "chunk-3"];
  const rs = new ReadableStream({
    pull(c) {
      const p = parts.shift();
      if (p === undefined) c.close();
      else c.enqueue(new TextEncoder().encode(p));
    },
  });
  await KV.put("streamed", rs);
  t.eq("put of a stream of unknown length", await KV.get("streamed"), "chunk-1 chunk-2 chunk-3");
  const big = "x".repeat(3 * 1024 * 1024) + "end";
  await KV.put("big", big);
  const bigBack = await KV.get("big");
  t.eq("3 MiB value round trip", [bigBack.length, bigBack.slice(-3)], [big.length, "end"]);

  // keys that need percent-encoding, and non-ASCII metadata
  for (const key of ["dir/a key?&=", "a+b c%d#e", "\u043a\u043b\u044e\u0447", "bulk/get", "50%"]) {
    await KV.put(key, `value of ${key}`, { metadata: { key, note: "caf\u00e9 \u{1f600}" } });
    t.eq(`key ${JSON.stringify(key)} round trip`, await KV.get(key), `value of ${key}`);
    const m = await KV.getWithMetadata(key);
    t.eq(`key ${JSON.stringify(key)} metadata`, m.metadata, { key, note: "caf\u00e9 \u{1f600}" });
  }

  // absolute expiration
  const exp = Math.floor(Date.now() / 1000) + 7200;
  await KV.put("abs", "a", { expiration: exp });

  // bulk get
  const bulk = await KV.get(["greeting", "missing-key", "abs"]);
  t.eq("bulk get is a Map in request order", [...bulk.entries()], [
    ["greeting", "hello world"],
    ["missing-key", null],
    ["abs", "a"],
  ]);
  const bulkJson = await KV.get(["doc.json"], "json");
  t.eq("bulk get json", bulkJson.get("doc.json"), { a: [1, 2, { b: "c" }] });
  const bulkMeta = await KV.getWithMetadata(["greeting", "doc.json", "nope"]);
  t.eq("bulk getWithMetadata", Object.fromEntries(bulkMeta), {
    greeting: { value: "hello world", metadata: { lang: "en", n: 1 } },
    "doc.json": { value: JSON.stringify({ a: [1, 2, { b: "c" }] }), metadata: null },
    nope: null,
  });

  // list with prefix, limit and cursor; metadata and expiration in entries
  for (let i = 0; i < 5; i++) await KV.put(`list/${i}`, `v${i}`, i === 1 ? { metadata: "just a string" } : {});
  await KV.put("list/ttl", "t", { expirationTtl: 600, metadata: { m: true } });
  let names = [];
  let cursor = undefined;
  let pages = 0;
  for (;;) {
    const page = await KV.list({ prefix: "list/", limit: 2, cursor });
    pages++;
    names.push(...page.keys.map((k) => k.name));
    if (page.list_complete) {
      t.eq("last page has no cursor", page.cursor, undefined);
      break;
    }
    t.ok("cursor on incomplete page", typeof page.cursor === "string" && page.cursor.length > 0);
    cursor = page.cursor;
    if (pages > 10) break;
  }
  t.eq("list pages through every key", names, ["list/0", "list/1", "list/2", "list/3", "list/4", "list/ttl"]);
  t.eq("list page count", pages, 3);
  const all = await KV.list({ prefix: "list/" });
  const byName = Object.fromEntries(all.keys.map((k) => [k.name, k]));
  t.eq("list metadata that is a JSON string", byName["list/1"].metadata, "just a string");
  t.eq("list object metadata", byName["list/ttl"].metadata, { m: true });
  t.ok("list expiration in seconds", Math.abs(byName["list/ttl"].expiration - (Date.now() / 1000 + 600)) < 30);
  t.eq("list without metadata has none", byName["list/0"].metadata, undefined);
  t.eq("list cacheStatus", all.cacheStatus, null);
  const everything = await KV.list();
  t.ok("list() without options", everything.keys.some((k) => k.name === "greeting") && everything.list_complete);
  const odd = await KV.list({ prefix: "dir/a key?" });
  t.eq("list prefix needing form encoding", odd.keys.map((k) => k.name), ["dir/a key?&="]);
  const absEntry = (await KV.list({ prefix: "abs" })).keys[0];
  t.eq("list shows an absolute expiration", absEntry.expiration, exp);

  // delete
  await KV.delete("doc.json");
  t.eq("get after delete", await KV.get("doc.json"), null);
  t.eq("getWithMetadata of a missing key", await KV.getWithMetadata("doc.json"), {
    value: null,
    metadata: null,
    cacheStatus: null,
  });
  await KV.delete("never-existed");
  t.ok("delete of a missing key succeeds", true);

  // errors the platform gives
  await t.throws("expirationTtl under 60", () => KV.put("short", "x", { expirationTtl: 30 }),
    "KV PUT failed: 400 Invalid expiration_ttl of 30. Expiration TTL must be at least 60.");
  await t.throws("expiration in the past", () => KV.put("past", "x", { expiration: 1000 }),
    "KV PUT failed: 400 Invalid expiration of 1000.");
  await t.throws("cacheTtl under 30", () => KV.get("greeting", { cacheTtl: 10 }),
    "KV GET failed: 400 Invalid cache_ttl of 10. Cache TTL must be at least 30.");
  await t.throws("value over 25 MiB", () => KV.put("huge", "y".repeat(26214401)),
    "KV PUT failed: 413 Value length of");
  await t.throws("metadata over 1024 bytes", () => KV.put("fat", "x", { metadata: { m: "z".repeat(1100) } }),
    "KV PUT failed: 413 Metadata length of");
  await KV.put("rate", "1");
  await t.throws("second write to a key within a second", () => KV.put("rate", "2"), "KV PUT failed: 429");
  await t.throws("list limit over 1000", () => KV.list({ limit: 1001 }), "KV GET failed: 400");
  await t.throws("bulk get of 101 keys", () => KV.get([...Array(101).keys()].map((i) => `k${i}`)),
    "KV GET_BULK failed: 400");
  t.eq("the huge value was not stored", await KV.get("huge"), null);
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/probe") {
      try {
        return Response.json({ value: await env.KV.get("greeting") });
      } catch (e) {
        return Response.json({ error: String(e.message) });
      }
    }
    const t = new Checker();
    try {
      await kvChecks(env, t);
    } catch (e) {
      t.fail("uncaught", String(e && e.stack ? e.stack : e));
    }
    return Response.json(t.report());
  },
};
