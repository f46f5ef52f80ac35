// Who is asking: the node named by the client certificate the TLS handshake
// verified against the node CA. The node id a request claims is only checked
// against it, never believed.
import { X509Certificate } from "node:crypto";
import { status as grpcStatus } from "@grpc/grpc-js";
import { CredentialError, identityFromCertificate } from "../credentials/node-ca.js";
import { StreamRefused, type Authenticate } from "./stream.js";

export const certificateAuthenticator: Authenticate = (call, claimedNodeId) => {
  const peer = call.getAuthContext()?.sslPeerCertificate;
  if (!peer?.raw) throw new StreamRefused(grpcStatus.UNAUTHENTICATED, "a node client certificate is required");
  let identity;
  try {
    identity = identityFromCertificate(new X509Certificate(peer.raw));
  } catch (error) {
    if (!(error instanceof CredentialError)) throw error;
    throw new StreamRefused(grpcStatus.UNAUTHENTICATED, error.message);
  }
  if (claimedNodeId !== "" && claimedNodeId !== identity.name) {
    throw new StreamRefused(grpcStatus.PERMISSION_DENIED, `the client certificate is node ${identity.name}'s; it cannot ask as node ${claimedNodeId}`);
  }
  return identity;
};
