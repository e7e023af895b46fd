// A tiny checker: each check is named; failures carry what was expected and what came back.
function canon(v) {
  if (v instanceof Map) return { Map: [...v.entries()].map(([k, x]) => [k, canon(x)]) };
  if (Array.isArray(v)) return v.map(canon);
  if (v && typeof v === "object" && !(v instanceof Date)) {
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]));
  }
  return v === undefined ? "<undefined>" : v;
}

export class Checker {
  constructor() {
    this.passed = [];
    this.failures = [];
  }
  ok(name, cond, detail) {
    if (cond) this.passed.push(name);
    else this.failures.push({ name, detail: detail ?? "condition was false" });
  }
  eq(name, actual, expected) {
    const a = JSON.stringify(canon(actual));
    const e = JSON.stringify(canon(expected));
    this.ok(name, a === e, { expected: e, actual: a });
  }
  fail(name, detail) {
    this.failures.push({ name, detail });
  }
  async throws(name, fn, messagePrefix) {
    try {
      await fn();
      this.failures.push({ name, detail: `did not throw; expected ${messagePrefix}` });
    } catch (e) {
      const msg = String(e && e.message);
      this.ok(name, msg.startsWith(messagePrefix), { expected: messagePrefix, actual: msg });
    }
  }
  report() {
    return { passed: this.passed.length, passedNames: this.passed, failures: this.failures };
  }
}
