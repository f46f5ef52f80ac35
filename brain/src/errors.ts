import { status } from "@grpc/grpc-js";

/**
 * An error with the gRPC code and the exact message etcd sends, so clients
 * that match on etcd's messages (clientv3's rpctypes, kube-apiserver) behave
 * the same against brain.
 */
export class EtcdError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = "EtcdError";
  }
}

const make = (code: status, message: string) => () => new EtcdError(code, message);

export const errors = {
  emptyKey: make(status.INVALID_ARGUMENT, "etcdserver: key is not provided"),
  keyNotFound: make(status.INVALID_ARGUMENT, "etcdserver: key not found"),
  valueProvided: make(status.INVALID_ARGUMENT, "etcdserver: value is provided"),
  leaseProvided: make(status.INVALID_ARGUMENT, "etcdserver: lease is provided"),
  tooManyOps: make(status.INVALID_ARGUMENT, "etcdserver: too many operations in txn request"),
  duplicateKey: make(status.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request"),
  invalidSortOption: make(status.INVALID_ARGUMENT, "etcdserver: invalid sort option"),
  requestTooLarge: make(status.INVALID_ARGUMENT, "etcdserver: request is too large"),
  compacted: make(status.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted"),
  futureRevision: make(status.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision"),
  noSpace: make(status.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"),
  leaseNotFound: make(status.NOT_FOUND, "etcdserver: requested lease not found"),
  leaseExists: make(status.FAILED_PRECONDITION, "etcdserver: lease already exists"),
  leaseTtlTooLarge: make(status.OUT_OF_RANGE, "etcdserver: too large lease TTL"),
  stopped: make(status.UNAVAILABLE, "etcdserver: server stopped"),
  // Replica sets on a shared PostgreSQL: etcd's messages for the same situations.
  leaderChanged: make(status.UNAVAILABLE, "etcdserver: leader changed"),
  notLeader: make(status.UNAVAILABLE, "etcdserver: not leader"),
  noLeader: make(status.UNAVAILABLE, "etcdserver: no leader"),
  requestTimedOut: make(status.UNAVAILABLE, "etcdserver: request timed out"),
};
