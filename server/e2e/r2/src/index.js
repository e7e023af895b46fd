// Calls every R2 operation through the r2Bucket binding and checks every result.
import { Checker } from "./check.js";

const enc = new TextEncoder();

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}
function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function r2Checks(env, t) {
  const R2 = env.R2;
  const text = "Hello, R2 world!";
  const put = await R2.put("docs/hello.txt", text, {
    httpMetadata: { contentType: "text/plain", contentLanguage: "en", cacheControl: "max-age=60" },
    customMetadata: { owner: "alice", purpose: "test" },
  });
  t.eq("put returns the key", put.key, "docs/hello.txt");
  t.eq("put returns the size", put.size, text.length);
  const textMd5 = hex(new Uint8Array(await crypto.subtle.digest("MD5", enc.encode(text))));
  t.eq("put etag is the hex md5", put.etag, textMd5);
  t.eq("httpEtag quotes the etag", put.httpEtag, `"${put.etag}"`);
  t.ok("uploaded is a recent Date", put.uploaded instanceof Date && Math.abs(put.uploaded - Date.now()) < 60000);
  t.ok("version is set", typeof put.version === "string" && put.version.length > 0);
  t.eq("put echoes custom metadata", put.customMetadata, { owner: "alice", purpose: "test" });
  t.eq("put echoes http metadata", put.httpMetadata, { contentType: "text/plain", contentLanguage: "en", cacheControl: "max-age=60" });
  t.eq("md5 checksum always present", put.checksums.toJSON().md5 !== undefined, true);

  const got = await R2.get("docs/hello.txt");
  t.eq("get body text", await got.text(), text);
  t.eq("get etag", got.etag, put.etag);
  t.eq("get custom metadata", got.customMetadata, { owner: "alice", purpose: "test" });
  t.eq("get http metadata", got.httpMetadata.contentType, "text/plain");
  t.eq("get size", got.size, 16);
  const h = new Headers();
  got.writeHttpMetadata(h);
  t.eq("writeHttpMetadata", [h.get("content-type"), h.get("content-language"), h.get("cache-control")], ["text/plain", "en", "max-age=60"]);

  const r1 = await R2.get("docs/hello.txt", { range: { offset: 7, length: 2 } });
  t.eq("range offset+length", [await r1.text(), r1.range], ["R2", { offset: 7, length: 2 }]);
  const r2 = await R2.get("docs/hello.txt", { range: { suffix: 6 } });
  t.eq("range suffix", await r2.text(), "world!");
  t.eq("suffix range reported as offset+length", r2.range, { offset: 10, length: 6 });
  const r3 = await R2.get("docs/hello.txt", { range: new Headers({ range: "bytes=0-4" }) });
  t.eq("range from a Range header", await r3.text(), "Hello");
  const r4 = await R2.get("docs/hello.txt", { range: { offset: 7 } });
  t.eq("range offset only", await r4.text(), "R2 world!");
  const buf = await (await R2.get("docs/hello.txt")).arrayBuffer();
  t.eq("get arrayBuffer", buf.byteLength, 16);

  // conditionals
  const nomatch = await R2.get("docs/hello.txt", { onlyIf: { etagMatches: "deadbeef" } });
  t.ok("failed condition gives an object without body", nomatch !== null && !("body" in nomatch) && nomatch.etag === put.etag);
  const match = await R2.get("docs/hello.txt", { onlyIf: { etagMatches: put.etag } });
  t.eq("passing condition gives the body", await match.text(), text);
  const inm = await R2.get("docs/hello.txt", { onlyIf: new Headers({ "if-none-match": put.httpEtag }) });
  t.ok("If-None-Match header condition", inm !== null && !("body" in inm));
  const again = await R2.put("docs/hello.txt", "other", { onlyIf: { etagDoesNotMatch: "*" } });
  t.eq("create-if-absent on an existing key resolves null", again, null);
  t.eq("the object is unchanged", await (await R2.get("docs/hello.txt")).text(), text);
  const cas = await R2.put("docs/hello.txt", "swapped", { onlyIf: { etagMatches: put.etag } });
  t.ok("compare-and-swap with the right etag", cas !== null && cas.size === 7);
  const created = await R2.put("fresh.txt", "new", { onlyIf: { etagDoesNotMatch: "*" } });
  t.ok("create-if-absent on a new key", created !== null);

  // checksums
  const body = enc.encode("checksummed");
  const digest = await sha256(body);
  const withSha = await R2.put("sums.txt", body, { sha256: digest });
  t.eq("sha256 checksum stored", withSha.checksums.toJSON().sha256, hex(digest));
  const md5 = new Uint8Array(await crypto.subtle.digest("MD5", body));
  const withMd5 = await R2.put("sums-md5.txt", body, { md5 });
  t.eq("md5 checksum stored", withMd5.checksums.toJSON().md5, hex(md5));
  await t.throws("wrong sha256 is refused", () => R2.put("bad.txt", body, { sha256: new Uint8Array(32) }), "put: The SHA-256 checksum you specified did not match");
  t.eq("nothing stored after a bad digest", await R2.head("bad.txt"), null);

  // head and misses
  const head = await R2.head("sums.txt");
  t.eq("head size and etag", [head.size, head.etag], [11, withSha.etag]);
  t.ok("head has no body", !("body" in head));
  t.eq("head of a missing key", await R2.head("nope"), null);
  t.eq("get of a missing key", await R2.get("nope"), null);

  // unicode keys and a stream body of known length
  const fls = new FixedLengthStream(5);
  const w = fls.writable.getWriter();
  w.write(enc.encode("12345"));
  w.close();
  await R2.put("\u043a\u043b\u044e\u0447/\u0444\u0430\u0439\u043b.txt", fls.readable);
  t.eq("non-ASCII key through the CF-R2-Request header", await (await R2.get("\u043a\u043b\u044e\u0447/\u0444\u0430\u0439\u043b.txt")).text(), "12345");

  // list
  for (const k of ["list/a.txt", "list/b.txt", "list/sub/c.txt", "list/sub/d.txt", "list/z/e.txt"]) {
    await R2.put(k, k, { customMetadata: { k } });
  }
  const top = await R2.list({ prefix: "list/", delimiter: "/" });
  t.eq("list with delimiter: objects", top.objects.map((o) => o.key), ["list/a.txt", "list/b.txt"]);
  t.eq("list with delimiter: prefixes", top.delimitedPrefixes, ["list/sub/", "list/z/"]);
  t.eq("list not truncated", top.truncated, false);
  let keys = [];
  let cursor;
  let pages = 0;
  for (;;) {
    const page = await R2.list({ prefix: "list/", limit: 2, cursor });
    pages++;
    keys.push(...page.objects.map((o) => o.key));
    if (!page.truncated) break;
    cursor = page.cursor;
    if (pages > 10) break;
  }
  t.eq("list pages with cursor", keys, ["list/a.txt", "list/b.txt", "list/sub/c.txt", "list/sub/d.txt", "list/z/e.txt"]);
  t.eq("list page count", pages, 3);
  const withMeta = await R2.list({ prefix: "list/sub/", include: ["customMetadata", "httpMetadata"] });
  t.eq("list include customMetadata", withMeta.objects.map((o) => o.customMetadata), [{ k: "list/sub/c.txt" }, { k: "list/sub/d.txt" }]);
  const after = await R2.list({ prefix: "list/", startAfter: "list/sub/d.txt" });
  t.eq("list startAfter", after.objects.map((o) => o.key), ["list/z/e.txt"]);

  // delete one and many
  await R2.delete("fresh.txt");
  t.eq("deleted key is gone", await R2.head("fresh.txt"), null);
  await R2.delete(["list/a.txt", "list/b.txt", "never-there"]);
  const left = await R2.list({ prefix: "list/", delimiter: "/" });
  t.eq("delete many", left.objects.length, 0);

  // multipart
  const upload = await R2.createMultipartUpload("big.bin", {
    httpMetadata: { contentType: "application/octet-stream" },
    customMetadata: { k: "v" },
  });
  t.ok("multipart upload id", typeof upload.uploadId === "string" && upload.uploadId.length > 0);
  const part1 = new Uint8Array(5 * 1024 * 1024).fill(65);
  const p1 = await upload.uploadPart(1, part1);
  const p2 = await upload.uploadPart(2, enc.encode("tail"));
  t.eq("uploadPart returns the part number", [p1.partNumber, p2.partNumber], [1, 2]);
  const resumed = R2.resumeMultipartUpload("big.bin", upload.uploadId);
  const done = await resumed.complete([p1, p2]);
  t.eq("multipart object size", done.size, 5 * 1024 * 1024 + 4);
  t.ok("multipart etag ends with -2", done.etag.endsWith("-2"));
  const bigTail = await R2.get("big.bin", { range: { suffix: 6 } });
  t.eq("range across parts", await bigTail.text(), "AAtail");
  t.eq("multipart custom metadata", (await R2.head("big.bin")).customMetadata, { k: "v" });
  const aborted = await R2.createMultipartUpload("aborted.bin");
  await aborted.abort();
  await t.throws("uploadPart after abort", () => aborted.uploadPart(1, enc.encode("x")), "uploadPart: The specified multipart upload does not exist");
  const small = await R2.createMultipartUpload("small.bin");
  const s1 = await small.uploadPart(1, enc.encode("tiny"));
  const s2 = await small.uploadPart(2, enc.encode("tail"));
  await t.throws("non-final part under 5 MiB", () => small.complete([s1, s2]), "completeMultipartUpload: Your proposed upload is smaller than the minimum");
}

export default {
  async fetch(request, env) {
    const t = new Checker();
    try {
      await r2Checks(env, t);
    } catch (e) {
      t.fail("uncaught", String(e && e.stack ? e.stack : e));
    }
    return Response.json(t.report());
  },
};
