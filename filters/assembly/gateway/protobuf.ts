// A minimal protobuf wire-format reader: enough to decode GatewayConfig.
// Malformed input sets `failed` instead of trapping, so a bad config is
// refused with a log line rather than taking the VM down.

export class ProtoReader {
  private pos: i32 = 0;
  failed: bool = false;

  constructor(private data: Uint8Array) {}

  get done(): bool {
    return this.failed || this.pos >= this.data.length;
  }

  varint(): u64 {
    let result: u64 = 0;
    let shift: u64 = 0;
    while (true) {
      if (this.pos >= this.data.length || shift > 63) {
        this.failed = true;
        return 0;
      }
      const byte = this.data[this.pos++];
      result |= (<u64>(byte & 0x7f)) << shift;
      if ((byte & 0x80) == 0) return result;
      shift += 7;
    }
  }

  /** Next field: returns (field number << 3 | wire type), or 0 at the end. */
  tag(): u32 {
    if (this.done) return 0;
    return <u32>this.varint();
  }

  bytes(): Uint8Array {
    const length = <i32>this.varint();
    if (length < 0 || this.pos + length > this.data.length) {
      this.failed = true;
      return new Uint8Array(0);
    }
    const out = this.data.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  string(): string {
    const bytes = this.bytes();
    return String.UTF8.decodeUnsafe(bytes.dataStart, bytes.length);
  }

  double(): f64 {
    if (this.pos + 8 > this.data.length) {
      this.failed = true;
      return 0;
    }
    const value = load<f64>(this.data.dataStart + <usize>this.pos);
    this.pos += 8;
    return value;
  }

  bool(): bool {
    return this.varint() != 0;
  }

  skip(wireType: u32): void {
    if (wireType == 0) this.varint();
    else if (wireType == 1) this.pos += 8;
    else if (wireType == 2) this.bytes();
    else if (wireType == 5) this.pos += 4;
    else this.failed = true;
    if (this.pos > this.data.length) this.failed = true;
  }
}
