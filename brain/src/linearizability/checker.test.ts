// The checker itself, on crafted histories: what etcd may answer is
// accepted, and each kind of violation is rejected with an explanation that
// names it.
import { describe, expect, it } from "vitest";
import { checkHistory } from "./check.js";
import type { History, KeyValue, Operation, Request, Response, WatchEvent, WatchHistory } from "./history.js";

const kv = (key: string, value: string, modRevision: number, createRevision = modRevision, version = 1): KeyValue => ({
  key,
  value,
  modRevision,
  createRevision,
  version,
});

/** An operation on `client` from `call` to `ret` (Infinity: outcome unknown). */
function op(client: number, call: number, ret: number, request: Request, response?: Response): Operation {
  return { client, call, return: ret, request, ...(response ? { response } : {}) };
}
const put = (key: string, value: string, revision: number) =>
  [{ type: "put", key, value } as Request, { type: "put", revision } as Response] as const;
const get = (key: string, revision: number, ...kvs: KeyValue[]) =>
  [{ type: "range", key } as Request, { type: "range", revision, kvs, count: kvs.length, more: false } as Response] as const;
const all = (revision: number, ...kvs: KeyValue[]) =>
  [{ type: "range", key: "\0", end: "\0" } as Request, { type: "range", revision, kvs, count: kvs.length, more: false } as Response] as const;

const putEvent = (value: KeyValue, prevKv?: KeyValue): WatchEvent => ({ type: "put", kv: value, ...(prevKv ? { prevKv } : {}) });
const deleteEvent = (key: string, revision: number, prevKv: KeyValue): WatchEvent => ({
  type: "delete",
  kv: { key, value: "", createRevision: 0, modRevision: revision, version: 0 },
  prevKv,
});
const watch = (...events: WatchEvent[]): WatchHistory => ({
  name: "w",
  prevKv: true,
  segments: [{ startRevision: 1, responses: events.map((event) => ({ revision: event.kv.modRevision, events: [event] })) }],
});

function check(operations: Operation[], watches: WatchHistory[] = [], budgetMs?: number) {
  const history: History = { operations, watches };
  return checkHistory(history, budgetMs === undefined ? {} : { budgetMs });
}

describe("linearizability checker: accepts what etcd may answer", () => {
  it("a sequential history of every request kind, with its watch", () => {
    const a1 = kv("a", "1", 2);
    const b1 = kv("b", "1", 3);
    const a2 = kv("a", "2", 4, 2, 2);
    const report = check(
      [
        op(0, 0, 1, ...put("a", "1", 2)),
        op(0, 2, 3, ...put("b", "1", 3)),
        op(0, 4, 5, ...get("a", 3, a1)),
        op(
          0,
          6,
          7,
          { type: "txn", compare: [{ key: "a", target: "mod", result: "equal", operand: 2 }], success: [{ type: "put", key: "a", value: "2", prevKv: true }, { type: "range", key: "a" }], failure: [] },
          { type: "txn", revision: 4, succeeded: true, responses: [{ type: "put", prevKv: a1 }, { type: "range", kvs: [a2], count: 1, more: false }] },
        ),
        op(
          0,
          8,
          9,
          { type: "txn", compare: [{ key: "a", target: "value", result: "equal", operand: "1" }], success: [{ type: "delete", key: "a" }], failure: [{ type: "range", key: "b" }] },
          { type: "txn", revision: 4, succeeded: false, responses: [{ type: "range", kvs: [b1], count: 1, more: false }] },
        ),
        op(0, 10, 11, { type: "delete", key: "b", prevKv: true }, { type: "delete", revision: 5, deleted: 1, prevKvs: [b1] }),
        op(0, 12, 13, { type: "delete", key: "b" }, { type: "delete", revision: 5, deleted: 0, prevKvs: [] }),
        op(1, 14, 15, { type: "range", key: "\0", end: "\0", serializable: true }, { type: "range", revision: 5, kvs: [a2], count: 1, more: false }),
        op(1, 16, 17, { type: "range", key: "\0", end: "\0", revision: 3 }, { type: "range", revision: 5, kvs: [a1, b1], count: 2, more: false }),
        op(1, 18, 19, { type: "range", key: "\0", end: "\0", revision: 3, limit: 1 }, { type: "range", revision: 5, kvs: [a1], count: 2, more: true }),
      ],
      [watch(putEvent(a1), putEvent(b1), putEvent(a2, a1), deleteEvent("b", 5, b1))],
    );
    expect(report.violations).toEqual([]);
    expect(report.status).toBe("linearizable");
    expect(report.stats.finalRevision).toBe(5);
  });

  it("concurrent writes committed in the opposite order of their calls, and a read overlapping both", () => {
    const report = check([
      op(0, 0, 10, ...put("a", "x", 3)),
      op(1, 1, 9, ...put("a", "y", 2)),
      op(2, 2, 8, ...get("a", 2, kv("a", "y", 2))),
      op(3, 11, 12, ...get("a", 3, kv("a", "x", 3, 2, 2))),
    ]);
    expect(report.violations).toEqual([]);
  });

  it("a failed write that took effect (seen later) and one that did not", () => {
    const report = check(
      [
        op(0, 0, Infinity, { type: "put", key: "a", value: "lost-ack" }),
        op(1, 1, Infinity, { type: "put", key: "b", value: "never" }),
        op(2, 5, 6, ...all(2, kv("a", "lost-ack", 2))),
      ],
      [watch(putEvent(kv("a", "lost-ack", 2)))],
    );
    expect(report.violations).toEqual([]);
    expect(report.stats).toMatchObject({ unknown: 2, unknownApplied: 1 });
  });

  it("a failed write wholly inside a downtime did not happen; outside one it may have", () => {
    const failed: Operation = { ...op(0, 10, Infinity, { type: "put", key: "a", value: "x" }), failedAt: 12 };
    const read = op(1, 20, 21, ...get("a", 2, kv("a", "x", 2)));
    expect(checkHistory({ operations: [failed, read], watches: [] }).status).toBe("linearizable");
    const down = checkHistory({ operations: [failed, read], watches: [], downtimes: [{ from: 9, to: 13 }] });
    expect(down.stats.dropped).toBe(1);
    expect(down.violations[0]).toMatch(/^skipped revisions: 1 revision\(s\) up to 2/);
    const straddling = checkHistory({ operations: [failed, read], watches: [], downtimes: [{ from: 11, to: 13 }] });
    expect(straddling.status).toBe("linearizable");
  });

  it("picks, among failed writes, the one the watch saw, even when reads cannot tell them apart", () => {
    // Both unknown puts to "a" fit the reads (the key is overwritten before anyone reads it); the watch decides.
    const report = check(
      [
        op(0, 0, Infinity, { type: "put", key: "a", value: "u1" }),
        op(1, 0, Infinity, { type: "put", key: "a", value: "u2" }),
        op(2, 5, 6, ...put("a", "known", 3)),
        op(2, 7, 8, ...get("a", 3, kv("a", "known", 3, 2, 2))),
      ],
      [watch(putEvent(kv("a", "u2", 2)), putEvent(kv("a", "known", 3, 2, 2), kv("a", "u2", 2)))],
    );
    expect(report.violations).toEqual([]);
  });
});

describe("linearizability checker: rejects each kind of violation, saying which", () => {
  it("stale read: a revision older than a write that had already returned", () => {
    const report = check([op(0, 0, 1, ...put("a", "1", 2)), op(1, 2, 3, ...get("a", 1))]);
    expect(report.status).toBe("violation");
    expect(report.violations[0]).toMatch(/^stale read: op #1 .* Range a → revision 1 was called after op #0 .* Put a=1 → revision 2 had returned/);
  });

  it("stale read: the current revision, but an old value", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(0, 2, 3, ...put("a", "2", 3)),
      op(1, 4, 5, ...get("a", 3, kv("a", "1", 2))),
    ]);
    expect(report.status).toBe("violation");
    expect(report.violations[0]).toMatch(/not linearizable/);
    expect(report.violations[0]).toMatch(/op #2 .*Range a.*: response: returned a=1 \(mod 2.*\) where etcd holds a=2 \(mod 3/);
    expect(report.violations[0]).toMatch(/revision 3 was written by op #1: Put a=2/);
  });

  it("lost write: an acknowledged put missing from a later read", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(1, 2, 3, ...put("b", "1", 3)),
      op(2, 4, 5, ...all(3, kv("b", "1", 3))),
    ]);
    expect(report.status).toBe("violation");
    expect(report.violations[0]).toMatch(/op #2 .*: response: missing a=1 \(mod 2/);
    expect(report.violations[0]).toMatch(/revision 2 was written by op #0: Put a=1/);
  });

  it("revision reuse: two writes acknowledged at the same revision", () => {
    const report = check([op(0, 0, 1, ...put("a", "1", 2)), op(1, 0, 1, ...put("b", "1", 2))]);
    expect(report.violations[0]).toMatch(/^revision reuse: two writes were both acknowledged at revision 2/);
  });

  it("a skipped revision no write could have made", () => {
    const report = check([op(0, 0, 1, ...put("a", "1", 2)), op(0, 2, 3, ...put("a", "2", 4))]);
    expect(report.violations[0]).toMatch(/^skipped revisions: 1 revision\(s\) up to 4 \(first: 3\)/);
  });

  it("write order against real time", () => {
    const report = check([op(0, 0, 1, ...put("a", "1", 3)), op(1, 2, 3, ...put("b", "1", 2))]);
    expect(report.violations[0]).toMatch(/^write order against real time: op #1 .* reports the lower revision 2/);
  });

  it("read from the future: a revision whose write had not been called yet", () => {
    const report = check([op(1, 0, 1, ...get("a", 2, kv("a", "1", 2))), op(0, 2, 3, ...put("a", "1", 2))]);
    expect(report.violations.join("\n")).toMatch(/read from the future: op #0/);
  });

  it("txn compare evaluated on a stale state", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(0, 2, 3, ...put("a", "2", 3)),
      op(
        1,
        4,
        5,
        { type: "txn", compare: [{ key: "a", target: "mod", result: "equal", operand: 2 }], success: [{ type: "put", key: "b", value: "x" }], failure: [] },
        { type: "txn", revision: 4, succeeded: true, responses: [{ type: "put" }] },
      ),
    ]);
    expect(report.status).toBe("violation");
    expect(report.violations[0]).toMatch(/op #2 .*Txn if mod\(a\) equal 2.*: took the success branch, but its compares are false on this state/);
  });

  it("txn compare on version and value, failure branch taken where success was due", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(
        1,
        2,
        3,
        {
          type: "txn",
          compare: [
            { key: "a", target: "version", result: "equal", operand: 1 },
            { key: "a", target: "value", result: "equal", operand: "1" },
          ],
          success: [{ type: "put", key: "b", value: "x" }],
          failure: [{ type: "put", key: "c", value: "y" }],
        },
        { type: "txn", revision: 3, succeeded: false, responses: [{ type: "put" }] },
      ),
    ]);
    expect(report.violations[0]).toMatch(/took the failure branch, but its compares are true on this state/);
  });

  it("wrong prev_kv, version or create revision in a response", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(0, 2, 3, { type: "put", key: "a", value: "2", prevKv: true }, { type: "put", revision: 3, prevKv: kv("a", "0", 2) }),
    ]);
    expect(report.violations[0]).toMatch(/prev_kv a=0 \(mod 2.*\), expected a=1 \(mod 2/);
    const versions = check([op(0, 0, 1, ...put("a", "1", 2)), op(0, 2, 3, ...put("a", "2", 3)), op(0, 4, 5, ...get("a", 3, kv("a", "2", 3, 3, 1)))]);
    expect(versions.violations[0]).toMatch(/returned a=2 \(mod 3, create 3, version 1\) where etcd holds a=2 \(mod 3, create 2, version 2\)/);
  });

  it("a serializable read that matches no revision's state, and a client going back in time", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(0, 2, 3, ...put("a", "2", 3)),
      op(1, 4, 5, { type: "range", key: "a", serializable: true }, { type: "range", revision: 3, kvs: [kv("a", "1", 2)], count: 1, more: false }),
      op(0, 6, 7, { type: "range", key: "a", serializable: true }, { type: "range", revision: 2, kvs: [kv("a", "1", 2)], count: 1, more: false }),
    ]);
    const text = report.violations.join("\n");
    expect(text).toMatch(/op #2 .*serializable.*: at revision 3, response: returned a=1 \(mod 2.*\) where etcd holds a=2/);
    expect(text).toMatch(/client 0 went back in time: op #3/);
  });

  it("a read at a past revision that returns another revision's data", () => {
    const report = check([
      op(0, 0, 1, ...put("a", "1", 2)),
      op(0, 2, 3, ...put("a", "2", 3)),
      op(0, 4, 5, { type: "range", key: "a", revision: 2 }, { type: "range", revision: 3, kvs: [kv("a", "2", 3, 2, 2)], count: 1, more: false }),
    ]);
    expect(report.violations[0]).toMatch(/op #2 .*at revision 2.*: at revision 2, response: returned a=2 \(mod 3.*where etcd holds a=1 \(mod 2/);
  });

  describe("watch", () => {
    const writes = [op(0, 0, 1, ...put("a", "1", 2)), op(0, 2, 3, ...put("b", "1", 3)), op(0, 4, 5, ...put("a", "2", 4))];
    const [e2, e3, e4] = [putEvent(kv("a", "1", 2)), putEvent(kv("b", "1", 3)), putEvent(kv("a", "2", 4, 2, 2), kv("a", "1", 2))];

    it("accepts the exact committed sequence, across a reconnect", () => {
      const resumed: WatchHistory = {
        name: "w",
        prevKv: true,
        segments: [
          { startRevision: 1, responses: [{ revision: 3, events: [e2, e3] }], ended: "server killed" },
          { startRevision: 4, responses: [{ revision: 4, events: [e4] }] },
        ],
      };
      expect(check(writes, [resumed]).violations).toEqual([]);
    });

    it("gap", () => {
      expect(check(writes, [watch(e2, e4)]).violations[0]).toMatch(/^watch w: gap: revision 3 \(PUT b=1 .*\) was never delivered; the next event was at revision 4/);
    });

    it("reorder", () => {
      expect(check(writes, [watch(e3, e2, e4)]).violations[0]).toMatch(/^watch w: gap: revision 2 .* next event was at revision 3/);
      expect(check(writes, [watch(e2, e4, e3)]).violations[0]).toMatch(/^watch w: gap: revision 3/);
      const duplicate = check(writes, [watch(e2, e3, e3, e4)]).violations[0];
      expect(duplicate).toMatch(/^watch w: (revision 3 delivered again or out of order|revision 3 arrived in a response after one holding revision 3)/);
    });

    it("stops short", () => {
      expect(check(writes, [watch(e2, e3)]).violations[0]).toMatch(/^watch w: stopped after revision 3; revision 4 \(PUT a=2/);
    });

    it("wrong prev_kv or value", () => {
      const wrongPrev = putEvent(kv("a", "2", 4, 2, 2), kv("a", "0", 2));
      expect(check(writes, [watch(e2, e3, wrongPrev)]).violations[0]).toMatch(/^watch w: at revision 4 delivered PUT a=2 .* prev a=0/);
    });

    it("a revision split over two responses", () => {
      const txn = [
        op(
          0,
          0,
          1,
          { type: "txn", compare: [], success: [{ type: "put", key: "a", value: "1" }, { type: "put", key: "b", value: "1" }], failure: [] },
          { type: "txn", revision: 2, succeeded: true, responses: [{ type: "put" }, { type: "put" }] },
        ),
      ];
      const split: WatchHistory = {
        name: "w",
        prevKv: true,
        segments: [{ startRevision: 1, responses: [{ revision: 2, events: [putEvent(kv("a", "1", 2))] }, { revision: 2, events: [putEvent(kv("b", "1", 2))] }] }],
      };
      expect(check(txn, [split]).violations[0]).toMatch(/^watch w: revision 2 was split over several responses/);
      const whole: WatchHistory = { ...split, segments: [{ startRevision: 1, responses: [{ revision: 2, events: [putEvent(kv("a", "1", 2)), putEvent(kv("b", "1", 2))] }] }] };
      expect(check(txn, [whole]).violations).toEqual([]);
    });

    it("progress notifications: accepted when every event up to their revision was sent, rejected when one was not", () => {
      const progress = (revision: number) => ({ revision, events: [] });
      const event = (e: WatchEvent) => ({ revision: e.kv.modRevision, events: [e] });
      const honest: WatchHistory = { name: "w", prevKv: true, segments: [{ startRevision: 1, responses: [progress(1), event(e2), progress(2), event(e3), event(e4), progress(4)] }] };
      expect(check(writes, [honest]).violations).toEqual([]);
      const ahead: WatchHistory = { name: "w", prevKv: true, segments: [{ startRevision: 1, responses: [event(e2), progress(3), event(e3), event(e4)] }] };
      expect(check(writes, [ahead]).violations[0]).toMatch(/^watch w: a progress notification claimed revision 3 before revision 3 \(PUT b=1 .*\) was delivered/);
    });

    it("a prefix watch sees exactly the writes to its keys; a progress notification covers the rest", () => {
      const prefixed: WatchHistory = {
        name: "w",
        prevKv: false,
        range: { key: "a", end: "b" },
        segments: [{ startRevision: 1, responses: [{ revision: 2, events: [putEvent(kv("a", "1", 2))] }, { revision: 4, events: [putEvent(kv("a", "2", 4, 2, 2))] }] }],
      };
      expect(check(writes, [prefixed]).violations).toEqual([]);
      const leaked = structuredClone(prefixed);
      leaked.segments[0]!.responses.splice(1, 0, { revision: 3, events: [putEvent(kv("b", "1", 3))] });
      expect(check(writes, [leaked]).violations[0]).toMatch(/^watch w: (revision 3 delivered again or out of order|at revision 4 delivered PUT b=1)/);
      const withPrev = structuredClone(prefixed);
      withPrev.segments[0]!.responses[1]!.events[0]!.prevKv = kv("a", "1", 2);
      expect(check(writes, [withPrev]).violations[0]).toMatch(/^watch w: at revision 4 delivered PUT a=2 .* prev a=1/);
    });

    it("unknown writes the watch contradicts", () => {
      const report = check(
        [op(0, 0, Infinity, { type: "put", key: "a", value: "u1" }), op(1, 5, 6, ...get("b", 2))],
        [watch(putEvent(kv("a", "other", 2)))],
      );
      expect(report.status).toBe("violation");
      expect(report.violations.join("\n")).toMatch(/watch w: at revision 2 delivered PUT a=other .* but the write committed there made PUT a=u1/);
    });
  });

  it("a search that runs out of time fails as a timeout, not a pass", () => {
    // 13 failed puts must fill revisions 2..14 in some order, and the final read fits none: the search is factorial.
    const unknown = Array.from({ length: 13 }, (_, i) => op(i, 0, Infinity, { type: "put", key: `k${i}`, value: "v" }));
    const kvs = Array.from({ length: 13 }, (_, i) => kv(`k${i}`, "v", 2 + i));
    kvs[0] = kv("k0", "v", 14);
    kvs[12] = kv("k12", "v", 14);
    const report = check([...unknown, op(99, 10, 11, ...all(14, ...kvs))], [], 100);
    expect(report.status).toBe("timeout");
    expect(report.violations[0]).toMatch(/ran out of its 100 ms budget/);
  });
});
