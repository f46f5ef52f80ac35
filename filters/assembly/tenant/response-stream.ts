// The streaming JSON transducer of the response side: kube-apiserver's JSON
// in, the tenant's view out, chunk by chunk. Bytes pass through while a
// small pushdown automaton tracks where they are (which object, which key);
// only the subtrees that carry names are captured whole (an object's
// metadata, RBAC subjects, a Status's details, a discovery group, ...),
// parsed, rewritten (response-rewrite.ts) and written back. A list item, a
// Table row or a watch event is held back until its metadata has shown
// whether it is the tenant's; one that is not is dropped without a trace.
//
// Memory is bounded by the largest captured subtree and held unit (caps
// below), never by the size of a response: a 5,000-item list and an
// hour-long watch stream flow through. Whatever cannot be rewritten safely
// (malformed JSON, a cap exceeded, an object that is not the tenant's where
// it cannot be dropped) fails the stream: the caller resets it.
import { decodeUtf8 } from "../sdk/utf8";
import { domMalformed, parseDom, serializeDom, DomNode } from "./response-dom";
import {
  rewriteDiscoveryGroup,
  rewriteEmbeddedMetadata,
  rewriteObjectMetadata,
  rewriteObjectReference,
  rewriteReview,
  rewriteRoleRef,
  rewriteRules,
  rewriteStatusDetails,
  rewriteSubjects,
  Verdict,
} from "./response-rewrite";
import { ByteBuffer } from "./response-bytes";
import { ResponseScope } from "./response-scope";

/** Largest subtree captured whole (an object's metadata can be as big as the object: etcd's limit is 1.5 MiB). */
export const maxCaptureBytes: i32 = 3 << 20;
/** Largest unit (list item, row, watch event) held back before its verdict. */
export const maxHeldBytes: i32 = (3 << 20) + (64 << 10);
/** Deeper containers pass through unexamined (the frames stay bounded). */
export const maxFrames: i32 = 512;
const maxKeyBytes: i32 = 64;

const enum State {
  Value,
  After,
  KeyOrEnd,
  Key,
  KeyString,
  KeyEscape,
  Colon,
  String,
  StringEscape,
  Literal,
  Raw,
  Capture,
  Failed,
}

const enum Role {
  /** A top-level object until its first key says watch event or object. */
  TopObject,
  /** A watch event: {"type": ..., "object": {...}}. */
  Event,
  /** A Kubernetes object (or list, Status, Table, discovery document). */
  Object,
  /** Anything inside an object's body: nested apiVersion and metadata are rewritten. */
  Nested,
  Items,
  Rows,
  Row,
  Cells,
  Groups,
  CrdSpec,
}

const enum Capture {
  ApiVersion,
  Kind,
  Metadata,
  Scrub,
  StatusDetails,
  Subjects,
  RoleRef,
  Rules,
  ObjectReference,
  ReviewSpec,
  ReviewStatus,
  DiscoveryGroup,
  GroupName,
  GroupVersions,
  GroupVersion,
  CrdGroup,
  NestedApiVersion,
  NestedReference,
  EmbeddedMetadata,
}

const enum Act {
  Pass,
  Descend,
  Capture,
}

class Frame {
  isObject: bool = false;
  role: Role = Role.Nested;
  /** Object frames: the object's kind and upstream API group, as far as known. */
  kind: string = "";
  group: string = "";
  /** Object frames: the member being read. */
  key: string = "";
  /** Members/elements written out (drives commas). */
  count: i32 = 0;
  /** Members/elements read. */
  seen: i32 = 0;
  /** Index in the hold stack while this unit's verdict is pending, else -1. */
  hold: i32 = -1;

  reset(isObject: bool, role: Role): void {
    this.isObject = isObject;
    this.role = role;
    this.kind = "";
    this.group = "";
    this.key = "";
    this.count = 0;
    this.seen = 0;
    this.hold = -1;
  }
}

function isSpace(c: u32): bool {
  return c == 0x20 || c == 0x0a || c == 0x0d || c == 0x09;
}

function isLiteralByte(c: u32): bool {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c == 0x2d || c == 0x2b || c == 0x2e;
}

function groupOf(apiVersion: string): string {
  const slash = apiVersion.lastIndexOf("/");
  return slash < 0 ? "" : apiVersion.substring(0, slash);
}

export class ResponseTransducer {
  /** Why the stream failed ("" while it has not). */
  failure: string = "";
  private out: ByteBuffer = new ByteBuffer();
  private captured: ByteBuffer = new ByteBuffer();
  private frames: Frame[] = [];
  private depth: i32 = 0;
  /** Output positions where held units start, outermost first. */
  private holds: i32[] = [];
  private state: State = State.Value;

  private key: ByteBuffer = new ByteBuffer();
  private keyLong: bool = false;

  private rawDepth: i32 = 0;
  private rawInString: bool = false;
  private rawEscape: bool = false;
  private rawEmit: bool = true;
  /** The raw run discards the rest of a dropped unit whose frame is still open. */
  private rawClosesFrame: bool = false;

  private captureKind: Capture = Capture.Kind;
  private captureScalar: bool = false;

  private planAct: Act = Act.Pass;
  private planRole: Role = Role.Nested;
  private planCapture: Capture = Capture.Kind;
  private planHold: bool = false;

  constructor(private scope: ResponseScope) {}

  get failed(): bool {
    return this.state == State.Failed;
  }

  /** Bytes held back right now (a pending unit or a capture): what the caps bound. */
  get pendingBytes(): i32 {
    return this.out.length + this.captured.length;
  }

  /**
   * Feeds one chunk of the upstream body; answers what may be sent to the
   * client now. `end`: this is the last chunk. After a failure every answer
   * is empty.
   */
  push(chunk: ArrayBuffer, end: bool): ArrayBuffer {
    if (this.state != State.Failed) this.consume(changetype<usize>(chunk), chunk.byteLength);
    if (end && this.state != State.Failed) this.finish();
    if (this.state == State.Failed) {
      this.out.clear();
      this.captured.clear();
      return new ArrayBuffer(0);
    }
    if (this.captured.length > maxCaptureBytes) {
      this.fail("a JSON subtree to rewrite is larger than " + maxCaptureBytes.toString() + " bytes");
      return new ArrayBuffer(0);
    }
    const ready = this.holds.length > 0 ? this.holds[0] : this.out.length;
    if (this.out.length - ready > maxHeldBytes) {
      this.fail("an item held for its verdict is larger than " + maxHeldBytes.toString() + " bytes");
      return new ArrayBuffer(0);
    }
    for (let i = 0; i < this.holds.length; i++) this.holds[i] -= ready;
    return this.out.takeFront(ready);
  }

  private fail(reason: string): void {
    if (this.state == State.Failed) return;
    this.failure = reason;
    this.state = State.Failed;
  }

  private finish(): void {
    if (this.state == State.Literal && this.depth == 0) this.state = State.Value;
    if (this.depth != 0 || this.state != State.Value) this.fail("the upstream response ended inside a JSON value");
  }

  private consume(base: usize, size: i32): void {
    let i = 0;
    while (i < size) {
      const state = this.state;
      // Fast paths: long strings and untouched subtrees are copied in runs.
      if (state == State.String) {
        let j = i;
        while (j < size) {
          const c = <u32>load<u8>(base + <usize>j);
          if (c == 0x22 || c == 0x5c) break;
          j++;
        }
        this.out.pushRange(base + <usize>i, j - i);
        i = j;
        if (i == size) break;
      } else if (state == State.Raw && this.rawInString && !this.rawEscape) {
        let j = i;
        while (j < size) {
          const c = <u32>load<u8>(base + <usize>j);
          if (c == 0x22 || c == 0x5c) break;
          j++;
        }
        if (this.rawEmit) this.out.pushRange(base + <usize>i, j - i);
        i = j;
        if (i == size) break;
      } else if (state == State.Capture && !this.captureScalar && this.rawInString && !this.rawEscape) {
        let j = i;
        while (j < size) {
          const c = <u32>load<u8>(base + <usize>j);
          if (c == 0x22 || c == 0x5c) break;
          j++;
        }
        this.captured.pushRange(base + <usize>i, j - i);
        i = j;
        if (i == size) break;
      } else if (state == State.Failed) return;
      this.step(<u32>load<u8>(base + <usize>i));
      i++;
    }
  }

  private step(c: u32): void {
    switch (this.state) {
      case State.Value:
        this.valueByte(c);
        break;
      case State.After:
        this.afterByte(c);
        break;
      case State.KeyOrEnd:
      case State.Key:
        this.keyStartByte(c);
        break;
      case State.KeyString:
        this.out.push(<u8>c);
        if (c == 0x22) this.endKey();
        else {
          if (c == 0x5c) this.state = State.KeyEscape;
          this.collectKeyByte(c);
        }
        break;
      case State.KeyEscape:
        this.out.push(<u8>c);
        this.collectKeyByte(c);
        this.state = State.KeyString;
        break;
      case State.Colon:
        if (isSpace(c)) break;
        if (c != 0x3a) {
          this.fail("malformed JSON from upstream: ':' expected after an object key");
          break;
        }
        this.out.push(<u8>c);
        this.state = State.Value;
        break;
      case State.String:
        this.out.push(<u8>c);
        if (c == 0x5c) this.state = State.StringEscape;
        else if (c == 0x22) this.valueDone();
        break;
      case State.StringEscape:
        this.out.push(<u8>c);
        this.state = State.String;
        break;
      case State.Literal:
        if (isLiteralByte(c)) this.out.push(<u8>c);
        else {
          this.valueDone();
          this.step(c);
        }
        break;
      case State.Raw:
        this.rawByte(c);
        break;
      case State.Capture:
        this.captureByte(c);
        break;
      default:
        break;
    }
  }

  // --- values ---

  private valueByte(c: u32): void {
    if (isSpace(c)) {
      if (this.depth == 0) this.out.push(<u8>c);
      return;
    }
    if (this.depth > 0) {
      const frame = this.frames[this.depth - 1];
      if (!frame.isObject && c == 0x5d && frame.seen == 0) {
        this.closeFrame(c);
        return;
      }
    }
    this.startValue(c);
  }

  private startValue(c: u32): void {
    const opens = c == 0x7b || c == 0x5b;
    const scalar = c == 0x22 || c == 0x2d || (c >= 0x30 && c <= 0x39) || c == 0x74 || c == 0x66 || c == 0x6e;
    if (!opens && !scalar) {
      this.fail("the upstream response is not JSON");
      return;
    }
    const parent: Frame | null = this.depth > 0 ? this.frames[this.depth - 1] : null;
    if (parent !== null) parent.seen++;
    this.plan(parent, c);
    if (this.planAct == Act.Descend && this.depth >= maxFrames) this.planAct = Act.Pass;
    if (this.planAct == Act.Capture) {
      this.captured.clear();
      this.captured.push(<u8>c);
      this.captureKind = this.planCapture;
      this.captureScalar = !opens && c != 0x22;
      this.rawDepth = opens ? 1 : 0;
      this.rawInString = c == 0x22;
      this.rawEscape = false;
      this.state = State.Capture;
      return;
    }
    if (this.planAct == Act.Descend) {
      if (this.planHold) {
        const mark = this.out.length;
        if (parent !== null && !parent.isObject && parent.count > 0) this.out.push(0x2c);
        this.pushFrame(c == 0x7b, this.planRole);
        const frame = this.frames[this.depth - 1];
        frame.hold = this.holds.length;
        this.holds.push(mark);
      } else {
        this.separator(parent);
        this.pushFrame(c == 0x7b, this.planRole);
      }
      this.inherit();
      this.out.push(<u8>c);
      this.state = c == 0x7b ? State.KeyOrEnd : State.Value;
      return;
    }
    this.separator(parent);
    this.out.push(<u8>c);
    if (opens) {
      this.rawDepth = 1;
      this.rawInString = false;
      this.rawEscape = false;
      this.rawEmit = true;
      this.state = State.Raw;
    } else if (c == 0x22) this.state = State.String;
    else this.state = State.Literal;
  }

  /** A comma before an array element that is written now. */
  private separator(parent: Frame | null): void {
    if (parent === null || parent.isObject) return;
    if (parent.count > 0) this.out.push(0x2c);
    parent.count++;
  }

  private pushFrame(isObject: bool, role: Role): void {
    if (this.depth == this.frames.length) this.frames.push(new Frame());
    this.frames[this.depth].reset(isObject, role);
    this.depth++;
  }

  /** A list item knows its kind from the list's ("ConfigMapList" → "ConfigMap") until it states its own. */
  private inherit(): void {
    if (this.depth < 3) return;
    const frame = this.frames[this.depth - 1];
    if (frame.role != Role.Object || this.frames[this.depth - 2].role != Role.Items) return;
    const list = this.frames[this.depth - 3];
    frame.group = list.group;
    if (list.kind.endsWith("List")) frame.kind = list.kind.substring(0, list.kind.length - 4);
  }

  private valueDone(): void {
    this.state = this.depth == 0 ? State.Value : State.After;
  }

  private afterByte(c: u32): void {
    if (isSpace(c)) return;
    const frame = this.frames[this.depth - 1];
    if (c == 0x2c) {
      this.state = frame.isObject ? State.Key : State.Value;
      return;
    }
    this.closeFrame(c);
  }

  private closeFrame(c: u32): void {
    const frame = this.frames[this.depth - 1];
    if (c != (frame.isObject ? 0x7d : 0x5d)) {
      this.fail("malformed JSON from upstream: unexpected '" + String.fromCharCode(<i32>c) + "'");
      return;
    }
    this.out.push(<u8>c);
    // A unit that ends without a verdict (nothing in it names anything) is kept.
    if (frame.hold >= 0) this.release(this.depth - 1);
    this.depth--;
    this.valueDone();
  }

  // --- keys ---

  private keyStartByte(c: u32): void {
    if (isSpace(c)) return;
    const frame = this.frames[this.depth - 1];
    if (c == 0x7d && this.state == State.KeyOrEnd) {
      this.closeFrame(c);
      return;
    }
    if (c != 0x22) {
      this.fail("malformed JSON from upstream: an object key expected");
      return;
    }
    if (frame.count > 0) this.out.push(0x2c);
    frame.count++;
    frame.seen++;
    this.out.push(<u8>c);
    this.key.clear();
    this.keyLong = false;
    this.state = State.KeyString;
  }

  private collectKeyByte(c: u32): void {
    if (this.key.length < maxKeyBytes) this.key.push(<u8>c);
    else this.keyLong = true;
  }

  private endKey(): void {
    const frame = this.frames[this.depth - 1];
    // Keys the transducer acts on are short and plain; a long or escaped one matches none.
    frame.key = this.keyLong ? "" : decodeUtf8(this.key.base, <usize>this.key.length);
    this.state = State.Colon;
    if (frame.role == Role.TopObject) {
      // The first key tells a watch event ({"type":...}) from an object; an
      // object needs no hold (it cannot be dropped, only failed).
      if (frame.key == "type") frame.role = Role.Event;
      else {
        frame.role = Role.Object;
        this.release(this.depth - 1);
      }
    }
  }

  // --- plans: what to do with the value that starts now ---

  private setPlan(act: Act, role: Role, capture: Capture, hold: bool): void {
    this.planAct = act;
    this.planRole = role;
    this.planCapture = capture;
    this.planHold = hold;
  }

  private plan(parent: Frame | null, c: u32): void {
    const opens = c == 0x7b || c == 0x5b;
    const isObject = c == 0x7b;
    this.setPlan(Act.Pass, Role.Nested, Capture.Kind, false);
    if (parent === null) {
      if (isObject) this.setPlan(Act.Descend, Role.TopObject, Capture.Kind, true);
      return;
    }
    const key = parent.key;
    switch (parent.role) {
      case Role.Event:
        if (key == "object" && isObject) this.setPlan(Act.Descend, Role.Object, Capture.Kind, false);
        return;
      case Role.Object:
        this.planObjectMember(parent, key, c);
        return;
      case Role.Items:
        if (isObject) this.setPlan(Act.Descend, Role.Object, Capture.Kind, true);
        return;
      case Role.Rows:
        if (isObject) this.setPlan(Act.Descend, Role.Row, Capture.Kind, true);
        return;
      case Role.Row:
        if (key == "cells" && c == 0x5b) this.setPlan(Act.Descend, Role.Cells, Capture.Kind, false);
        else if (key == "object" && isObject) this.setPlan(Act.Descend, Role.Object, Capture.Kind, false);
        return;
      case Role.Cells:
        if (c == 0x22) this.setPlan(Act.Capture, Role.Nested, Capture.Scrub, false);
        return;
      case Role.Groups:
        this.setPlan(Act.Capture, Role.Nested, Capture.DiscoveryGroup, false);
        return;
      case Role.CrdSpec:
        if (key == "group") {
          this.setPlan(Act.Capture, Role.Nested, Capture.CrdGroup, false);
          return;
        }
        break;
      default:
        break;
    }
    // Nested (and the rest of a CRD's spec).
    if (parent.isObject && key == "apiVersion" && c == 0x22) this.setPlan(Act.Capture, Role.Nested, Capture.NestedApiVersion, false);
    else if (parent.isObject && key == "targetRef" && isObject) this.setPlan(Act.Capture, Role.Nested, Capture.NestedReference, false);
    else if (parent.isObject && key == "metadata" && isObject) this.setPlan(Act.Capture, Role.Nested, Capture.EmbeddedMetadata, false);
    else if (opens) this.setPlan(Act.Descend, Role.Nested, Capture.Kind, false);
  }

  private planObjectMember(frame: Frame, key: string, c: u32): void {
    const opens = c == 0x7b || c == 0x5b;
    const kind = frame.kind;
    const group = frame.group;
    if (key == "apiVersion") { this.setPlan(Act.Capture, Role.Nested, Capture.ApiVersion, false); return; }
    if (key == "kind") { this.setPlan(Act.Capture, Role.Nested, Capture.Kind, false); return; }
    if (key == "metadata" && c == 0x7b) { this.setPlan(Act.Capture, Role.Nested, Capture.Metadata, false); return; }
    if (key == "items" && c == 0x5b) { this.setPlan(Act.Descend, Role.Items, Capture.Kind, false); return; }
    // ConfigMap and Secret payloads are the tenant's data, passed untouched (and unread).
    if (key == "data" || key == "binaryData" || key == "stringData") return;
    if (group == "") {
      if (kind == "Status") {
        if (key == "message") { this.setPlan(Act.Capture, Role.Nested, Capture.Scrub, false); return; }
        if (key == "details") { this.setPlan(Act.Capture, Role.Nested, Capture.StatusDetails, false); return; }
      } else if (kind == "APIGroupList") {
        if (key == "groups" && c == 0x5b) { this.setPlan(Act.Descend, Role.Groups, Capture.Kind, false); return; }
      } else if (kind == "APIGroup") {
        if (key == "name") { this.setPlan(Act.Capture, Role.Nested, Capture.GroupName, false); return; }
        if (key == "versions" || key == "preferredVersion") { this.setPlan(Act.Capture, Role.Nested, Capture.GroupVersions, false); return; }
      } else if (kind == "APIResourceList") {
        if (key == "groupVersion") { this.setPlan(Act.Capture, Role.Nested, Capture.GroupVersion, false); return; }
      }
    }
    if (kind == "Event" && (group == "" || group == "events.k8s.io")) {
      if (key == "involvedObject" || key == "related" || key == "regarding") {
        { this.setPlan(Act.Capture, Role.Nested, Capture.ObjectReference, false); return; }
      }
      if (key == "message" || key == "note") { this.setPlan(Act.Capture, Role.Nested, Capture.Scrub, false); return; }
    }
    if (group == "meta.k8s.io" && kind == "Table" && key == "rows" && c == 0x5b) {
      { this.setPlan(Act.Descend, Role.Rows, Capture.Kind, false); return; }
    }
    if (group == "apiextensions.k8s.io" && kind == "CustomResourceDefinition" && key == "spec" && c == 0x7b) {
      { this.setPlan(Act.Descend, Role.CrdSpec, Capture.Kind, false); return; }
    }
    if (group == "rbac.authorization.k8s.io") {
      if ((kind == "RoleBinding" || kind == "ClusterRoleBinding") && key == "subjects") {
        { this.setPlan(Act.Capture, Role.Nested, Capture.Subjects, false); return; }
      }
      if ((kind == "RoleBinding" || kind == "ClusterRoleBinding") && key == "roleRef") {
        { this.setPlan(Act.Capture, Role.Nested, Capture.RoleRef, false); return; }
      }
      if ((kind == "Role" || kind == "ClusterRole") && key == "rules") { this.setPlan(Act.Capture, Role.Nested, Capture.Rules, false); return; }
    }
    if ((group == "authentication.k8s.io" || group == "authorization.k8s.io") && (key == "spec" || key == "status")) {
      { this.setPlan(Act.Capture, Role.Nested, key == "spec" ? Capture.ReviewSpec : Capture.ReviewStatus, false); return; }
    }
    if (opens) this.setPlan(Act.Descend, Role.Nested, Capture.Kind, false);
  }

  // --- untouched subtrees ---

  private rawByte(c: u32): void {
    if (this.rawEmit) this.out.push(<u8>c);
    if (this.rawInString) {
      if (this.rawEscape) this.rawEscape = false;
      else if (c == 0x5c) this.rawEscape = true;
      else if (c == 0x22) this.rawInString = false;
      return;
    }
    if (c == 0x22) this.rawInString = true;
    else if (c == 0x7b || c == 0x5b) this.rawDepth++;
    else if (c == 0x7d || c == 0x5d) {
      this.rawDepth--;
      if (this.rawDepth == 0) {
        this.rawEmit = true;
        if (this.rawClosesFrame) {
          this.rawClosesFrame = false;
          this.depth--;
        }
        this.valueDone();
      }
    }
  }

  // --- captured subtrees ---

  private captureByte(c: u32): void {
    if (this.captureScalar) {
      if (isLiteralByte(c)) {
        this.captured.push(<u8>c);
        return;
      }
      this.finishCapture();
      if (this.state != State.Failed) this.step(c);
      return;
    }
    this.captured.push(<u8>c);
    if (this.rawInString) {
      if (this.rawEscape) this.rawEscape = false;
      else if (c == 0x5c) this.rawEscape = true;
      else if (c == 0x22) {
        this.rawInString = false;
        if (this.rawDepth == 0) this.finishCapture();
      }
      return;
    }
    if (c == 0x22) this.rawInString = true;
    else if (c == 0x7b || c == 0x5b) this.rawDepth++;
    else if (c == 0x7d || c == 0x5d) {
      this.rawDepth--;
      if (this.rawDepth == 0) this.finishCapture();
    }
  }

  private finishCapture(): void {
    // Checked here as well as at each chunk's end, so the verdict does not depend on how the body was chunked.
    if (this.captured.length > maxCaptureBytes) {
      this.fail("a JSON subtree to rewrite is larger than " + maxCaptureBytes.toString() + " bytes");
      return;
    }
    const text = decodeUtf8(this.captured.base, <usize>this.captured.length);
    this.captured.clear();
    this.state = State.After;
    const node = parseDom(text);
    if (node === null) {
      this.fail("malformed (or too deeply nested) JSON from upstream");
      return;
    }
    const index = this.depth - 1;
    const frame = this.frames[index];
    const scope = this.scope;
    switch (this.captureKind) {
      case Capture.ApiVersion: {
        if (!node.isString) break;
        frame.group = groupOf(node.text);
        const mapped = scope.apiVersion(node.text);
        if (mapped === null) {
          this.verdict(index, false, "apiVersion " + node.text);
          return;
        }
        node.replaceText(mapped!);
        break;
      }
      case Capture.Kind:
        if (node.isString) frame.kind = node.text;
        if (frame.kind == "APIGroupDiscoveryList" || frame.kind == "APIGroupDiscovery") {
          this.fail("aggregated discovery is not rewritten for tenants");
          return;
        }
        break;
      case Capture.Metadata: {
        let kind = frame.kind;
        if (scope.crdRequest && (kind == "" || kind == "PartialObjectMetadata")) kind = "CustomResourceDefinition";
        if (rewriteObjectMetadata(node, kind, scope) == Verdict.Invisible) {
          this.verdict(index, false, "an object");
          return;
        }
        this.write(frame, node);
        this.verdict(index, true, "");
        return;
      }
      case Capture.Scrub:
        if (node.isString) node.replaceText(scope.scrub(node.text));
        break;
      case Capture.StatusDetails:
        rewriteStatusDetails(node, scope);
        break;
      case Capture.Subjects:
        rewriteSubjects(node, scope);
        break;
      case Capture.RoleRef:
        if (!rewriteRoleRef(node, scope)) {
          this.verdict(index, false, "a roleRef");
          return;
        }
        break;
      case Capture.Rules:
        rewriteRules(node, scope);
        break;
      case Capture.ObjectReference:
        if (!rewriteObjectReference(node, scope)) {
          this.verdict(index, false, "an object reference");
          return;
        }
        break;
      case Capture.ReviewSpec:
      case Capture.ReviewStatus:
        if (!rewriteReview(frame.kind, this.captureKind == Capture.ReviewSpec ? "spec" : "status", node, scope)) {
          this.verdict(index, false, "a review");
          return;
        }
        break;
      case Capture.DiscoveryGroup:
        // Another tenant's group, or a host group not shared: the entry is left out.
        if (!rewriteDiscoveryGroup(node, scope)) return;
        break;
      case Capture.GroupName:
      case Capture.CrdGroup: {
        if (!node.isString) break;
        const group = scope.group(node.text);
        if (group === null) {
          this.verdict(index, false, "API group " + node.text);
          return;
        }
        node.replaceText(group!);
        break;
      }
      case Capture.GroupVersions:
        if (!this.mapGroupVersions(node)) {
          this.verdict(index, false, "a group version");
          return;
        }
        break;
      case Capture.GroupVersion: {
        if (!node.isString) break;
        const mapped = scope.apiVersion(node.text);
        if (mapped === null) {
          this.verdict(index, false, "groupVersion " + node.text);
          return;
        }
        node.replaceText(mapped!);
        break;
      }
      case Capture.NestedApiVersion: {
        // A reference to another API (scaleTargetRef, a CR's own fields): the
        // tenant named it unmapped; a group outside its world stays as it is.
        if (!node.isString) break;
        const mapped = scope.apiVersion(node.text);
        if (mapped !== null) node.replaceText(mapped!);
        break;
      }
      case Capture.NestedReference:
        // Endpoints' and EndpointSlices' targetRef: a reference into another
        // tenant or the host stays as the tenant wrote it (it reveals nothing).
        if (node.isObject) {
          const copy = parseDom(text);
          if (copy !== null && rewriteObjectReference(copy, scope)) {
            this.write(frame, copy);
            return;
          }
        }
        break;
      case Capture.EmbeddedMetadata:
        rewriteEmbeddedMetadata(node, scope);
        break;
      default:
        break;
    }
    this.write(frame, node);
  }

  private mapGroupVersions(node: DomNode): bool {
    const entries = node.isArray ? node.values : [node];
    for (let i = 0; i < entries.length; i++) {
      const version = entries[i].get("groupVersion");
      if (version === null || !version.isString) continue;
      const mapped = this.scope.apiVersion(version.text);
      if (mapped === null) return false;
      version.replaceText(mapped!);
    }
    return true;
  }

  private write(parent: Frame, node: DomNode): void {
    if (domMalformed) {
      this.fail("malformed (or too deeply nested) JSON from upstream");
      return;
    }
    this.separator(parent);
    this.out.pushString(serializeDom(node));
  }

  // --- verdicts and holds ---

  /**
   * The object at frames[index] is (visible) or is not (invisible) the
   * tenant's. Its unit is the object itself when held (a list item), or the
   * watch event or Table row around it. An invisible object whose unit is
   * already on its way (or that is the whole response) fails the stream.
   */
  private verdict(index: i32, visible: bool, what: string): void {
    let target = -1;
    if (this.frames[index].hold >= 0) target = index;
    else if (index > 0) {
      const parent = this.frames[index - 1];
      if ((parent.role == Role.Event || parent.role == Role.Row) && parent.hold >= 0) target = index - 1;
    }
    if (visible) {
      if (target >= 0) this.release(target);
      return;
    }
    if (target < 0) {
      this.fail(what + " in the response is not the tenant's and cannot be left out");
      return;
    }
    const unit = this.frames[target];
    if (!this.heldWithinCap(unit.hold)) return;
    this.out.truncate(this.holds[unit.hold]);
    this.holds.length = unit.hold;
    unit.hold = -1;
    // Discard the rest of the unit: every container from it to here is open.
    this.rawDepth = this.depth - target;
    this.rawInString = false;
    this.rawEscape = false;
    this.rawEmit = false;
    this.rawClosesFrame = true;
    this.depth = target + 1;
    this.state = State.Raw;
  }

  private heldWithinCap(hold: i32): bool {
    if (this.out.length - this.holds[hold] <= maxHeldBytes) return true;
    this.fail("an item held for its verdict is larger than " + maxHeldBytes.toString() + " bytes");
    return false;
  }

  private release(index: i32): void {
    const frame = this.frames[index];
    if (frame.hold < 0) return;
    const at = frame.hold;
    if (!this.heldWithinCap(at)) return;
    this.holds.splice(at, 1);
    for (let i = 0; i < this.depth; i++) if (this.frames[i].hold > at) this.frames[i].hold--;
    frame.hold = -1;
    if (index > 0) {
      const parent = this.frames[index - 1];
      if (!parent.isObject) parent.count++;
    }
  }
}
