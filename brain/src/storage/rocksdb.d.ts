// @nxtedition/rocksdb ships no types; rocks-engine.ts narrows what it uses.
declare module "@nxtedition/rocksdb" {
  export class RocksLevel {
    constructor(location: string, options?: Record<string, unknown>);
  }
}
