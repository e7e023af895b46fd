// Calls every D1 operation through the D1 binding and checks every result.
import { Checker } from "./check.js";

async function d1Checks(env, t, info) {
  const DB = env.DB;
  const created = await DB.exec(
    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER, pic BLOB);\n" +
      "CREATE INDEX users_age ON users (age);",
  );
  t.eq("exec counts one query per line", created.count, 2);
  t.ok("exec sums durations", typeof created.duration === "number");

  const insert = DB.prepare("INSERT INTO users (name, age, pic) VALUES (?1, ?2, ?3)");
  const r1 = await insert.bind("bob", 40, null).run();
  t.eq("run succeeds", r1.success, true);
  t.eq("run meta.changes", r1.meta.changes, 1);
  t.eq("run meta.last_row_id", r1.meta.last_row_id, 1);
  t.ok("run meta.size_after", r1.meta.size_after > 0);
  t.eq("run answers success and meta only", Object.keys(r1).sort(), ["meta", "success"]);
  await insert.bind("alice", 30, new Uint8Array([1, 2, 3])).run();

  const all = await DB.prepare("SELECT id, name, age, pic FROM users ORDER BY id").all();
  t.eq("all results", all.results, [
    { id: 1, name: "bob", age: 40, pic: null },
    { id: 2, name: "alice", age: 30, pic: [1, 2, 3] },
  ]);
  t.ok("all meta", all.success === true && typeof all.meta.duration === "number" && all.meta.rows_read >= 2);
  t.eq("first row", await DB.prepare("SELECT name, age FROM users WHERE age < ?").bind(35).first(), { name: "alice", age: 30 });
  t.eq("first column", await DB.prepare("SELECT name FROM users WHERE id = ?").bind(1).first("name"), "bob");
  t.eq("first of nothing", await DB.prepare("SELECT * FROM users WHERE id = 99").first(), null);
  t.eq("raw", await DB.prepare("SELECT id, name FROM users ORDER BY id").raw(), [[1, "bob"], [2, "alice"]]);
  t.eq("raw with column names", await DB.prepare("SELECT id, name FROM users ORDER BY id").raw({ columnNames: true }),
    [["id", "name"], [1, "bob"], [2, "alice"]]);
  t.eq("booleans bind as integers", await DB.prepare("SELECT ?1 AS t, ?2 AS f").bind(true, false).first(), { t: 1, f: 0 });
  t.eq("reals and strings", await DB.prepare("SELECT ? AS r, ? AS s").bind(1.5, "caf\u00e9").first(), { r: 1.5, s: "caf\u00e9" });

  // batch: one transaction
  const batch = await DB.batch([
    insert.bind("carol", 25, null),
    insert.bind("dave", 35, null),
    DB.prepare("SELECT count(*) AS n FROM users"),
  ]);
  t.eq("batch results in order", batch.map((r) => r.success), [true, true, true]);
  t.eq("batch sees its own writes", batch[2].results, [{ n: 4 }]);
  t.eq("batch insert meta", batch[1].meta.last_row_id, 4);
  await t.throws("a failing batch throws", () => DB.batch([
    insert.bind("eve", 20, null),
    DB.prepare("INSERT INTO nosuchtable VALUES (1)"),
  ]), "D1_ERROR: no such table: nosuchtable");
  t.eq("a failing batch is rolled back", await DB.prepare("SELECT count(*) AS n FROM users").first("n"), 4);

  // errors
  await t.throws("SQL error", () => DB.prepare("SELECT * FROM nosuchtable").all(), "D1_ERROR: no such table: nosuchtable");
  await t.throws("constraint error", () => insert.bind(null, 1, null).run(), "D1_ERROR: NOT NULL constraint failed: users.name");
  await t.throws("exec error names the line", () => DB.exec("INSERT INTO users (name) VALUES ('x');\nSELECT * FROM nope;"),
    "D1_EXEC_ERROR: Error in line 2: SELECT * FROM nope;: no such table: nope");
  await t.throws("transactions are refused", () => DB.prepare("BEGIN TRANSACTION").run(), "D1_ERROR:");
  t.eq("exec lines before the failure stay applied", await DB.prepare("SELECT count(*) AS n FROM users WHERE name = 'x'").first("n"), 1);

  // sessions
  const session = DB.withSession("first-primary");
  const sr = await session.prepare("INSERT INTO users (name, age) VALUES (?, ?)").bind("sess", 50).run();
  t.eq("a session writes", sr.meta.changes, 1);
  const sread = await session.prepare("SELECT name FROM users WHERE age = 50").all();
  t.eq("a session reads its writes", sread.results, [{ name: "sess" }]);
  const sbatch = await session.batch([DB.prepare("SELECT 1 AS one")]);
  t.eq("a session batches", sbatch[0].results, [{ one: 1 }]);
  info.bookmark = session.getBookmark();
  t.ok("a session gets a bookmark from x-cf-d1-session-commit-token", typeof info.bookmark === "string" && info.bookmark.length > 0);
  const before = info.bookmark;
  await session.prepare("INSERT INTO users (name, age) VALUES ('later', 51)").run();
  t.ok("a write moves the session's bookmark forward", session.getBookmark() > before);
  await session.prepare("DELETE FROM users WHERE name = 'later'").run();
  const unconstrained = DB.withSession();
  t.eq("an unconstrained session reads", await unconstrained.prepare("SELECT count(*) AS n FROM users").first("n"), 6);
  if (info.bookmark) {
    const resumed = DB.withSession(info.bookmark);
    t.eq("a session resumed from a bookmark reads", await resumed.prepare("SELECT name FROM users WHERE age = 50").first("name"), "sess");
    t.ok("bookmarks only move forward", resumed.getBookmark() >= info.bookmark);
  }
}

export default {
  async fetch(request, env) {
    const t = new Checker();
    const info = {};
    try {
      await d1Checks(env, t, info);
    } catch (e) {
      t.fail("uncaught", String(e && e.stack ? e.stack : e));
    }
    return Response.json({ ...t.report(), info });
  },
};
