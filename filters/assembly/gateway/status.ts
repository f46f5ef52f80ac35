// Kubernetes Status bodies for the filter's own replies, so kubectl and
// client-go report them like the apiserver's.
import { jsonString } from "./json";

export function statusBody(code: i32, reason: string, message: string, retryAfterSeconds: i32): string {
  let details = "";
  if (retryAfterSeconds > 0) details = ",\"details\":{\"retryAfterSeconds\":" + retryAfterSeconds.toString() + "}";
  return (
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":" +
    jsonString(message) +
    ",\"reason\":" +
    jsonString(reason) +
    details +
    ",\"code\":" +
    code.toString() +
    "}\n"
  );
}
