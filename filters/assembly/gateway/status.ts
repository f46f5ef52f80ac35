// Kubernetes Status bodies for the filter's own replies, so kubectl and
// client-go report them like the apiserver's.

function quote(text: string): string {
  let out = "\"";
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c < 0x20) out += "\\u00" + (c < 16 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + "\"";
}

export function statusBody(code: i32, reason: string, message: string, retryAfterSeconds: i32): string {
  let details = "";
  if (retryAfterSeconds > 0) details = ",\"details\":{\"retryAfterSeconds\":" + retryAfterSeconds.toString() + "}";
  return (
    "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":" +
    quote(message) +
    ",\"reason\":" +
    quote(reason) +
    details +
    ",\"code\":" +
    code.toString() +
    "}\n"
  );
}
